package ops

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestLossyDeclared derives the lossy table from the ops themselves: every
// case of the catalog is run HF → MCA → HF on random inputs (the norm's
// include its special values) in every floating dtype; an op whose round
// trip changes a byte must be declared lossy in that dtype, and every
// declared (kind, dtype) must be seen losing something.
func TestLossyDeclared(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	dts := []tensor.DType{tensor.BF16, tensor.F16, tensor.F32, tensor.F64}
	lost := map[string]map[tensor.DType]bool{}
	for _, c := range cases {
		if c.hf == nil || !c.roundTripHF && !c.norm {
			continue // no inverse from these names (copy's fan-out back)
		}
		for _, dt := range dts {
			in := makeInputs(t, r, c, dt, c.hf)
			out, err := c.op.Apply(HFToMCA, c.cfg, in)
			if err != nil {
				t.Fatalf("%s %v: %v", c.name, dt, err)
			}
			back, err := c.op.Apply(MCAToHF, c.cfg, out)
			if err != nil {
				t.Fatalf("%s %v back: %v", c.name, dt, err)
			}
			if valuesEqual(back, in) {
				continue
			}
			if !Lossy(c.op.Kind, dt) {
				t.Errorf("%s: the round trip changes a %v tensor, but %s is not declared lossy in %v", c.name, dt, c.op.Kind, dt)
			}
			if lost[c.op.Kind] == nil {
				lost[c.op.Kind] = map[tensor.DType]bool{}
			}
			lost[c.op.Kind][dt] = true
		}
	}
	for kind, dts := range lossyIn {
		for _, dt := range dts {
			if !lost[kind][dt] {
				t.Errorf("%s is declared lossy in %v, but no round trip lost anything", kind, dt)
			}
		}
	}
}

// TestRoundTripNorm: RoundTrip of the zero-centred norm is (w - 1) + 1 in
// the tensor's dtype, computed independently here, on blocks of any
// length; exact ops are refused.
func TestRoundTripNorm(t *testing.T) {
	le := binary.LittleEndian
	w := []float32{0.01, 1, -3.5, 1.0 / 1024, 1e-5, 300}
	src := make([]byte, 2*len(w))
	want := make([]byte, 2*len(w))
	for i, f := range w {
		b := tensor.F32ToBF16(f)
		le.PutUint16(src[2*i:], b)
		m := tensor.F32ToBF16(tensor.BF16ToF32(b) - 1)
		le.PutUint16(want[2*i:], tensor.F32ToBF16(tensor.BF16ToF32(m)+1))
	}
	for _, n := range []int{1, 2, len(w)} {
		x, err := tensor.New(tensor.BF16, tensor.Shape{int64(n)}, src[:2*n])
		if err != nil {
			t.Fatal(err)
		}
		got, err := RoundTrip(KindZeroCenteredRMSNorm, x, Config{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want[:2*n]) {
			t.Errorf("%d elements: round trip % x, want % x", n, got.Bytes(), want[:2*n])
		}
	}
	if bytes.Equal(src, want) {
		t.Fatal("the values lose nothing: the test checks nothing")
	}
	// f32: 2^-30 - 1 rounds to -1, so it comes back as 0.
	f := make([]byte, 4)
	le.PutUint32(f, math.Float32bits(1.0/(1<<30)))
	x, _ := tensor.New(tensor.F32, tensor.Shape{1}, f)
	got, err := RoundTrip(KindZeroCenteredRMSNorm, x, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if v := math.Float32frombits(le.Uint32(got.Bytes())); v != 0 {
		t.Errorf("f32 2^-30 came back as %g, want 0", v)
	}
	if _, err := RoundTrip(KindRename, x, Config{}); err == nil {
		t.Error("RoundTrip of rename (exact) gave no error")
	}
}

// TestULPDiff counts changed elements and the largest distance in units
// in the last place, across zero and with NaNs.
func TestULPDiff(t *testing.T) {
	bf := func(v ...uint16) []byte {
		out := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], x)
		}
		return out
	}
	for _, c := range []struct {
		name    string
		a, b    []byte
		changed int64
		ulp     uint64
	}{
		{"same", bf(0x3F80, 0x0001), bf(0x3F80, 0x0001), 0, 0},
		{"one ulp", bf(0x3F80), bf(0x3F81), 1, 1},
		{"across zero", bf(0x0002), bf(0x8001), 1, 3},
		{"signed zeros", bf(0x0000), bf(0x8000), 1, 0},
		{"nan", bf(0x7FC1, 0x3F80), bf(0x7FC0, 0x3F84), 2, 4},
	} {
		changed, ulp := ULPDiff(tensor.BF16, c.a, c.b)
		if changed != c.changed || ulp != c.ulp {
			t.Errorf("%s: %d changed, %d ulp; want %d, %d", c.name, changed, ulp, c.changed, c.ulp)
		}
	}
	if got := LossyDTypes(KindRename); !slices.Equal(got, nil) {
		t.Errorf("rename lossy in %v", got)
	}
}
