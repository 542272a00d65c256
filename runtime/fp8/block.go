package fp8

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// Layout is a quantized weight [*lead, M, N] seen as Rows = lead·M rows
// of N codes, with its scale grid [*lead, GM, GN].
type Layout struct {
	Rows, M, N int64
	Block      [2]int64
	GM, GN     int64
}

// NewLayout returns the layout of a weight of the given shape (at least
// two dimensions) and block.
func NewLayout(shape tensor.Shape, block [2]int64) Layout {
	n := len(shape)
	l := Layout{M: shape[n-2], N: shape[n-1], Block: block}
	l.Rows = 1
	for _, d := range shape[:n-1] {
		l.Rows *= d
	}
	l.GM, l.GN = ceilDiv(l.M, block[0]), ceilDiv(l.N, block[1])
	return l
}

// scaleRow returns the index in the flattened grid of the first scale of
// row r.
func (l Layout) scaleRow(r int64) int64 {
	lead, i := r/l.M, r%l.M
	return (lead*l.GM + i/l.Block[0]) * l.GN
}

// position formats row r, column j as a multi-index of the weight.
func (l Layout) position(r, j int64) string {
	if l.Rows == l.M {
		return fmt.Sprintf("[%d, %d]", r, j)
	}
	return fmt.Sprintf("[%d, %d, %d] (leading index flattened)", r/l.M, r%l.M, j)
}

// Dequantize writes the values of the elements e0, e0+1, … whose codes
// are in codes (any run of the weight in row-major order) to dst in the
// output dtype out (BF16, F16 or F32; dst holds len(codes)·out.Size()
// bytes): fl32(dec(code) × scale), rounded to nearest even once to out.
// scales is the widened grid ([Scales]). A NaN code, or an F16 result
// beyond its range, is an error naming the tensor and the element.
//
// The arithmetic is done once per code and block, not per element: for
// each block a run touches, the 256 possible results are tabulated (the
// same float32 product and rounding, so the bytes are those of the
// per-element formula), and the elements are table lookups. A block holds
// up to bm·bn elements and a run reuses its tables for bm rows.
func (l Layout) Dequantize(name string, dst []byte, out tensor.DType, codes []byte, e0 int64, scales []float32) error {
	n := l.N
	if len(dst) != len(codes)*out.Size() {
		return fmt.Errorf("tensor %q: internal error: %d codes, %d output bytes", name, len(codes), len(dst))
	}
	if !OutDTypeOK(out) {
		return fmt.Errorf("tensor %q: cannot dequantize to %v", name, out)
	}
	bn := l.Block[1]
	var tabs [][256]uint32 // the results of the block columns of the current block row
	var built []bool
	cur := int64(-1) // flattened grid index of the current block row's first scale
	for k := int64(0); k < int64(len(codes)); {
		e := e0 + k
		r, j := e/n, e%n
		if sr := l.scaleRow(r); sr != cur {
			cur = sr
			if tabs == nil {
				tabs, built = make([][256]uint32, l.GN), make([]bool, l.GN)
			} else {
				clear(built)
			}
		}
		end := min(n, j+int64(len(codes))-k) // this row's part
		for j < end {
			jb := j / bn
			t := &tabs[jb]
			if !built[jb] {
				fillTable(t, out, scales[cur+jb])
				built[jb] = true
			}
			j1 := min((jb+1)*bn, end)
			c := codes[k : k+j1-j]
			switch out {
			case tensor.F32:
				d := dst[4*k : 4*(k+j1-j)]
				for i, b := range c {
					v := t[b]
					if b&0x7F == 0x7F {
						return l.dataError(name, b, r, j+int64(i), scales[cur+jb])
					}
					binary.LittleEndian.PutUint32(d[4*i:], v)
				}
			default:
				d := dst[2*k : 2*(k+j1-j)]
				for i, b := range c {
					v := t[b]
					if v>>16 != 0 {
						return l.dataError(name, b, r, j+int64(i), scales[cur+jb])
					}
					binary.LittleEndian.PutUint16(d[2*i:], uint16(v))
				}
			}
			k += j1 - j
			j = j1
		}
	}
	return nil
}

// badEntry marks a 16-bit table entry that is an error: a NaN code, or an
// F16 overflow.
const badEntry = 1 << 16

// fillTable tabulates the result of every code with scale s in out: the
// float32 bits for F32, else the 16-bit result, badEntry set for a NaN
// code or an F16 result beyond its range.
func fillTable(t *[256]uint32, out tensor.DType, s float32) {
	for b := range 256 {
		v := e4m3Table[b] * s
		nan := b&0x7F == 0x7F
		switch out {
		case tensor.F32:
			t[b] = math.Float32bits(v)
		case tensor.BF16:
			t[b] = uint32(tensor.F32ToBF16(v))
			if nan {
				t[b] |= badEntry
			}
		default:
			h := tensor.F32ToF16(v)
			t[b] = uint32(h)
			if nan || h&0x7FFF == 0x7C00 {
				t[b] |= badEntry
			}
		}
	}
}

// dataError describes the bad element (r, j) of code b.
func (l Layout) dataError(name string, b byte, r, j int64, s float32) error {
	if b&0x7F == 0x7F {
		return &DataError{Code: CodeNaN, Tensor: name, Msg: fmt.Sprintf("NaN code 0x%02X at %s", b, l.position(r, j))}
	}
	return &DataError{Code: CodeNaN, Tensor: name, Msg: fmt.Sprintf("value %v at %s is beyond F16's range (65504); dequantize to bf16 or f32", e4m3Table[b]*s, l.position(r, j))}
}

// e4m3Table is the decoding table, built once.
var e4m3Table = tensor.E4M3Table()

// value reads element k of src in dtype dt as float32.
func value(dt tensor.DType, src []byte, k int64) float32 {
	switch dt {
	case tensor.BF16:
		return tensor.BF16ToF32(binary.LittleEndian.Uint16(src[2*k:]))
	case tensor.F16:
		return tensor.F16ToF32(binary.LittleEndian.Uint16(src[2*k:]))
	default:
		return math.Float32frombits(binary.LittleEndian.Uint32(src[4*k:]))
	}
}

// reuseLimit is the largest |v ⊘ s| that reuse accepts: quotients up to it
// round to ±448 (464 ties to even, to 0x7E); beyond, only clamping would
// keep the code finite, which means the weight left its block's range.
const reuseLimit = 464

// QuantizeReuse encodes the whole weight src (dtype in: BF16, F16 or F32)
// with the given scales: code = enc(clamp(fl32(v) ⊘ s)), IEEE float32
// division, round to nearest even (§2.5). codes has one byte per element.
// A value whose quotient exceeds 464 in magnitude (the weight left the
// range its block's scale was made for), or a non-finite value, is an
// error naming the tensor and the block; recompute the scales instead.
func (l Layout) QuantizeReuse(name string, codes []byte, in tensor.DType, src []byte, scales []float32) error {
	n := l.N
	bn := l.Block[1]
	for r := int64(0); r < l.Rows; r++ {
		srow := scales[l.scaleRow(r):]
		for jb := int64(0); jb < l.GN; jb++ {
			s := srow[jb]
			j0, j1 := jb*bn, min((jb+1)*bn, n)
			for j := j0; j < j1; j++ {
				k := r*n + j
				v := value(in, src, k)
				q := v / s
				if q != q || q > reuseLimit || q < -reuseLimit {
					return &DataError{Code: CodeReuse, Tensor: name, Msg: fmt.Sprintf("value %v at %s does not fit its block's scale %v (block %s): the weight left the range of the original scales; use --scales recompute", v, l.position(r, j), s, l.position(r/l.Block[0], jb))}
				}
				codes[k] = tensor.F32ToE4M3(clamp(q))
			}
		}
	}
	return nil
}

func clamp(q float32) float32 { return max(-tensor.E4M3Max, min(tensor.E4M3Max, q)) }

// QuantizeRecompute encodes the whole weight src with fresh scales: per
// block (edge blocks: their real elements only) amax = max |fl32(v)|; the
// scale is 1 for an all-zero block, else fl32(amax ⊘ 448), rounded to the
// scale dtype sdt (F32, BF16 or F16) and then used as stored; code =
// enc(clamp(v ⊘ s)). It returns the scales, widened (§2.5).
func (l Layout) QuantizeRecompute(name string, codes []byte, in tensor.DType, src []byte, sdt tensor.DType) ([]float32, error) {
	grid := make([]float32, (l.Rows/max(l.M, 1))*l.GM*l.GN)
	if l.M == 0 || l.N == 0 {
		return grid, nil
	}
	n := l.N
	bn := l.Block[1]
	for r := int64(0); r < l.Rows; r++ { // amax per block
		srow := grid[l.scaleRow(r):]
		for j := int64(0); j < n; j++ {
			v := value(in, src, r*n+j)
			if v != v || math.IsInf(float64(v), 0) {
				return nil, &DataError{Code: CodeNaN, Tensor: name, Msg: fmt.Sprintf("value %v at %s is not finite", v, l.position(r, j))}
			}
			a := float32(math.Abs(float64(v)))
			if a > srow[j/bn] {
				srow[j/bn] = a
			}
		}
	}
	for k, amax := range grid {
		s := float32(1)
		if amax > 0 {
			s = amax / tensor.E4M3Max
		}
		s = RoundScale(sdt, s)
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return nil, &DataError{Code: CodeNaN, Tensor: name, Msg: fmt.Sprintf("block %d: scale %v (amax %v) is not representable in %v", k, s, amax, sdt)}
		}
		grid[k] = s
	}
	if err := l.QuantizeReuse(name, codes, in, src, grid); err != nil {
		return nil, err
	}
	return grid, nil
}

// RoundScale rounds the float32 scale s to dt (RNE) and widens it back.
func RoundScale(dt tensor.DType, s float32) float32 {
	switch dt {
	case tensor.BF16:
		return tensor.BF16ToF32(tensor.F32ToBF16(s))
	case tensor.F16:
		return tensor.F16ToF32(tensor.F32ToF16(s))
	}
	return s
}

// EncodeScales returns the bytes of scales in dt (F32, BF16 or F16).
func EncodeScales(dt tensor.DType, scales []float32) []byte {
	b := make([]byte, len(scales)*dt.Size())
	for k, s := range scales {
		switch dt {
		case tensor.BF16:
			binary.LittleEndian.PutUint16(b[2*k:], tensor.F32ToBF16(s))
		case tensor.F16:
			binary.LittleEndian.PutUint16(b[2*k:], tensor.F32ToF16(s))
		default:
			binary.LittleEndian.PutUint32(b[4*k:], math.Float32bits(s))
		}
	}
	return b
}
