package fp8

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// want returns the per-element formula's bytes for code b with scale s in
// out: fl32(dec(b) × s) rounded once.
func want(out tensor.DType, b byte, s float32) []byte {
	v := tensor.E4M3ToF32(b) * s
	switch out {
	case tensor.F32:
		return binary.LittleEndian.AppendUint32(nil, math.Float32bits(v))
	case tensor.F16:
		return binary.LittleEndian.AppendUint16(nil, tensor.F32ToF16(v))
	}
	return binary.LittleEndian.AppendUint16(nil, tensor.F32ToBF16(v))
}

// randomWeight returns the layout of a weight of the given shape in
// 128x128 blocks, random finite codes and random scales in [2^-(e-1), 2).
func randomWeight(r *rand.Rand, shape tensor.Shape, e int) (Layout, []byte, []float32) {
	block := [2]int64{128, 128}
	grid, _ := Grid(shape, block)
	codes := make([]byte, shape.NumElements())
	for k := range codes {
		for codes[k] = byte(r.IntN(256)); tensor.E4M3IsNaN(codes[k]); codes[k] = byte(r.IntN(256)) {
		}
	}
	scales := make([]float32, grid.NumElements())
	for k := range scales {
		scales[k] = float32(math.Ldexp(1+r.Float64(), -r.IntN(e)))
	}
	return NewLayout(shape, block), codes, scales
}

// TestDecoderRuns decodes a [2, 300, 260] weight (edge blocks, a leading
// axis) in runs of random length and random order through one Decoder,
// so its kept tables are reused, invalidated and rebuilt, and compares
// every element with the per-element formula, for each output dtype. At
// F16 one block's scale makes its largest codes overflow while the codes
// planted there stay in range: that block takes the checked loop and
// still gives the formula's bytes.
func TestDecoderRuns(t *testing.T) {
	shape := tensor.Shape{2, 300, 260}
	r := rand.New(rand.NewPCG(5, 9))
	l, codes, scales := randomWeight(r, shape, 12)
	n := shape.NumElements()
	// Block (0, 1, 2) of the first leading index: scale 1000, codes below
	// 0x40 (|v| < 2, products < 2000).
	const big = 1*3 + 2
	scales[big] = 1000
	for i := int64(128); i < 256; i++ {
		for j := int64(256); j < 260; j++ {
			codes[i*260+j] &= 0xBF
		}
	}
	scaleOf := func(k int64) float32 {
		lead, i, j := k/(300*260), (k/260)%300, k%260
		return scales[lead*3*3+(i/128)*3+j/128]
	}
	for _, out := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F32} {
		t.Run(out.String(), func(t *testing.T) {
			size := int64(out.Size())
			ref := make([]byte, 0, n*size)
			for k := int64(0); k < n; k++ {
				ref = append(ref, want(out, codes[k], scaleOf(k))...)
			}
			d, err := l.NewDecoder("w", out, scales)
			if err != nil {
				t.Fatal(err)
			}
			var starts []int64
			for e := int64(0); e < n; {
				starts = append(starts, e)
				e += 1 + r.Int64N(700)
			}
			r.Shuffle(len(starts), func(a, b int) { starts[a], starts[b] = starts[b], starts[a] })
			got := make([]byte, n*size)
			for _, e := range starts {
				end := n
				for _, s := range starts {
					if s > e && s < end {
						end = s
					}
				}
				if err := d.Decode(got[e*size:end*size], codes[e:end], e); err != nil {
					t.Fatal(err)
				}
			}
			for k := int64(0); k < n; k++ {
				if g, w := got[k*size:(k+1)*size], ref[k*size:(k+1)*size]; string(g) != string(w) {
					t.Fatalf("element %d (code 0x%02X, scale %v): % X, want % X", k, codes[k], scaleOf(k), g, w)
				}
			}
		})
	}
	// A code of the big block that overflows F16 is an error naming it.
	c := append([]byte(nil), codes...)
	c[200*260+257] = 0x70 // 256 x 1000
	err := l.Dequantize("m.w", make([]byte, 2*n), tensor.F16, c, 0, scales)
	var de *DataError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "[0, 200, 257]") || !strings.Contains(err.Error(), "F16") {
		t.Errorf("F16 overflow: %v", err)
	}
}

// TestDecoderNaNPositions plants a NaN code (0x7F and 0xFF) at every
// position of a run longer than two 8-code words, after finite codes
// that are NaN-like in their other bits (0x7E, 0xFE), and checks the
// element named is the planted one, for each output dtype, and that
// CheckCodes gives the same error without decoding.
func TestDecoderNaNPositions(t *testing.T) {
	const n = 37
	l := NewLayout(tensor.Shape{1, n}, [2]int64{128, 128})
	for _, out := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F32} {
		for _, nan := range []byte{0x7F, 0xFF} {
			for p := range n {
				codes := make([]byte, n)
				for k := range codes {
					codes[k] = []byte{0x7E, 0xFE, 0x00, 0x80, 0x01}[k%5]
				}
				codes[p] = nan
				err := l.Dequantize("m.w", make([]byte, n*out.Size()), out, codes, 0, []float32{0.5})
				var de *DataError
				if wantPos := fmt.Sprintf("NaN code 0x%02X at [0, %d]", nan, p); !errors.As(err, &de) || de.Code != CodeNaN || !strings.Contains(err.Error(), wantPos) {
					t.Fatalf("%v, 0x%02X at %d: %v, want %q", out, nan, p, err, wantPos)
				}
				if cerr := l.CheckCodes("m.w", codes, 0); cerr == nil || cerr.Error() != err.Error() {
					t.Fatalf("CheckCodes, 0x%02X at %d: %v, want %v", nan, p, cerr, err)
				}
				if cerr := l.CheckCodes("m.w", codes[p+1:], int64(p+1)); cerr != nil {
					t.Fatalf("CheckCodes after the NaN at %d: %v", p, cerr)
				}
			}
		}
	}
}
