package tensor

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// encode returns the little-endian bytes of vals in dtype dt, written
// bit by bit (independently of the code under test).
func encode(dt DType, bits ...uint64) []byte {
	var b []byte
	for _, v := range bits {
		switch dt.Size() {
		case 1:
			b = append(b, uint8(v))
		case 2:
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
		case 4:
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		case 8:
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

// TestAppendFloats: every float dtype decodes exactly to float64 and
// encodes from float32 rounding to nearest even (bits written by hand);
// other dtypes and a partial element are errors, and dst keeps what it
// held.
func TestAppendFloats(t *testing.T) {
	third := float32(1.0 / 3) // 0x3EAAAAAB
	for _, tc := range []struct {
		dt   DType
		enc  []byte    // the encoding of vals
		vals []float32 // what enc decodes to (and encodes from)
		from []float32 // encoded to enc (rounding), when not vals
	}{
		{F64, encode(F64, 0x3FF0000000000000, 0xC004000000000000), []float32{1, -2.5}, nil},
		{F32, encode(F32, 0x3F800000, 0x3EAAAAAB), []float32{1, third}, nil},
		// 1/3 in bf16 is 0x3EAB (0x3EAAAAAB rounds up), in f16 0x3555.
		{BF16, encode(BF16, 0x3F80, 0x3EAB), []float32{1, math.Float32frombits(0x3EAB0000)}, []float32{1, third}},
		{F16, encode(F16, 0x3C00, 0x3555), []float32{1, F16ToF32(0x3555)}, []float32{1, third}},
		// 1.0 is 0x38 in E4M3; 1/3 lies between 0.3125 (0x2A) and
		// 0.34375 (0x2B), nearer the second.
		{F8E4M3, encode(F8E4M3, 0x38, 0x2B), []float32{1, 0.34375}, []float32{1, third}},
	} {
		t.Run(tc.dt.String(), func(t *testing.T) {
			got, err := AppendFloat64s([]float64{7}, tc.enc, tc.dt)
			if err != nil {
				t.Fatal(err)
			}
			want := []float64{7}
			for _, v := range tc.vals {
				want = append(want, float64(v))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
			from := tc.from
			if from == nil {
				from = tc.vals
			}
			enc, err := AppendFloat32sAs([]byte{9}, from, tc.dt)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(append([]byte{9}, tc.enc...), enc); diff != "" {
				t.Errorf("encoded (-want +got):\n%s", diff)
			}
		})
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"decode I64", func() error { _, err := AppendFloat64s(nil, make([]byte, 8), I64); return err }(), "cannot decode I64 elements as floats"},
		{"decode partial", func() error { _, err := AppendFloat64s(nil, make([]byte, 3), BF16); return err }(), "decoding 3 bytes of BF16 as floats: not a whole number of elements"},
		{"encode I32", func() error { _, err := AppendFloat32sAs(nil, []float32{1}, I32); return err }(), "cannot encode floats as I32"},
		{"encode F8_E5M2", func() error { _, err := AppendFloat32sAs(nil, []float32{1}, F8E5M2); return err }(), "cannot encode floats as F8_E5M2"},
	} {
		if tc.err == nil || tc.err.Error() != tc.want {
			t.Errorf("%s: error %v, want %q", tc.name, tc.err, tc.want)
		}
	}
}

// TestAppendAs: a tensor converts element by element across pieces
// (an element split between two pieces included) and across blocks,
// as .to(float32).to(dtype); its own dtype is its bytes.
func TestAppendAs(t *testing.T) {
	n := convertBlock + 3
	var vals []float32
	for i := range n {
		vals = append(vals, float32(i)/7-100)
	}
	f32, err := AppendFloat32sAs(nil, vals, F32)
	if err != nil {
		t.Fatal(err)
	}
	// Pieces of 5, 4097·4-10 and the rest bytes: the first split inside
	// the second element.
	cut1, cut2 := 5, 4*convertBlock-10+5
	src, err := FromPieces(F32, Shape{int64(n)}, [][]byte{f32[:cut1], f32[cut1:cut2], f32[cut2:]})
	if err != nil {
		t.Fatal(err)
	}
	for _, dt := range []DType{F32, BF16, F16, F64} {
		want := []byte{1, 2}
		for _, v := range vals {
			switch dt {
			case F32:
				want = binary.LittleEndian.AppendUint32(want, math.Float32bits(v))
			case BF16:
				want = binary.LittleEndian.AppendUint16(want, F32ToBF16(v))
			case F16:
				want = binary.LittleEndian.AppendUint16(want, F32ToF16(v))
			case F64:
				want = binary.LittleEndian.AppendUint64(want, math.Float64bits(float64(v)))
			}
		}
		got, err := src.AppendAs([]byte{1, 2}, dt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want, got) {
			t.Errorf("F32 -> %s: %d bytes differ from element-by-element conversion (%d bytes)", dt, len(got), len(want))
		}
	}
	// F64 -> BF16 rounds to float32 first (two roundings, as torch's
	// .to(float32).to(bfloat16)): 1 + 2^-8 + 2^-30 is float32 1+2^-8, a
	// bf16 tie that goes to even (1.0).
	f64 := encode(F64, math.Float64bits(1+1.0/256+1.0/(1<<30)))
	x, err := New(F64, Shape{1}, f64)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := x.AppendAs(nil, BF16); err != nil || binary.LittleEndian.Uint16(got) != 0x3F80 {
		t.Errorf("F64 -> BF16: %x, %v, want 3f80", got, err)
	}
	i64, _ := New(I64, Shape{1}, make([]byte, 8))
	if _, err := i64.AppendAs(nil, BF16); err == nil || !strings.Contains(err.Error(), "cannot decode I64 elements as floats") {
		t.Errorf("I64 -> BF16: %v", err)
	}
}
