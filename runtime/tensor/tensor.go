package tensor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// A Tensor is a typed, shaped view of bytes owned by someone else: usually
// an mmap'd input file, sometimes a buffer an op filled.
//
// The data is a list of byte pieces that, read in order, hold the elements
// in row-major (C) order. A tensor read straight from a file is one piece;
// a tensor an op assembled by reordering rows of other tensors (the
// Megatron QKV interleave, a gate/up concatenation) is several pieces that
// point into those tensors' bytes. Nothing is copied until [Tensor.Bytes] is
// called on a tensor of more than one piece, so a writer can stream
// [Tensor.Pieces] to a file without ever holding the tensor in fresh memory.
//
// Tensors are values; copying one copies the header, not the data. The
// pieces are shared and must be treated as read-only.
//
// The zero Tensor has DType Invalid, no shape and no data.
type Tensor struct {
	DType DType
	Shape Shape

	pieces [][]byte // non-empty pieces, adjacent pieces coalesced
	size   int64    // sum of len(pieces[i])
}

// New returns a tensor of one piece. len(data) must equal the number of
// elements of shape times the size of dt. data is referenced, not copied.
func New(dt DType, shape Shape, data []byte) (Tensor, error) {
	t := Tensor{DType: dt, Shape: shape.clone(), size: int64(len(data))}
	if len(data) > 0 {
		t.pieces = [][]byte{data}
	}
	if err := t.Validate(); err != nil {
		return Tensor{}, err
	}
	return t, nil
}

// FromPieces returns a tensor whose data is the concatenation of pieces, in
// order. The byte slices are referenced, not copied; pieces that are adjacent
// in memory are merged and empty pieces dropped, so the tensor's piece list
// can be shorter than pieces. The total length must equal the number of
// elements of shape times the size of dt.
func FromPieces(dt DType, shape Shape, pieces [][]byte) (Tensor, error) {
	t := Tensor{DType: dt, Shape: shape.clone()}
	if len(pieces) > 0 {
		t.pieces = make([][]byte, 0, len(pieces))
		for _, p := range pieces {
			t.pieces = appendPiece(t.pieces, p)
			t.size += int64(len(p))
		}
	}
	if err := t.Validate(); err != nil {
		return Tensor{}, err
	}
	return t, nil
}

// Validate reports whether t is consistent: a known dtype, a shape without
// negative dimensions, and exactly as many bytes as the shape needs.
func (t Tensor) Validate() error {
	if t.DType == Invalid || t.DType.Size() == 0 {
		return fmt.Errorf("tensor: invalid dtype %v", t.DType)
	}
	n := t.Shape.NumElements()
	if n < 0 {
		return fmt.Errorf("tensor: invalid shape %v", t.Shape)
	}
	want, ok := mul(n, int64(t.DType.Size()))
	if !ok {
		return fmt.Errorf("tensor: shape %v of %v is too large", t.Shape, t.DType)
	}
	if want != t.size {
		return fmt.Errorf("tensor: %v%v needs %d bytes, data has %d", t.DType, t.Shape, want, t.size)
	}
	return nil
}

// Len returns the number of bytes of t's data.
func (t Tensor) Len() int64 { return t.size }

// NumElements returns the number of elements of t.
func (t Tensor) NumElements() int64 { return t.Shape.NumElements() }

// NumPieces returns the number of byte pieces t's data is made of; 0 for an
// empty tensor, 1 for a contiguous one.
func (t Tensor) NumPieces() int { return len(t.pieces) }

// Contiguous reports whether t's data is a single byte slice (or empty), so
// that [Tensor.Bytes] does not copy.
func (t Tensor) Contiguous() bool { return len(t.pieces) <= 1 }

// Pieces returns t's data as byte slices to be read in order. The slice and
// the bytes are shared with t and must not be modified.
func (t Tensor) Pieces() [][]byte { return t.pieces }

// Bytes returns t's data as one byte slice. For a contiguous tensor this is
// the underlying slice itself (shared, not copied); otherwise Bytes
// allocates a new slice and copies the pieces into it. Use [Tensor.Pieces],
// [Tensor.WriteTo] or [Tensor.AppendTo] to avoid the copy.
func (t Tensor) Bytes() []byte {
	switch len(t.pieces) {
	case 0:
		return []byte{}
	case 1:
		return t.pieces[0]
	}
	return t.AppendTo(make([]byte, 0, t.size))
}

// AppendTo appends t's data to dst and returns the extended slice.
func (t Tensor) AppendTo(dst []byte) []byte {
	for _, p := range t.pieces {
		dst = append(dst, p...)
	}
	return dst
}

// maxWrite bounds a single Write call; formats.md §5.3 found huge single
// writes slower than writes of at most 64 MiB.
const maxWrite = 64 << 20

// WriteTo writes t's data to w piece by piece, in writes of at most 64 MiB,
// without copying it. It implements [io.WriterTo].
func (t Tensor) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, p := range t.pieces {
		for len(p) > 0 {
			c := p
			if len(c) > maxWrite {
				c = c[:maxWrite]
			}
			k, err := w.Write(c)
			n += int64(k)
			if err == nil && k < len(c) {
				err = io.ErrShortWrite
			}
			if err != nil {
				return n, err
			}
			p = p[len(c):]
		}
	}
	return n, nil
}

// Equal reports whether t and u have the same dtype, shape and bytes,
// whatever their pieces.
func (t Tensor) Equal(u Tensor) bool {
	if t.DType != u.DType || !t.Shape.Equal(u.Shape) || t.size != u.size {
		return false
	}
	a, b := t.pieces, u.pieces
	var pa, pb []byte
	for {
		for len(pa) == 0 && len(a) > 0 {
			pa, a = a[0], a[1:]
		}
		for len(pb) == 0 && len(b) > 0 {
			pb, b = b[0], b[1:]
		}
		if len(pa) == 0 || len(pb) == 0 {
			return len(pa) == len(pb)
		}
		k := min(len(pa), len(pb))
		if !bytes.Equal(pa[:k], pb[:k]) {
			return false
		}
		pa, pb = pa[k:], pb[k:]
	}
}

// String describes t without its data, as in "BF16[4, 8]" or
// "BF16[4, 8] (3 pieces)".
func (t Tensor) String() string {
	s := t.DType.String() + t.Shape.String()
	if len(t.pieces) > 1 {
		s += fmt.Sprintf(" (%d pieces)", len(t.pieces))
	}
	return s
}

// RowBytes returns the number of bytes of one slice of t along dimension 0
// (one element for a 1-D tensor), or an error for a 0-D tensor.
func (t Tensor) RowBytes() (int64, error) {
	if len(t.Shape) == 0 {
		return 0, errors.New("tensor: a 0-d tensor has no rows")
	}
	n := t.Shape[1:].NumElements()
	if n < 0 {
		return 0, fmt.Errorf("tensor: invalid shape %v", t.Shape)
	}
	rb, ok := mul(n, int64(t.DType.Size()))
	if !ok {
		return 0, fmt.Errorf("tensor: shape %v of %v is too large", t.Shape, t.DType)
	}
	return rb, nil
}

// Rows returns rows [start, end) of t along dimension 0 as a view: the
// result has shape [end-start, t.Shape[1:]...] and shares t's bytes.
func (t Tensor) Rows(start, end int64) (Tensor, error) {
	if len(t.Shape) == 0 {
		return Tensor{}, errors.New("tensor: cannot take rows of a 0-d tensor")
	}
	if start < 0 || end < start || end > t.Shape[0] {
		return Tensor{}, fmt.Errorf("tensor: rows [%d, %d) out of range for %v", start, end, t)
	}
	rb, err := t.RowBytes()
	if err != nil {
		return Tensor{}, err
	}
	pieces, err := t.AppendRange(nil, start*rb, (end-start)*rb)
	if err != nil {
		return Tensor{}, err
	}
	shape := make(Shape, len(t.Shape))
	copy(shape, t.Shape)
	shape[0] = end - start
	return Tensor{DType: t.DType, Shape: shape, pieces: pieces, size: (end - start) * rb}, nil
}

// Reshape returns t with a new shape and the same data; only metadata
// changes. One dimension may be -1, meaning "whatever makes the element
// count match", as in torch.
func (t Tensor) Reshape(shape Shape) (Tensor, error) {
	s, err := inferShape(shape, t.Shape.NumElements())
	if err != nil {
		return Tensor{}, fmt.Errorf("tensor: cannot reshape %v to %v: %w", t, shape, err)
	}
	t.Shape = s
	return t, nil
}

func inferShape(shape Shape, n int64) (Shape, error) {
	s := shape.clone()
	infer := -1
	known := int64(1)
	for i, d := range s {
		switch {
		case d == -1 && infer < 0:
			infer = i
		case d < 0:
			return nil, errors.New("invalid dimension")
		default:
			var ok bool
			if known, ok = mul(known, d); !ok {
				return nil, errors.New("too many elements")
			}
		}
	}
	if infer >= 0 {
		if known == 0 || n%known != 0 {
			return nil, fmt.Errorf("%d elements do not divide into it", n)
		}
		s[infer] = n / known
		return s, nil
	}
	if known != n {
		return nil, fmt.Errorf("%d elements, want %d", n, known)
	}
	return s, nil
}

// AppendRange appends to dst the pieces that hold bytes [off, off+n) of t's
// data, without copying bytes, and returns the extended list. A piece that
// continues the last piece of dst in memory is merged into it, so the last
// element of dst may be replaced by a longer slice: dst must be owned by the
// caller.
func (t Tensor) AppendRange(dst [][]byte, off, n int64) ([][]byte, error) {
	if off < 0 || n < 0 || off > t.size || n > t.size-off {
		return dst, fmt.Errorf("tensor: byte range [%d, %d) out of range for %v of %d bytes", off, off+n, t, t.size)
	}
	for _, p := range t.pieces {
		if n == 0 {
			break
		}
		pl := int64(len(p))
		if off >= pl {
			off -= pl
			continue
		}
		take := min(pl-off, n)
		dst = appendPiece(dst, p[off:off+take])
		n -= take
		off = 0
	}
	return dst, nil
}

// appendPiece appends p to dst, merging it into dst's last piece when p
// starts where that piece ends inside the same allocation.
func appendPiece(dst [][]byte, p []byte) [][]byte {
	if len(p) == 0 {
		return dst
	}
	if k := len(dst); k > 0 {
		last := dst[k-1]
		if n := len(last); cap(last)-n >= len(p) && &last[:n+1][n] == &p[0] {
			dst[k-1] = last[:n+len(p)]
			return dst
		}
	}
	return append(dst, p)
}

func (s Shape) clone() Shape {
	if s == nil {
		return Shape{}
	}
	c := make(Shape, len(s))
	copy(c, s)
	return c
}

// mul returns a*b for non-negative a and b and whether it did not overflow.
func mul(a, b int64) (int64, bool) {
	if a < 0 || b < 0 {
		return 0, false
	}
	if a != 0 && b > (1<<62)/a {
		return 0, false
	}
	return a * b, true
}
