package tensor

import "fmt"

// A Builder assembles a tensor from byte ranges of other tensors without
// copying any bytes: it only collects pieces. It is how row permutations
// such as the Megatron QKV interleave are expressed.
//
// The zero Builder is ready to use; the first [Builder.Rows] call fixes the
// dtype. The first error sticks and is returned by [Builder.Build].
type Builder struct {
	dtype  DType
	pieces [][]byte
	size   int64
	err    error
}

// Grow makes room for n more pieces, so that a builder of known size
// allocates its piece list once.
func (b *Builder) Grow(n int) {
	if n > 0 && cap(b.pieces)-len(b.pieces) < n {
		p := make([][]byte, len(b.pieces), len(b.pieces)+n)
		copy(p, b.pieces)
		b.pieces = p
	}
}

// Rows appends rows [start, end) of t along dimension 0.
func (b *Builder) Rows(t Tensor, start, end int64) {
	if b.err != nil {
		return
	}
	if b.dtype == Invalid {
		b.dtype = t.DType
	} else if t.DType != b.dtype {
		b.err = fmt.Errorf("tensor: cannot join %v and %v data", b.dtype, t.DType)
		return
	}
	if len(t.Shape) == 0 || start < 0 || end < start || end > t.Shape[0] {
		b.err = fmt.Errorf("tensor: rows [%d, %d) out of range for %v", start, end, t)
		return
	}
	rb, err := t.RowBytes()
	if err != nil {
		b.err = err
		return
	}
	b.pieces, b.err = t.AppendRange(b.pieces, start*rb, (end-start)*rb)
	b.size += (end - start) * rb
}

// All appends all of t's data.
func (b *Builder) All(t Tensor) {
	if b.err != nil {
		return
	}
	if b.dtype == Invalid {
		b.dtype = t.DType
	} else if t.DType != b.dtype {
		b.err = fmt.Errorf("tensor: cannot join %v and %v data", b.dtype, t.DType)
		return
	}
	for _, p := range t.pieces {
		b.pieces = appendPiece(b.pieces, p)
	}
	b.size += t.size
}

// Len returns the number of bytes appended so far.
func (b *Builder) Len() int64 { return b.size }

// Build returns the tensor of the given shape (one dimension may be -1)
// made of the appended data, and resets b.
func (b *Builder) Build(shape Shape) (Tensor, error) {
	defer func() { *b = Builder{} }()
	if b.err != nil {
		return Tensor{}, b.err
	}
	t := Tensor{DType: b.dtype, pieces: b.pieces, size: b.size}
	es := int64(b.dtype.Size())
	if es == 0 {
		return Tensor{}, fmt.Errorf("tensor: nothing appended to build %v from", shape)
	}
	s, err := inferShape(shape, b.size/es)
	if err != nil || b.size%es != 0 {
		return Tensor{}, fmt.Errorf("tensor: %d bytes of %v do not make shape %v", b.size, b.dtype, shape)
	}
	t.Shape = s
	if err := t.Validate(); err != nil {
		return Tensor{}, err
	}
	return t, nil
}
