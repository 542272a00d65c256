package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Element conversions between the float dtypes and Go floats: the one
// owner of the decode and encode loops (LoRA merge and export, dtype
// conversion of a tensor). Values are little-endian, as safetensors files
// and torch storages hold them.

// AppendFloat64s appends the elements of b, values of the float dtype dt,
// to dst as float64 and returns the extended slice. Every float dtype but
// F8E5M2 is decoded exactly; b's length must be a multiple of dt's size.
func AppendFloat64s(dst []float64, b []byte, dt DType) ([]float64, error) {
	es := dt.Size()
	if es == 0 || len(b)%es != 0 {
		return dst, fmt.Errorf("decoding %d bytes of %s as floats: not a whole number of elements", len(b), dt)
	}
	n := len(b) / es
	start := len(dst)
	dst = append(dst, make([]float64, n)...)
	out := dst[start:]
	switch dt {
	case F64:
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
	case F32:
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		}
	case BF16:
		for i := range out {
			out[i] = float64(BF16ToF32(binary.LittleEndian.Uint16(b[2*i:])))
		}
	case F16:
		for i := range out {
			out[i] = float64(F16ToF32(binary.LittleEndian.Uint16(b[2*i:])))
		}
	case F8E4M3:
		for i := range out {
			out[i] = float64(E4M3ToF32(b[i]))
		}
	default:
		return dst[:start], fmt.Errorf("cannot decode %s elements as floats", dt)
	}
	return dst, nil
}

// AppendFloat32sAs appends the values of src to dst encoded as the float
// dtype dt and returns the extended slice: exact for F64 and F32, rounded
// to nearest, ties to even for BF16, F16 and F8E4M3 (F32ToBF16, F32ToF16,
// F32ToE4M3), bit for bit what torch's .to(dtype) of a float32 tensor
// gives on CPU.
func AppendFloat32sAs(dst []byte, src []float32, dt DType) ([]byte, error) {
	switch dt {
	case F64:
		for _, f := range src {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(float64(f)))
		}
	case F32:
		for _, f := range src {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(f))
		}
	case BF16:
		for _, f := range src {
			dst = binary.LittleEndian.AppendUint16(dst, F32ToBF16(f))
		}
	case F16:
		for _, f := range src {
			dst = binary.LittleEndian.AppendUint16(dst, F32ToF16(f))
		}
	case F8E4M3:
		for _, f := range src {
			dst = append(dst, F32ToE4M3(f))
		}
	default:
		return dst, fmt.Errorf("cannot encode floats as %s", dt)
	}
	return dst, nil
}

// convertBlock is how many elements AppendAs converts at a time.
const convertBlock = 4096

// AppendAs appends the elements of t converted to the float dtype dt and
// returns the extended slice: t's bytes as they are when t already has
// dtype dt; otherwise each element is rounded to float32 (exact from
// BF16, F16 and F8E4M3) and then to dt (AppendFloat32sAs), as torch's
// .to(torch.float32).to(dtype) does. It converts a block at a time, never
// a float copy of the whole tensor.
func (t Tensor) AppendAs(dst []byte, dt DType) ([]byte, error) {
	if t.DType == dt {
		return t.AppendTo(dst), nil
	}
	es := t.DType.Size()
	if es == 0 {
		return dst, fmt.Errorf("cannot convert %s elements", t.DType)
	}
	var (
		f64   []float64
		f32   []float32
		carry []byte // the bytes of an element split across pieces
		err   error
	)
	flush := func(b []byte) error {
		for len(b) > 0 {
			n := min(len(b), convertBlock*es)
			if f64, err = AppendFloat64s(f64[:0], b[:n], t.DType); err != nil {
				return err
			}
			f32 = f32[:0]
			for _, v := range f64 {
				f32 = append(f32, float32(v))
			}
			if dst, err = AppendFloat32sAs(dst, f32, dt); err != nil {
				return err
			}
			b = b[n:]
		}
		return nil
	}
	for _, p := range t.pieces {
		if len(carry) > 0 {
			k := min(es-len(carry), len(p))
			carry, p = append(carry, p[:k]...), p[k:]
			if len(carry) < es {
				continue
			}
			if err := flush(carry); err != nil {
				return dst, err
			}
			carry = carry[:0]
		}
		whole := len(p) - len(p)%es
		if err := flush(p[:whole]); err != nil {
			return dst, err
		}
		carry = append(carry, p[whole:]...)
	}
	if len(carry) > 0 {
		return dst, fmt.Errorf("converting %s: %d bytes are not a whole number of %s elements", t, t.size, t.DType)
	}
	return dst, nil
}
