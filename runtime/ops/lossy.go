package ops

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// lossyIn lists, per op kind, the dtypes in which the op's round trip
// (HF → MCA → HF) may not give the bytes back. Only arithmetic loses
// anything; every other op moves bytes (rows, chunks, transposes) and is
// exact in every dtype:
//
//   - zero_centered_rmsnorm computes w - 1 and then w + 1 in the tensor's
//     dtype, rounding twice. Where |w| is small next to 1 the first
//     rounding drops its low bits: (w - 1) + 1 != w in every floating
//     dtype (bf16 keeps 8 significant bits, f16 11, f32 24, f64 53; e.g.
//     w = 2^-30 comes back as 0 in f32). Weights in [0.5, 2] come back
//     exactly (w - 1 is then exact, Sterbenz), so a trained norm near 1
//     loses nothing, while a zero-centred one stored near 0 does.
//
// The op catalog (compiler/vocab's OpSpec.LossyIn) declares the same
// table; a test keeps the two equal.
var lossyIn = map[string][]tensor.DType{
	KindZeroCenteredRMSNorm: {tensor.BF16, tensor.F16, tensor.F32, tensor.F64},
}

// LossyDTypes returns the dtypes in which the round trip of op kind may
// change a tensor's bytes, nil for an exact op.
func LossyDTypes(kind string) []tensor.DType { return slices.Clone(lossyIn[kind]) }

// Lossy reports whether the round trip of op kind may change a tensor of
// dtype dt.
func Lossy(kind string, dt tensor.DType) bool { return slices.Contains(lossyIn[kind], dt) }

// RoundTrip returns what the round trip of a lossy, element-wise op of
// kind makes of t: the op applied HF → MCA and then MCA → HF, with the
// op's own arithmetic. Since the op is element-wise, t may be any run of
// whole elements of a tensor (a block of it, flattened). It is an error
// for an op that is not lossy in t's dtype.
func RoundTrip(kind string, t tensor.Tensor, cfg Config) (tensor.Tensor, error) {
	if !Lossy(kind, t.DType) {
		return tensor.Tensor{}, fmt.Errorf("%s is exact in %v: no round trip to compute", kind, t.DType)
	}
	op := Op{Kind: kind}
	mca, err := op.Apply(HFToMCA, cfg, []Value{TensorValue(t)})
	if err != nil {
		return tensor.Tensor{}, err
	}
	hf, err := op.Apply(MCAToHF, cfg, mca)
	if err != nil {
		return tensor.Tensor{}, err
	}
	return hf[0].Flatten()
}

// ULPDiff compares two runs of elements of dtype dt (a floating-point
// dtype; others compare as raw bits) and returns how many elements
// differ in their bits and the largest distance in units in the last
// place between two that differ. Elements that are NaN on either side
// count as changed but add no distance (NaN payloads are not values).
func ULPDiff(dt tensor.DType, a, b []byte) (changed int64, maxULP uint64) {
	es := dt.Size()
	n := min(len(a), len(b)) / es * es
	for i := 0; i < n; i += es {
		x, y := bitsAt(a[i:], es), bitsAt(b[i:], es)
		if x == y {
			continue
		}
		changed++
		ox, okx := ordered(dt, x)
		oy, oky := ordered(dt, y)
		if !okx || !oky {
			continue
		}
		d := uint64(ox - oy)
		if ox < oy {
			d = uint64(oy - ox)
		}
		maxULP = max(maxULP, d)
	}
	return changed, maxULP
}

// bitsAt reads one little-endian element of es bytes.
func bitsAt(p []byte, es int) uint64 {
	le := binary.LittleEndian
	switch es {
	case 1:
		return uint64(p[0])
	case 2:
		return uint64(le.Uint16(p))
	case 4:
		return uint64(le.Uint32(p))
	}
	return le.Uint64(p)
}

// ordered maps a float's bits to an integer in the order of its value, so
// that neighbouring floats differ by one (+0 and -0 both map to 0). It
// reports false for a NaN.
func ordered(dt tensor.DType, bits uint64) (int64, bool) {
	var sign uint64
	var mag uint64
	switch dt {
	case tensor.BF16:
		sign, mag = bits>>15, bits&0x7FFF
		if mag > 0x7F80 {
			return 0, false
		}
	case tensor.F16:
		sign, mag = bits>>15, bits&0x7FFF
		if mag > 0x7C00 {
			return 0, false
		}
	case tensor.F32:
		sign, mag = bits>>31, bits&0x7FFFFFFF
		if math.IsNaN(float64(math.Float32frombits(uint32(bits)))) {
			return 0, false
		}
	case tensor.F64:
		sign, mag = bits>>63, bits&(1<<63-1)
		if math.IsNaN(math.Float64frombits(bits)) {
			return 0, false
		}
	default:
		return int64(bits), true
	}
	if sign != 0 {
		return -int64(mag), true
	}
	return int64(mag), true
}
