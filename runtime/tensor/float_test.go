package tensor

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func isNaN32(f float32) bool { return f != f }

func TestBF16RoundTripExhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := BF16ToF32(uint16(h))
		got := F32ToBF16(f)
		if isNaN32(f) {
			if got != 0x7FC0 {
				t.Fatalf("NaN %#04x → %#04x, want 0x7FC0", h, got)
			}
			continue
		}
		if got != uint16(h) {
			t.Fatalf("bf16 %#04x → %v → %#04x", h, f, got)
		}
	}
}

func TestF16RoundTripExhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F16ToF32(uint16(h))
		got := F32ToF16(f)
		if isNaN32(f) {
			if got != uint16(h)&0x8000|0x7E00 {
				t.Fatalf("NaN %#04x → %#04x", h, got)
			}
			continue
		}
		if got != uint16(h) {
			t.Fatalf("f16 %#04x → %v → %#04x", h, f, got)
		}
		// Widening must be exact: compare with the textbook formula.
		exp := h >> 10 & 0x1F
		mant := float64(h & 0x3FF)
		var want float64
		switch exp {
		case 0:
			want = mant * math.Pow(2, -24)
		case 0x1F:
			want = math.Inf(1)
		default:
			want = (1 + mant/1024) * math.Pow(2, float64(exp)-15)
		}
		if h&0x8000 != 0 {
			want = -want
		}
		if float64(f) != want {
			t.Fatalf("F16ToF32(%#04x) = %v, want %v", h, f, want)
		}
	}
}

// nearest returns the bits of the value in table (sorted, non-negative,
// with bits) nearest to x >= 0, ties to even bits.
type entry struct {
	v    float64
	bits uint16
}

func nearest(table []entry, x float64) uint16 {
	i := sort.Search(len(table), func(i int) bool { return table[i].v >= x })
	if i == len(table) {
		return table[len(table)-1].bits
	}
	if i == 0 || table[i].v == x {
		return table[i].bits
	}
	lo, hi := table[i-1], table[i]
	dl, dh := x-lo.v, hi.v-x
	switch {
	case dl < dh:
		return lo.bits
	case dh < dl:
		return hi.bits
	case lo.bits&1 == 0:
		return lo.bits
	}
	return hi.bits
}

// table16 lists the non-negative finite values of a 16-bit format in
// increasing order, then its infinity at the value where rounding to it
// starts being possible (the next power of two).
func table16(decode func(uint16) float32, inf uint16, next float64) []entry {
	var tab []entry
	for h := 0; h < 0x8000; h++ {
		f := decode(uint16(h))
		if isNaN32(f) || math.IsInf(float64(f), 0) {
			continue
		}
		tab = append(tab, entry{float64(f), uint16(h)})
	}
	sort.Slice(tab, func(i, j int) bool { return tab[i].v < tab[j].v })
	return append(tab, entry{next, inf})
}

func checkNarrowing(t *testing.T, name string, narrow func(float32) uint16, decode func(uint16) float32, tab []entry) {
	t.Helper()
	check := func(f float32) {
		if isNaN32(f) {
			return
		}
		x := math.Abs(float64(f))
		want := nearest(tab, x)
		if math.Signbit(float64(f)) {
			want |= 0x8000
		}
		if got := narrow(f); got != want {
			t.Fatalf("%s(%g = %#08x) = %#04x, want %#04x", name, f, math.Float32bits(f), got, want)
		}
	}
	// Every midpoint between neighbours, and one float32 ulp either side.
	for i := 1; i < len(tab); i++ {
		mid := float32((tab[i-1].v + tab[i].v) / 2)
		for _, f := range []float32{mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, float32(math.Inf(1))), float32(tab[i].v)} {
			check(f)
			check(-f)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 1_000_000; i++ {
		check(math.Float32frombits(r.Uint32()))
	}
	for _, f := range []float32{0, float32(math.Inf(1)), float32(math.Inf(-1)), math.MaxFloat32, math.SmallestNonzeroFloat32} {
		check(f)
	}
}

func TestF32ToF16Rounding(t *testing.T) {
	checkNarrowing(t, "F32ToF16", F32ToF16, F16ToF32, table16(F16ToF32, 0x7C00, 65536))
}

func TestF32ToBF16Rounding(t *testing.T) {
	checkNarrowing(t, "F32ToBF16", F32ToBF16, BF16ToF32, table16(BF16ToF32, 0x7F80, math.Pow(2, 128)))
}

func TestNaNs(t *testing.T) {
	qnan := math.Float32frombits(0x7FC12345)
	nqnan := math.Float32frombits(0xFFC12345)
	if got := F32ToBF16(qnan); got != 0x7FC0 {
		t.Errorf("F32ToBF16(NaN) = %#04x", got)
	}
	if got := F32ToBF16(nqnan); got != 0x7FC0 {
		t.Errorf("F32ToBF16(-NaN) = %#04x", got)
	}
	if got := F32ToF16(nqnan); got != 0xFE00 {
		t.Errorf("F32ToF16(-NaN) = %#04x", got)
	}
	if got := math.Float32bits(F16ToF32(0x7C01)); got != 0x7FC02000 {
		t.Errorf("F16ToF32(sNaN) = %#08x, want quiet 0x7FC02000", got)
	}
}
