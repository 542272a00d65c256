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
// Callers decoding a weight in many runs use a [Decoder], which keeps
// its tables between runs.
func (l Layout) Dequantize(name string, dst []byte, out tensor.DType, codes []byte, e0 int64, scales []float32) error {
	d, err := l.NewDecoder(name, out, scales)
	if err != nil {
		return err
	}
	return d.Decode(dst, codes, e0)
}

// A Decoder dequantizes runs of one weight's codes (see
// [Layout.Dequantize] for the arithmetic). The arithmetic is done once
// per code and block, not per element: for each block a run touches, the
// 256 possible results are tabulated (the same float32 product and
// rounding, so the bytes are those of the per-element formula), and the
// elements are table lookups, 8 at a time, with one test per 8 codes for
// NaN codes. The tables of the current block row are kept between calls,
// so a caller decoding a weight in short runs (the rows of a rank's
// window) builds each table once per block. A Decoder is not safe for
// concurrent use.
type Decoder struct {
	l      Layout
	name   string
	out    tensor.DType
	scales []float32
	cur    int64         // flattened grid index of the tables' block row's first scale, or -1
	t16    [][256]uint16 // BF16/F16 results per block column of the current block row
	t32    [][256]uint32 // F32 results
	built  []bool        // which tables are filled
	slow   []bool        // the table has an error entry for a finite code (F16 overflow)
}

// NewDecoder returns a decoder of the weight l called name to out (BF16,
// F16 or F32) with the widened scale grid scales.
func (l Layout) NewDecoder(name string, out tensor.DType, scales []float32) (*Decoder, error) {
	if !OutDTypeOK(out) {
		return nil, fmt.Errorf("tensor %q: cannot dequantize to %v", name, out)
	}
	if want := (l.Rows / max(l.M, 1)) * l.GM * l.GN; int64(len(scales)) < want {
		return nil, fmt.Errorf("tensor %q: internal error: %d scales, the grid has %d", name, len(scales), want)
	}
	d := &Decoder{l: l, name: name, out: out, scales: scales, cur: -1,
		built: make([]bool, l.GN), slow: make([]bool, l.GN)}
	if out == tensor.F32 {
		d.t32 = make([][256]uint32, l.GN)
	} else {
		d.t16 = make([][256]uint16, l.GN)
	}
	return d, nil
}

// Decode writes the values of the elements e0, e0+1, … whose codes are
// codes to dst (len(codes)·out.Size() bytes), as [Layout.Dequantize].
func (d *Decoder) Decode(dst, codes []byte, e0 int64) error {
	l := d.l
	n := l.N
	size := int64(d.out.Size())
	if int64(len(dst)) != int64(len(codes))*size {
		return fmt.Errorf("tensor %q: internal error: %d codes, %d output bytes", d.name, len(codes), len(dst))
	}
	if e0 < 0 || e0+int64(len(codes)) > l.Rows*n {
		return fmt.Errorf("tensor %q: internal error: elements %d+%d beyond its %d", d.name, e0, len(codes), l.Rows*n)
	}
	bn := l.Block[1]
	for k := int64(0); k < int64(len(codes)); {
		e := e0 + k
		r, j := e/n, e%n
		if sr := l.scaleRow(r); sr != d.cur {
			d.cur = sr
			clear(d.built)
		}
		end := min(n, j+int64(len(codes))-k) // this row's part
		for j < end {
			jb := j / bn
			if !d.built[jb] {
				d.fill(jb)
			}
			j1 := min((jb+1)*bn, end)
			c := codes[k : k+j1-j]
			o := dst[size*k : size*(k+j1-j)]
			var bad int
			switch {
			case d.slow[jb]:
				bad = d.decodeChecked(o, c, jb)
			case d.t32 != nil:
				bad = decode32(o, c, &d.t32[jb])
			default:
				bad = decode16(o, c, &d.t16[jb])
			}
			if bad >= 0 {
				return l.dataError(d.name, c[bad], r, j+int64(bad), d.scales[d.cur+jb])
			}
			k += j1 - j
			j = j1
		}
	}
	return nil
}

// fill tabulates the results of every code for block column jb of the
// current block row: the float32 bits for F32, else the 16-bit result.
// Negative codes are the positive ones with the sign flipped (the
// product and the rounding are symmetric); the NaN codes' entries are
// never used. An F16 result beyond its range marks the table slow.
func (d *Decoder) fill(jb int64) {
	s := d.scales[d.cur+jb]
	d.built[jb], d.slow[jb] = true, false
	if d.t32 != nil {
		t := &d.t32[jb]
		for b := range 128 {
			v := math.Float32bits(e4m3Table[b] * s)
			t[b], t[b|0x80] = v, v^0x80000000
		}
		return
	}
	t := &d.t16[jb]
	for b := range 128 {
		v := e4m3Table[b] * s
		var h uint16
		if d.out == tensor.BF16 {
			h = tensor.F32ToBF16(v)
		} else {
			h = tensor.F32ToF16(v)
			if b != 0x7F && h == 0x7C00 {
				d.slow[jb] = true
			}
		}
		t[b], t[b|0x80] = h, h^0x8000
	}
}

// decodeChecked is the per-element loop for a table with F16 overflows:
// it returns the index of the first NaN code or overflowing element, or
// -1.
func (d *Decoder) decodeChecked(o, c []byte, jb int64) int {
	t := &d.t16[jb]
	for i, b := range c {
		h := t[b]
		if b&0x7F == 0x7F || h&0x7FFF == 0x7C00 {
			return i
		}
		binary.LittleEndian.PutUint16(o[2*i:], h)
	}
	return -1
}

// CheckCodes returns the error [Layout.Dequantize] would give for the
// first NaN code of the run of elements e0, e0+1, … whose codes are
// codes, or nil, without decoding them.
func (l Layout) CheckCodes(name string, codes []byte, e0 int64) error {
	i := 0
	for ; i+8 <= len(codes); i += 8 {
		if hasNaN(binary.LittleEndian.Uint64(codes[i:])) {
			break
		}
	}
	if k := firstNaN(codes[i:]); k >= 0 {
		e := e0 + int64(i+k)
		return l.dataError(name, codes[i+k], e/l.N, e%l.N, 0)
	}
	return nil
}

// SWAR constants: a code is a NaN (0x7F or 0xFF) exactly when adding 1 to
// its low 7 bits carries into bit 7, and no byte carries into the next.
const (
	low7 = 0x7F7F7F7F7F7F7F7F
	ones = 0x0101010101010101
	high = 0x8080808080808080
)

// hasNaN reports whether one of the 8 codes in x is a NaN.
func hasNaN(x uint64) bool { return ((x&low7)+ones)&high != 0 }

// firstNaN returns the index of the first NaN code of c, or -1.
func firstNaN(c []byte) int {
	for i, b := range c {
		if b&0x7F == 0x7F {
			return i
		}
	}
	return -1
}

// decode16 writes the 16-bit results of codes c to o through table t, 8
// codes per step (two 8-byte stores), and returns the index of the first
// NaN code, or -1.
func decode16(o, c []byte, t *[256]uint16) int {
	i := 0
	for ; i+8 <= len(c); i += 8 {
		x := binary.LittleEndian.Uint64(c[i:])
		if hasNaN(x) {
			return i + firstNaN(c[i:i+8])
		}
		w := o[2*i : 2*i+16]
		binary.LittleEndian.PutUint64(w, uint64(t[byte(x)])|uint64(t[byte(x>>8)])<<16|uint64(t[byte(x>>16)])<<32|uint64(t[byte(x>>24)])<<48)
		binary.LittleEndian.PutUint64(w[8:], uint64(t[byte(x>>32)])|uint64(t[byte(x>>40)])<<16|uint64(t[byte(x>>48)])<<32|uint64(t[byte(x>>56)])<<48)
	}
	if k := firstNaN(c[i:]); k >= 0 {
		return i + k
	}
	for ; i < len(c); i++ {
		binary.LittleEndian.PutUint16(o[2*i:], t[c[i]])
	}
	return -1
}

// decode32 is decode16 for F32 results (four 8-byte stores per 8 codes).
func decode32(o, c []byte, t *[256]uint32) int {
	i := 0
	for ; i+8 <= len(c); i += 8 {
		x := binary.LittleEndian.Uint64(c[i:])
		if hasNaN(x) {
			return i + firstNaN(c[i:i+8])
		}
		w := o[4*i : 4*i+32]
		binary.LittleEndian.PutUint64(w, uint64(t[byte(x)])|uint64(t[byte(x>>8)])<<32)
		binary.LittleEndian.PutUint64(w[8:], uint64(t[byte(x>>16)])|uint64(t[byte(x>>24)])<<32)
		binary.LittleEndian.PutUint64(w[16:], uint64(t[byte(x>>32)])|uint64(t[byte(x>>40)])<<32)
		binary.LittleEndian.PutUint64(w[24:], uint64(t[byte(x>>48)])|uint64(t[byte(x>>56)])<<32)
	}
	if k := firstNaN(c[i:]); k >= 0 {
		return i + k
	}
	for ; i < len(c); i++ {
		binary.LittleEndian.PutUint32(o[4*i:], t[c[i]])
	}
	return -1
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
