package torchsave

import (
	"fmt"
	"strconv"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// Dict is a Python dict, or a collections.OrderedDict when Ordered is set,
// with its items in insertion order.
type Dict struct {
	Ordered bool
	Items   []Item
	// Attrs holds the instance attributes an OrderedDict carries, set by a
	// pickle BUILD: torch's Module.state_dict attaches "_metadata". Nil
	// when there are none; only an OrderedDict can have them.
	Attrs *Dict
}

// Item is one key/value pair of a [Dict].
type Item struct {
	Key   any
	Value any
}

// Get returns the value stored under key, comparing keys with ==.
func (d *Dict) Get(key any) (any, bool) {
	if d == nil {
		return nil, false
	}
	for _, it := range d.Items {
		if it.Key == key {
			return it.Value, true
		}
	}
	return nil, false
}

// List is a Python list.
type List struct {
	Items []any
}

// Object is a value of a Python class the reader does not model, such as
// the argparse.Namespace of training arguments or NumPy random state in a
// Megatron checkpoint, or the io.BytesIO extra state of Transformer Engine
// layers. It is recorded as the pickle describes it and never imported,
// constructed or called, so reading an untrusted file runs no code. Bare
// is set for a reference to the class or function itself; otherwise Args
// are the arguments it was called with (REDUCE or NEWOBJ) and State what
// BUILD then set, if anything.
type Object struct {
	Class string // "module.name"
	Bare  bool
	Args  Tuple
	State any
}

// Tuple is a Python tuple.
type Tuple []any

// TensorSpec declares a tensor for the writer: its element type and shape.
// The bytes follow later, little-endian, in row-major (C) order.
type TensorSpec struct {
	DType tensor.DType
	Shape tensor.Shape
}

// Size returns the number of bytes of the tensor, or -1 if the spec is
// invalid (unknown dtype, negative dimension, or overflow).
func (s TensorSpec) Size() int64 {
	es := int64(s.DType.Size())
	n := s.Shape.NumElements()
	if es == 0 || s.DType.TorchStorage() == "" || n < 0 || (n > 0 && n > (1<<62)/es) {
		return -1
	}
	return n * es
}

// Tensor is a tensor read from a file.
type Tensor struct {
	// Name is the path of the tensor in the value tree, such as
	// "model/decoder.final_layernorm.weight" (path elements joined by "/").
	Name  string
	DType tensor.DType
	Shape tensor.Shape
	// Stride is in elements, as torch stores it. It is always the
	// contiguous stride of Shape: the reader rejects other tensors.
	Stride []int64
	// StorageOffset is the first element of the tensor within its storage.
	StorageOffset int64
	// Storage is the key of the storage record (data/<Storage>).
	Storage      string
	RequiresGrad bool
	// Data holds the tensor's bytes: a read-only slice of the mapped file,
	// valid until [File.Close]. Its length is the number of elements times
	// the element size.
	Data []byte
}

// contiguousStrides returns the strides torch gives a fresh tensor of shape:
// stride[i] = stride[i+1] * max(shape[i+1], 1).
func contiguousStrides(shape tensor.Shape) []int64 {
	st := make([]int64, len(shape))
	acc := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = acc
		acc *= max(shape[i], 1)
	}
	return st
}

// isContiguous reports whether stride describes a row-major layout of shape,
// following torch's is_contiguous: dimensions of size 1 may have any stride,
// and an empty tensor is always contiguous.
func isContiguous(shape tensor.Shape, stride []int64) bool {
	if len(shape) != len(stride) {
		return false
	}
	for _, d := range shape {
		if d == 0 {
			return true
		}
	}
	expect := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] == 1 {
			continue
		}
		if stride[i] != expect {
			return false
		}
		expect *= shape[i]
	}
	return true
}

// joinPath appends a key to a value-tree path.
func joinPath(path string, key any) string {
	var k string
	switch key := key.(type) {
	case string:
		k = key
	case int64:
		k = strconv.FormatInt(key, 10)
	case int:
		k = strconv.Itoa(key)
	default:
		k = fmt.Sprint(key)
	}
	if path == "" {
		return k
	}
	return path + "/" + k
}

// Error is the error type of this package. It names the file and, where
// they apply, the zip record and the tensor concerned.
type Error struct {
	File   string // path of the .pt file
	Record string // record name inside the archive folder, such as "data.pkl" or "data/3"
	Tensor string // tensor path, such as "model/embedding.word_embeddings.weight"
	Offset int64  // byte offset within Record, or -1
	Err    error
}

func (e *Error) Error() string {
	b := []byte("torchsave: ")
	b = append(b, e.File...)
	if e.Record != "" {
		b = append(b, ": "...)
		b = append(b, e.Record...)
		if e.Offset >= 0 {
			b = fmt.Appendf(b, " at byte %d", e.Offset)
		}
	}
	if e.Tensor != "" {
		b = fmt.Appendf(b, ": tensor %q", e.Tensor)
	}
	b = append(b, ": "...)
	b = append(b, e.Err.Error()...)
	return string(b)
}

func (e *Error) Unwrap() error { return e.Err }
