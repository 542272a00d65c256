package tensor

import "math"

// Conversions between the 16-bit float formats and float32, bit-compatible
// with torch's scalar types c10::BFloat16 and c10::Half: widening is exact,
// narrowing rounds to nearest, ties to even, overflows to infinity and keeps
// subnormals.
//
// NaN: narrowing returns torch's canonical quiet NaN, 0x7FC0 for bfloat16
// (sign dropped, as c10::BFloat16 does) and sign|0x7E00 for float16 (as
// c10::Half does). Widening keeps the payload; a float16 signalling NaN
// comes out quiet, as on x86.

// BF16ToF32 returns the float32 value of the bfloat16 bits h (exact).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 returns the bfloat16 bits nearest to f (ties to even).
func F32ToBF16(f float32) uint16 {
	if f != f {
		return 0x7FC0
	}
	u := math.Float32bits(f)
	u += 0x7FFF + (u>>16)&1
	return uint16(u >> 16)
}

// F16ToF32 returns the float32 value of the IEEE binary16 bits h (exact).
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1F
	mant := uint32(h & 0x3FF)
	switch exp {
	case 0x1F:
		if mant == 0 {
			return math.Float32frombits(sign | 0x7F800000)
		}
		return math.Float32frombits(sign | 0x7FC00000 | mant<<13)
	case 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// Subnormal: mant × 2^-24, exact in float32.
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// F32ToF16 returns the IEEE binary16 bits nearest to f (ties to even).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xFF
	mant := b & 0x7FFFFF
	if exp == 0xFF {
		if mant != 0 {
			return sign | 0x7E00
		}
		return sign | 0x7C00
	}
	e := exp - 127 + 15 // biased float16 exponent
	if e >= 0x1F {
		return sign | 0x7C00
	}
	if e <= 0 {
		// Result is subnormal (or rounds up to the smallest normal):
		// value / 2^-24 = (mant|1<<23) >> (126-exp).
		if exp == 0 {
			return sign // float32 subnormals are far below float16's range
		}
		m := mant | 0x800000
		shift := uint32(126 - exp)
		if shift > 25 {
			return sign
		}
		h := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || rem == half && h&1 == 1 {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1FFF
	if rem > 0x1000 || rem == 0x1000 && h&1 == 1 {
		h++ // may carry into the exponent, up to infinity: correct
	}
	return sign | uint16(h)
}
