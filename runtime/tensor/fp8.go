package tensor

import "math"

// Conversions between float8 e4m3fn (safetensors F8_E4M3, torch
// float8_e4m3fn) and float32.
//
// E4M3FN has one sign bit, four exponent bits (bias 7) and three mantissa
// bits, no infinities, and one NaN per sign (0x7F, 0xFF). Its finite
// values are ±0, the subnormals m·2^-9 (m = 1..7) and the normals
// (1+m/8)·2^(e-7) up to 448 (0x7E).

// e4m3Table holds the float32 value of every E4M3 byte.
var e4m3Table = func() (t [256]float32) {
	for b := range 256 {
		t[b] = e4m3Decode(uint8(b))
	}
	return t
}()

// e4m3Decode computes the value of the E4M3 byte b from its fields.
func e4m3Decode(b uint8) float32 {
	s, e, m := b>>7, (b>>3)&15, b&7
	var v float32
	switch {
	case e == 15 && m == 7:
		return float32(math.NaN())
	case e == 0:
		v = float32(m) / 512 // m · 2^-9, exact
	default:
		v = float32(math.Ldexp(1+float64(m)/8, int(e)-7))
	}
	if s != 0 {
		v = -v
	}
	return v
}

// E4M3ToF32 returns the float32 value of the E4M3 byte b (exact; NaN for
// 0x7F and 0xFF).
func E4M3ToF32(b uint8) float32 { return e4m3Table[b] }

// E4M3Table returns the 256-entry decoding table (a copy).
func E4M3Table() [256]float32 { return e4m3Table }

// E4M3IsNaN reports whether the E4M3 byte b is a NaN (0x7F or 0xFF).
func E4M3IsNaN(b uint8) bool { return b&0x7F == 0x7F }

// E4M3Max is the largest finite E4M3 value.
const E4M3Max = 448

// F32ToE4M3 returns the E4M3 byte nearest to f, ties to even, exactly as
// c10's fp8e4m3fn_from_fp32_value (torch's CPU cast) does: magnitudes that
// round above 448 (|f| > 464, and 464 < |f| means ≥ the midpoint to the
// would-be 480) and NaN become the NaN 0x7F with f's sign; infinities too.
// Callers wanting the saturating behaviour of CUDA and Triton casts clamp
// to ±[E4M3Max] first.
func F32ToE4M3(f float32) uint8 {
	u := math.Float32bits(f)
	sign := uint8(u>>24) & 0x80
	a := u & 0x7FFFFFFF
	if a > 0x7F800000 { // NaN
		return sign | 0x7F
	}
	abs := math.Float32frombits(a)
	if abs < 1.0/64 { // below the smallest normal 2^-6: subnormal grid m·2^-9
		m := math.RoundToEven(float64(abs) * 512) // exact scaling, one rounding
		return sign | uint8(m)                    // m = 8 is the smallest normal, 0x08
	}
	exp := int32(a>>23) - 127 // ≥ -6
	if exp > 8 {
		return sign | 0x7F
	}
	mant := a & 0x7FFFFF
	m3 := mant >> 20
	rem := mant & (1<<20 - 1)
	if rem > 1<<19 || rem == 1<<19 && m3&1 == 1 {
		m3++
	}
	e := uint32(exp + 7)
	if m3 == 8 {
		m3 = 0
		e++
	}
	r := e<<3 | m3
	if r > 0x7E {
		return sign | 0x7F
	}
	return sign | uint8(r)
}
