package tensor

import (
	"encoding/binary"
	"fmt"
)

// Transpose returns t with dimensions dim0 and dim1 swapped, made
// contiguous: torch's t.transpose(dim0, dim1).contiguous(). Unlike the row
// operations this produces new bytes. They are written to dst, which must
// hold at least t.Len() bytes; a nil dst makes Transpose allocate. The
// result is one piece, dst[:t.Len()]. When dim0 == dim1, t is returned
// unchanged and dst is not used.
//
// Swapping two adjacent dimensions with nothing after them (the common
// [E, A, B] → [E, B, A]) reads t piece by piece; other cases, and pieces
// that cut a matrix row in two, first gather the data they need.
func Transpose(t Tensor, dim0, dim1 int, dst []byte) (Tensor, error) {
	if err := t.Validate(); err != nil {
		return Tensor{}, err
	}
	rank := len(t.Shape)
	d0, err := normDim(dim0, rank)
	if err != nil {
		return Tensor{}, fmt.Errorf("tensor: transpose: %w", err)
	}
	d1, err := normDim(dim1, rank)
	if err != nil {
		return Tensor{}, fmt.Errorf("tensor: transpose: %w", err)
	}
	if d0 == d1 {
		return t, nil
	}
	if d0 > d1 {
		d0, d1 = d1, d0
	}
	if dst == nil {
		dst = make([]byte, t.size)
	} else if int64(len(dst)) < t.size {
		return Tensor{}, fmt.Errorf("tensor: transpose of %v needs %d bytes, buffer has %d", t, t.size, len(dst))
	}
	dst = dst[:t.size]
	shape := t.Shape.clone()
	shape[d0], shape[d1] = shape[d1], shape[d0]
	out := Tensor{DType: t.DType, Shape: shape, size: t.size}
	if t.size > 0 {
		out.pieces = [][]byte{dst}
	}

	es := t.DType.Size()
	outer := int(t.Shape[:d0].NumElements())
	m := int(t.Shape[d0])
	mid := int(t.Shape[d0+1 : d1].NumElements())
	n := int(t.Shape[d1])
	inner := int(t.Shape[d1+1:].NumElements())
	if t.size == 0 {
		return out, nil
	}
	if mid == 1 && inner == 1 {
		transposeMatrices(dst, t.pieces, outer, m, n, es)
		return out, nil
	}
	src := t.Bytes()
	slab := inner * es
	for o := 0; o < outer; o++ {
		for j := 0; j < n; j++ {
			for x := 0; x < mid; x++ {
				for i := 0; i < m; i++ {
					so := (((o*m+i)*mid+x)*n + j) * slab
					do := (((o*n+j)*mid+x)*m + i) * slab
					copy(dst[do:do+slab], src[so:so+slab])
				}
			}
		}
	}
	return out, nil
}

// transposeMatrices transposes count row-major [m, n] matrices held in
// pieces into dst as [n, m] matrices.
func transposeMatrices(dst []byte, pieces [][]byte, count, m, n, es int) {
	rowBytes := n * es
	matBytes := m * rowBytes
	var scratch []byte
	c := cursor{pieces: pieces}
	var parts [][]byte
	for o := 0; o < count; o++ {
		out := dst[o*matBytes : (o+1)*matBytes]
		parts = c.appendRange(parts[:0], int64(o*matBytes), int64(matBytes))
		aligned := true
		for _, p := range parts {
			if len(p)%rowBytes != 0 {
				aligned = false
				break
			}
		}
		if !aligned {
			if scratch == nil {
				scratch = make([]byte, matBytes)
			}
			k := 0
			for _, p := range parts {
				k += copy(scratch[k:], p)
			}
			parts = append(parts[:0], scratch)
		}
		r := 0
		for _, p := range parts {
			rows := len(p) / rowBytes
			transposeBlock(out[r*es:], p, rows, n, es, m*es)
			r += rows
		}
	}
}

// transposeBlock writes the transpose of the row-major [rows, cols] block
// src into dst, where element (j, i) of the result goes to byte offset
// j*dstStride + i*es.
//
// 2-byte elements move in 4×4 blocks held in four uint64 registers, 4-byte
// elements in 2×2 blocks, so that every load and store is 8 bytes wide.
// The loops run over bands of 64 source rows and, within a band, over
// stripes of 32 columns, which keeps the destination lines being filled in
// cache despite the power-of-two strides of real weights (H = 2048, 4096).
func transposeBlock(dst, src []byte, rows, cols, es, dstStride int) {
	switch es {
	case 2:
		transpose2(dst, src, rows, cols, dstStride)
	case 4:
		transpose4(dst, src, rows, cols, dstStride)
	default:
		transposeN(dst, src, 0, rows, 0, cols, cols, es, dstStride)
	}
}

const (
	bandRows   = 64
	stripeCols = 32
	mask16     = 0x0000FFFF0000FFFF
	low32      = 0x00000000FFFFFFFF
)

func transpose2(dst, src []byte, rows, cols, dstStride int) {
	le := binary.LittleEndian
	rb := cols * 2
	rows4, cols4 := rows&^3, cols&^3
	for i0 := 0; i0 < rows4; i0 += bandRows {
		i1 := min(i0+bandRows, rows4)
		for j0 := 0; j0 < cols4; j0 += stripeCols {
			j1 := min(j0+stripeCols, cols4)
			for i := i0; i < i1; i += 4 {
				r0 := src[i*rb : i*rb+rb]
				r1 := src[(i+1)*rb : (i+1)*rb+rb]
				r2 := src[(i+2)*rb : (i+2)*rb+rb]
				r3 := src[(i+3)*rb : (i+3)*rb+rb]
				for j := j0; j < j1; j += 4 {
					a := le.Uint64(r0[2*j:])
					b := le.Uint64(r1[2*j:])
					c := le.Uint64(r2[2*j:])
					d := le.Uint64(r3[2*j:])
					t0 := a&mask16 | (b&mask16)<<16 // a0 b0 a2 b2
					t1 := a>>16&mask16 | b&^mask16  // a1 b1 a3 b3
					t2 := c&mask16 | (d&mask16)<<16 // c0 d0 c2 d2
					t3 := c>>16&mask16 | d&^mask16  // c1 d1 c3 d3
					o := j*dstStride + i*2
					le.PutUint64(dst[o:], t0&low32|t2<<32)
					le.PutUint64(dst[o+dstStride:], t1&low32|t3<<32)
					le.PutUint64(dst[o+2*dstStride:], t0>>32|t2&^low32)
					le.PutUint64(dst[o+3*dstStride:], t1>>32|t3&^low32)
				}
			}
		}
	}
	transposeN(dst, src, 0, rows4, cols4, cols, cols, 2, dstStride)
	transposeN(dst, src, rows4, rows, 0, cols, cols, 2, dstStride)
}

func transpose4(dst, src []byte, rows, cols, dstStride int) {
	le := binary.LittleEndian
	rb := cols * 4
	rows2, cols2 := rows&^1, cols&^1
	for i0 := 0; i0 < rows2; i0 += bandRows {
		i1 := min(i0+bandRows, rows2)
		for j0 := 0; j0 < cols2; j0 += stripeCols {
			j1 := min(j0+stripeCols, cols2)
			for i := i0; i < i1; i += 2 {
				r0 := src[i*rb : i*rb+rb]
				r1 := src[(i+1)*rb : (i+1)*rb+rb]
				for j := j0; j < j1; j += 2 {
					a := le.Uint64(r0[4*j:])
					b := le.Uint64(r1[4*j:])
					o := j*dstStride + i*4
					le.PutUint64(dst[o:], a&low32|b<<32)
					le.PutUint64(dst[o+dstStride:], a>>32|b&^low32)
				}
			}
		}
	}
	transposeN(dst, src, 0, rows2, cols2, cols, cols, 4, dstStride)
	transposeN(dst, src, rows2, rows, 0, cols, cols, 4, dstStride)
}

// transposeN moves the elements of rows [i0, i1) and columns [j0, j1) one
// at a time; it handles other element sizes and the edges of the fast
// kernels.
func transposeN(dst, src []byte, i0, i1, j0, j1, cols, es, dstStride int) {
	for i := i0; i < i1; i++ {
		for j := j0; j < j1; j++ {
			o := j*dstStride + i*es
			p := (i*cols + j) * es
			copy(dst[o:o+es], src[p:p+es])
		}
	}
}
