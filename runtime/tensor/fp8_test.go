package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestE4M3Decode checks the table against the values lora-fp8.md §2.4
// names and the field formula.
func TestE4M3Decode(t *testing.T) {
	cases := map[uint8]float32{0x00: 0, 0x7E: 448, 0xFE: -448, 0x08: 1.0 / 64, 0x01: 1.0 / 512, 0x81: -1.0 / 512, 0x38: 1, 0x07: 7.0 / 512, 0x3C: 1.5}
	for b, want := range cases {
		if got := E4M3ToF32(b); got != want {
			t.Errorf("E4M3ToF32(0x%02X) = %v, want %v", b, got, want)
		}
	}
	if v := E4M3ToF32(0x80); v != 0 || !math.Signbit(float64(v)) {
		t.Errorf("0x80 = %v, want -0", v)
	}
	for b := range 256 {
		nan := E4M3IsNaN(uint8(b))
		if got := E4M3ToF32(uint8(b)); (got != got) != nan || nan != (b == 0x7F || b == 0xFF) {
			t.Errorf("0x%02X: value %v, IsNaN %v", b, got, nan)
		}
	}
}

// nearestE4M3 is a brute-force encoder: the finite code nearest to f,
// ties to the even code (mantissa bit 0 clear), over all 254 finite codes.
func nearestE4M3(f float32) uint8 {
	best, bestD := -1, math.Inf(1)
	for b := range 256 {
		if E4M3IsNaN(uint8(b)) || (b == 0x80 && !math.Signbit(float64(f))) || (b == 0x00 && math.Signbit(float64(f))) {
			continue
		}
		d := math.Abs(float64(E4M3ToF32(uint8(b))) - float64(f))
		if d < bestD || d == bestD && b&1 == 0 {
			best, bestD = b, d
		}
	}
	return uint8(best)
}

// TestF32ToE4M3 compares the encoder with the brute-force nearest-even
// one on every exact midpoint, the round trip of every code, random values
// and the overflow edges of c10's cast.
func TestF32ToE4M3(t *testing.T) {
	for b := range 256 {
		if E4M3IsNaN(uint8(b)) {
			continue
		}
		if got := F32ToE4M3(E4M3ToF32(uint8(b))); got != uint8(b) {
			t.Errorf("round trip of 0x%02X: 0x%02X", b, got)
		}
	}
	// Midpoints between adjacent positive codes, and just around them.
	for b := range 0x7E {
		lo, hi := float64(E4M3ToF32(uint8(b))), float64(E4M3ToF32(uint8(b+1)))
		mid := float32((lo + hi) / 2)
		for _, f := range []float32{mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1000), -mid} {
			if got, want := F32ToE4M3(f), nearestE4M3(f); got != want {
				t.Errorf("F32ToE4M3(%v) = 0x%02X, want 0x%02X", f, got, want)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		f := float32(math.Ldexp(r.Float64()*2-1, r.IntN(20)-12))
		if got, want := F32ToE4M3(f), nearestE4M3(f); got != want {
			t.Fatalf("F32ToE4M3(%v) = 0x%02X, want 0x%02X", f, got, want)
		}
	}
	edges := map[float32]uint8{464: 0x7E, -464: 0xFE, 470: 0x7F, 480: 0x7F, 1e30: 0x7F, float32(math.Inf(-1)): 0xFF, float32(math.NaN()): 0x7F, 1e-30: 0x00, 0x1p-10: 0x00, 0x1p-10 + 0x1p-20: 0x01}
	for f, want := range edges {
		if got := F32ToE4M3(f); got != want {
			t.Errorf("F32ToE4M3(%v) = 0x%02X, want 0x%02X", f, got, want)
		}
	}
}
