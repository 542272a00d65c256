package ops

import (
	"encoding/binary"
	"math"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

func init() {
	register(both(KindZeroCenteredRMSNorm, 1, 1,
		func(c *call) ([]Value, error) { return zeroCentered(c, -1) },
		func(c *call) ([]Value, error) { return zeroCentered(c, +1) }))
}

// zeroCentered computes w - 1 (HF → MCA) or w + 1 (MCA → HF) the way torch
// computes `weight - 1` / `weight + 1` on CPU, bit for bit:
//
//   - BF16, F16: widen to float32, add ±1 in float32 (one rounding), round
//     to nearest even back to 16 bits. Non-NaN results match torch exactly,
//     double rounding included. A NaN comes out as torch's scalar canonical
//     NaN (0x7FC0, sign|0x7E00); torch 1.13's AVX2 loop writes 0xFFFF for
//     bf16 NaNs in the vectorised part of a tensor, so NaN bit patterns
//     depend on the position there and are not reproducible.
//   - F32, F64: plain IEEE arithmetic in that precision.
//
// The result is a new tensor of the same dtype and shape.
func zeroCentered(c *call, delta int) ([]Value, error) {
	if err := c.wantInputs("weight"); err != nil {
		return nil, err
	}
	t, err := c.plain(0, "weight")
	if err != nil {
		return nil, err
	}
	switch t.DType {
	case tensor.BF16, tensor.F16, tensor.F32, tensor.F64:
	default:
		return nil, c.errorf("weight is %v; the zero-centred norm needs a floating-point tensor (BF16, F16, F32 or F64)", t.DType)
	}
	dst, err := c.alloc(t.Len())
	if err != nil {
		return nil, err
	}
	es := t.DType.Size()
	aligned := true
	for _, p := range t.Pieces() {
		if len(p)%es != 0 {
			aligned = false
		}
	}
	pieces := t.Pieces()
	if !aligned {
		pieces = [][]byte{t.Bytes()}
	}
	o := 0
	for _, p := range pieces {
		addOne(dst[o:o+len(p)], p, t.DType, delta)
		o += len(p)
	}
	out, err := tensor.New(t.DType, t.Shape, dst)
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	return values(out), nil
}

// addOne writes src + delta (delta = ±1) to dst element by element.
func addOne(dst, src []byte, dt tensor.DType, delta int) {
	le := binary.LittleEndian
	switch dt {
	case tensor.BF16:
		d := float32(delta)
		for i := 0; i+2 <= len(src); i += 2 {
			le.PutUint16(dst[i:], tensor.F32ToBF16(tensor.BF16ToF32(le.Uint16(src[i:]))+d))
		}
	case tensor.F16:
		d := float32(delta)
		for i := 0; i+2 <= len(src); i += 2 {
			le.PutUint16(dst[i:], tensor.F32ToF16(tensor.F16ToF32(le.Uint16(src[i:]))+d))
		}
	case tensor.F32:
		d := float32(delta)
		for i := 0; i+4 <= len(src); i += 4 {
			le.PutUint32(dst[i:], math.Float32bits(math.Float32frombits(le.Uint32(src[i:]))+d))
		}
	case tensor.F64:
		d := float64(delta)
		for i := 0; i+8 <= len(src); i += 8 {
			le.PutUint64(dst[i:], math.Float64bits(math.Float64frombits(le.Uint64(src[i:]))+d))
		}
	}
}
