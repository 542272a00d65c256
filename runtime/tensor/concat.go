package tensor

import (
	"errors"
	"fmt"
)

// Concat returns the concatenation of ts along dimension dim (negative dim
// counts from the end, as in torch.cat) as a view: no bytes are copied.
// Along dimension 0 the result has one piece per input piece (fewer when
// neighbours are adjacent in memory); along an inner dimension it has one
// piece per input per outer index, so prefer dimension 0 where there is a
// choice.
func Concat(dim int, ts ...Tensor) (Tensor, error) {
	if len(ts) == 0 {
		return Tensor{}, errors.New("tensor: concat of no tensors")
	}
	first := ts[0]
	rank := len(first.Shape)
	d, err := normDim(dim, rank)
	if err != nil {
		return Tensor{}, fmt.Errorf("tensor: concat: %w", err)
	}
	shape := first.Shape.clone()
	shape[d] = 0
	for i, t := range ts {
		if t.DType != first.DType {
			return Tensor{}, fmt.Errorf("tensor: concat: tensor %d is %v, tensor 0 is %v", i, t.DType, first.DType)
		}
		if !sameExcept(t.Shape, first.Shape, d) {
			return Tensor{}, fmt.Errorf("tensor: concat along dim %d: tensor %d has shape %v, tensor 0 has %v", d, i, t.Shape, first.Shape)
		}
		if err := t.Validate(); err != nil {
			return Tensor{}, err
		}
		shape[d] += t.Shape[d]
	}
	outer := shape[:d].NumElements()
	es := int64(first.DType.Size())
	n := 0
	for _, t := range ts {
		if d == 0 {
			n += len(t.pieces)
		} else {
			n += int(min(outer, 1<<20)) * max(1, len(t.pieces))
		}
	}
	pieces := make([][]byte, 0, n)
	var size int64
	if d == 0 {
		for _, t := range ts {
			for _, p := range t.pieces {
				pieces = appendPiece(pieces, p)
			}
			size += t.size
		}
	} else {
		curs := make([]cursor, len(ts))
		slabs := make([]int64, len(ts))
		for k, t := range ts {
			curs[k] = cursor{pieces: t.pieces}
			slabs[k] = t.Shape[d:].NumElements() * es
		}
		for i := int64(0); i < outer; i++ {
			for k := range ts {
				pieces = curs[k].appendRange(pieces, i*slabs[k], slabs[k])
				size += slabs[k]
			}
		}
	}
	t := Tensor{DType: first.DType, Shape: shape, pieces: pieces, size: size}
	if err := t.Validate(); err != nil {
		return Tensor{}, err
	}
	return t, nil
}

// Split returns views of t cut along dimension dim into parts of the given
// sizes, which must add up to t.Shape[dim] (torch.split with a list of
// sizes). No bytes are copied.
func Split(t Tensor, dim int, sizes ...int64) ([]Tensor, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	d, err := normDim(dim, len(t.Shape))
	if err != nil {
		return nil, fmt.Errorf("tensor: split: %w", err)
	}
	var total int64
	for _, s := range sizes {
		if s < 0 {
			return nil, fmt.Errorf("tensor: split: negative size in %v", sizes)
		}
		total += s
	}
	if total != t.Shape[d] {
		return nil, fmt.Errorf("tensor: split sizes %v add up to %d, but dim %d of %v is %d", sizes, total, d, t, t.Shape[d])
	}
	es := int64(t.DType.Size())
	outer := t.Shape[:d].NumElements()
	inner := t.Shape[d+1:].NumElements() * es // bytes per index of dim d
	full := t.Shape[d] * inner
	out := make([]Tensor, len(sizes))
	var start int64
	for k, s := range sizes {
		shape := t.Shape.clone()
		shape[d] = s
		part := Tensor{DType: t.DType, Shape: shape}
		c := cursor{pieces: t.pieces}
		if d == 0 {
			part.pieces = c.appendRange(nil, start*inner, s*inner)
		} else if s > 0 {
			part.pieces = make([][]byte, 0, min(outer, 1<<20))
			for i := int64(0); i < outer; i++ {
				part.pieces = c.appendRange(part.pieces, i*full+start*inner, s*inner)
			}
		}
		part.size = outer * s * inner
		out[k] = part
		start += s
	}
	return out, nil
}

// Chunk splits t along dimension dim like torch.chunk: into pieces of
// ceil(t.Shape[dim]/chunks) indices, the last one smaller if the size does
// not divide. Like torch, it can return fewer than chunks parts (chunk of 6
// into 4 gives 3 parts of 2); callers that need exactly chunks parts must
// check.
func Chunk(t Tensor, chunks int, dim int) ([]Tensor, error) {
	if chunks <= 0 {
		return nil, fmt.Errorf("tensor: chunk: number of chunks must be positive, got %d", chunks)
	}
	d, err := normDim(dim, len(t.Shape))
	if err != nil {
		return nil, fmt.Errorf("tensor: chunk: %w", err)
	}
	n := t.Shape[d]
	size := (n + int64(chunks) - 1) / int64(chunks)
	var sizes []int64
	if size == 0 {
		sizes = []int64{0}
	}
	for rest := n; rest > 0; rest -= min(size, rest) {
		sizes = append(sizes, min(size, rest))
	}
	return Split(t, d, sizes...)
}

// A cursor walks a piece list for a sequence of byte ranges with
// non-decreasing offsets, so that n ranges cost O(n + pieces) instead of
// O(n × pieces).
type cursor struct {
	pieces [][]byte
	i      int   // current piece
	base   int64 // offset of pieces[i]
}

func (c *cursor) appendRange(dst [][]byte, off, n int64) [][]byte {
	if off < c.base {
		c.i, c.base = 0, 0
	}
	for n > 0 && c.i < len(c.pieces) {
		p := c.pieces[c.i]
		pl := int64(len(p))
		if off >= c.base+pl {
			c.base += pl
			c.i++
			continue
		}
		lo := off - c.base
		take := min(pl-lo, n)
		dst = appendPiece(dst, p[lo:lo+take])
		off += take
		n -= take
	}
	return dst
}

func normDim(dim, rank int) (int, error) {
	if dim < 0 {
		dim += rank
	}
	if dim < 0 || dim >= rank {
		return 0, fmt.Errorf("dimension %d out of range for a %d-d tensor", dim, rank)
	}
	return dim, nil
}

func sameExcept(a, b Shape, d int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if i != d && a[i] != b[i] {
			return false
		}
	}
	return true
}
