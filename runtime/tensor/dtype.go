// Package tensor holds the host-side tensor model of the runtime: element
// types ([DType]), shapes ([Shape]) and tensors that view bytes owned by
// someone else (an mmap'd input file, an output buffer).
//
// The package depends on the standard library only; every other runtime
// package builds on it.
package tensor

import "fmt"

// DType is an element type, named as safetensors names it.
type DType uint8

// The element types the runtime understands. The zero value is Invalid.
const (
	Invalid DType = iota
	BOOL
	U8
	I8
	I16
	I32
	I64
	F8E4M3
	F8E5M2
	F16
	BF16
	F32
	F64
)

var dtypeInfo = [...]struct {
	name  string // safetensors spelling
	torch string // torch storage class name used in torch.save pickles
	size  int    // bytes per element
}{
	Invalid: {"INVALID", "", 0},
	BOOL:    {"BOOL", "BoolStorage", 1},
	U8:      {"U8", "ByteStorage", 1},
	I8:      {"I8", "CharStorage", 1},
	I16:     {"I16", "ShortStorage", 2},
	I32:     {"I32", "IntStorage", 4},
	I64:     {"I64", "LongStorage", 8},
	F8E4M3:  {"F8_E4M3", "Float8_e4m3fnStorage", 1},
	F8E5M2:  {"F8_E5M2", "Float8_e5m2Storage", 1},
	F16:     {"F16", "HalfStorage", 2},
	BF16:    {"BF16", "BFloat16Storage", 2},
	F32:     {"F32", "FloatStorage", 4},
	F64:     {"F64", "DoubleStorage", 8},
}

// String returns the safetensors spelling of d, such as "BF16".
func (d DType) String() string {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].name
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size returns the number of bytes of one element, or 0 for Invalid.
func (d DType) Size() int {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].size
	}
	return 0
}

// TorchStorage returns the torch storage class name for d (for example
// "BFloat16Storage"), as written in a torch.save pickle.
func (d DType) TorchStorage() string {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].torch
	}
	return ""
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	switch d {
	case F8E4M3, F8E5M2, F16, BF16, F32, F64:
		return true
	}
	return false
}

// ParseDType returns the DType spelled s in safetensors, or an error naming s.
func ParseDType(s string) (DType, error) {
	for i, info := range dtypeInfo {
		if i != int(Invalid) && info.name == s {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("unknown dtype %q", s)
}

// DTypeFromTorchStorage returns the DType of a torch storage class name such
// as "FloatStorage".
func DTypeFromTorchStorage(s string) (DType, error) {
	for i, info := range dtypeInfo {
		if i != int(Invalid) && info.torch == s {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("unknown torch storage type %q", s)
}

// Shape is a tensor shape, outermost dimension first.
type Shape []int64

// NumElements returns the product of the dimensions (1 for a scalar), or -1
// if a dimension is negative or the product overflows int64.
func (s Shape) NumElements() int64 {
	n := int64(1)
	for _, d := range s {
		if d < 0 {
			return -1
		}
		if d != 0 && n > (1<<62)/d {
			return -1
		}
		n *= d
	}
	return n
}

// Equal reports whether s and t have the same dimensions.
func (s Shape) Equal(t Shape) bool {
	if len(s) != len(t) {
		return false
	}
	for i := range s {
		if s[i] != t[i] {
			return false
		}
	}
	return true
}

// String formats s as "[2, 3]".
func (s Shape) String() string {
	b := []byte{'['}
	for i, d := range s {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, "%d", d)
	}
	return string(append(b, ']'))
}
