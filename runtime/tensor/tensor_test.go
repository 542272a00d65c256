package tensor

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

func mustNew(t *testing.T, dt DType, shape Shape, data []byte) Tensor {
	t.Helper()
	x, err := New(dt, shape, data)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestNewValidates(t *testing.T) {
	if _, err := New(BF16, Shape{2, 3}, make([]byte, 12)); err != nil {
		t.Errorf("valid tensor: %v", err)
	}
	for _, tc := range []struct {
		dt    DType
		shape Shape
		n     int
		want  string
	}{
		{BF16, Shape{2, 3}, 10, "needs 12 bytes, data has 10"},
		{Invalid, Shape{1}, 1, "invalid dtype"},
		{F32, Shape{-1, 2}, 8, "invalid shape"},
		{F64, Shape{1 << 40, 1 << 40}, 0, "invalid shape"},
	} {
		_, err := New(tc.dt, tc.shape, make([]byte, tc.n))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%v, %v, %d bytes) = %v, want error containing %q", tc.dt, tc.shape, tc.n, err, tc.want)
		}
	}
	var zero Tensor
	if zero.Validate() == nil {
		t.Error("zero Tensor validates")
	}
	s, err := New(F32, Shape{}, make([]byte, 4))
	if err != nil || s.NumElements() != 1 || s.Len() != 4 {
		t.Errorf("scalar: %v %v", s, err)
	}
}

func TestFromPiecesCoalesces(t *testing.T) {
	buf := seq(64)
	other := seq(16)
	x, err := FromPieces(U8, Shape{8, 8}, [][]byte{buf[:16], buf[16:32], {}, buf[32:48], other})
	if err != nil {
		t.Fatal(err)
	}
	if x.NumPieces() != 2 {
		t.Errorf("NumPieces = %d, want 2 (adjacent pieces merged, empty dropped)", x.NumPieces())
	}
	want := append(append([]byte{}, buf[:48]...), other...)
	if !bytes.Equal(x.Bytes(), want) {
		t.Error("Bytes differ")
	}
	// Pieces with capacity limited must not be merged through the limit.
	y, err := FromPieces(U8, Shape{32}, [][]byte{buf[0:16:16], buf[16:32]})
	if err != nil {
		t.Fatal(err)
	}
	if y.NumPieces() != 2 {
		t.Errorf("NumPieces = %d, want 2 (capacity-limited piece)", y.NumPieces())
	}
	if _, err := FromPieces(U8, Shape{10}, [][]byte{buf[:4], buf[8:12]}); err == nil {
		t.Error("FromPieces with too few bytes succeeded")
	}
}

func TestRowsIsAView(t *testing.T) {
	buf := seq(6 * 4 * 2)
	x := mustNew(t, BF16, Shape{6, 4}, buf)
	r, err := x.Rows(2, 5)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Shape.Equal(Shape{3, 4}) || r.NumPieces() != 1 {
		t.Fatalf("Rows = %v", r)
	}
	if &r.Pieces()[0][0] != &buf[2*8] {
		t.Error("Rows copied the data")
	}
	if !bytes.Equal(r.Bytes(), buf[16:40]) {
		t.Error("wrong bytes")
	}
	for _, bad := range [][2]int64{{-1, 2}, {3, 2}, {0, 7}} {
		if _, err := x.Rows(bad[0], bad[1]); err == nil {
			t.Errorf("Rows(%d, %d) succeeded", bad[0], bad[1])
		}
	}
	scalar := mustNew(t, F32, Shape{}, make([]byte, 4))
	if _, err := scalar.Rows(0, 1); err == nil {
		t.Error("Rows of a 0-d tensor succeeded")
	}
}

func TestRowsAcrossPieces(t *testing.T) {
	a, b, c := seq(12), seq(20)[8:], seq(30)[6:18]
	x, err := FromPieces(U8, Shape{6, 6}, [][]byte{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	full := x.Bytes()
	for s := int64(0); s <= 6; s++ {
		for e := s; e <= 6; e++ {
			r, err := x.Rows(s, e)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.Bytes(), full[s*6:e*6]) {
				t.Errorf("Rows(%d, %d) wrong", s, e)
			}
		}
	}
}

func TestReshape(t *testing.T) {
	x := mustNew(t, F32, Shape{4, 6}, make([]byte, 96))
	for _, tc := range []struct {
		in, want Shape
	}{
		{Shape{24}, Shape{24}},
		{Shape{2, -1}, Shape{2, 12}},
		{Shape{-1, 3, 2}, Shape{4, 3, 2}},
	} {
		y, err := x.Reshape(tc.in)
		if err != nil || !y.Shape.Equal(tc.want) {
			t.Errorf("Reshape(%v) = %v, %v; want %v", tc.in, y.Shape, err, tc.want)
		}
	}
	for _, bad := range []Shape{{5, -1}, {-1, -1}, {25}, {-2, 12}} {
		if _, err := x.Reshape(bad); err == nil {
			t.Errorf("Reshape(%v) succeeded", bad)
		}
	}
	if !x.Shape.Equal(Shape{4, 6}) {
		t.Error("Reshape changed the receiver")
	}
}

// naiveConcat concatenates contiguous byte tensors along dim by index math.
func naiveConcat(shapes []Shape, datas [][]byte, dim, es int) []byte {
	var out []byte
	outer := int(shapes[0][:dim].NumElements())
	for o := 0; o < outer; o++ {
		for k, s := range shapes {
			slab := int(s[dim:].NumElements()) * es
			out = append(out, datas[k][o*slab:(o+1)*slab]...)
		}
	}
	return out
}

func TestConcatSplitChunk(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 200; iter++ {
		rank := 1 + r.IntN(3)
		dim := r.IntN(rank)
		base := make(Shape, rank)
		for i := range base {
			base[i] = int64(1 + r.IntN(4))
		}
		n := 1 + r.IntN(3)
		var ts []Tensor
		var shapes []Shape
		var datas [][]byte
		for k := 0; k < n; k++ {
			s := base.clone()
			s[dim] = int64(r.IntN(4))
			data := make([]byte, s.NumElements()*2)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			// Make some inputs multi-piece.
			var x Tensor
			var err error
			if len(data) > 2 && r.IntN(2) == 0 {
				cut := 2 * (1 + r.IntN(len(data)/2-0))
				cut = min(cut, len(data))
				x, err = FromPieces(F16, s, [][]byte{append([]byte{}, data[:cut]...), append([]byte{}, data[cut:]...)})
			} else {
				x, err = New(F16, s, data)
			}
			if err != nil {
				t.Fatal(err)
			}
			ts, shapes, datas = append(ts, x), append(shapes, s), append(datas, data)
		}
		c, err := Concat(dim, ts...)
		if err != nil {
			t.Fatalf("Concat: %v", err)
		}
		want := naiveConcat(shapes, datas, dim, 2)
		if !bytes.Equal(c.AppendTo(nil), want) {
			t.Fatalf("Concat(dim %d) of %v wrong", dim, shapes)
		}
		sizes := make([]int64, n)
		for k := range sizes {
			sizes[k] = shapes[k][dim]
		}
		parts, err := Split(c, dim, sizes...)
		if err != nil {
			t.Fatalf("Split: %v", err)
		}
		for k := range parts {
			if !parts[k].Shape.Equal(shapes[k]) || !bytes.Equal(parts[k].AppendTo(nil), datas[k]) {
				t.Fatalf("Split part %d of %v along %d wrong", k, c, dim)
			}
		}
		// Negative dims count from the end.
		c2, err := Concat(dim-rank, ts...)
		if err != nil || !c2.Equal(c) {
			t.Fatalf("Concat with negative dim differs: %v", err)
		}
	}
	x := mustNew(t, U8, Shape{6, 2}, seq(12))
	if _, err := Concat(0, x, mustNew(t, U8, Shape{2, 3}, seq(6))); err == nil {
		t.Error("Concat of mismatched shapes succeeded")
	}
	if _, err := Concat(0, x, mustNew(t, I8, Shape{1, 2}, seq(2))); err == nil {
		t.Error("Concat of mismatched dtypes succeeded")
	}
	if _, err := Split(x, 0, 2, 2); err == nil {
		t.Error("Split with wrong sizes succeeded")
	}
	for _, tc := range []struct {
		n, chunks int
		want      []int64
	}{
		{6, 4, []int64{2, 2, 2}}, // torch.chunk returns fewer parts
		{6, 3, []int64{2, 2, 2}},
		{7, 3, []int64{3, 3, 1}},
		{5, 1, []int64{5}},
	} {
		y := mustNew(t, U8, Shape{int64(tc.n)}, seq(tc.n))
		parts, err := Chunk(y, tc.chunks, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, p := range parts {
			got = append(got, p.Shape[0])
		}
		if len(got) != len(tc.want) {
			t.Errorf("Chunk(%d, %d) sizes %v, want %v", tc.n, tc.chunks, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("Chunk(%d, %d) sizes %v, want %v", tc.n, tc.chunks, got, tc.want)
			}
		}
	}
}

func TestConcatDim0IsZeroCopy(t *testing.T) {
	buf := seq(40)
	a := mustNew(t, U8, Shape{2, 4}, buf[:8])
	b := mustNew(t, U8, Shape{3, 4}, buf[8:20])
	c := mustNew(t, U8, Shape{1, 4}, seq(4))
	x, err := Concat(0, a, b, c)
	if err != nil {
		t.Fatal(err)
	}
	if x.NumPieces() != 2 || &x.Pieces()[0][0] != &buf[0] {
		t.Errorf("Concat = %v; want 2 pieces, the first in buf", x)
	}
	buf[9] = 0xEE
	if x.Bytes()[9] != 0xEE {
		t.Error("Concat result does not share the input bytes")
	}
}

// naiveTranspose transposes a contiguous tensor by full index arithmetic.
func naiveTranspose(data []byte, shape Shape, d0, d1, es int) []byte {
	rank := len(shape)
	out := make([]byte, len(data))
	oshape := shape.clone()
	oshape[d0], oshape[d1] = oshape[d1], oshape[d0]
	idx := make([]int64, rank)
	n := int(shape.NumElements())
	for lin := 0; lin < n; lin++ {
		rem := int64(lin)
		for i := rank - 1; i >= 0; i-- {
			idx[i] = rem % shape[i]
			rem /= shape[i]
		}
		idx[d0], idx[d1] = idx[d1], idx[d0]
		var o int64
		for i := 0; i < rank; i++ {
			o = o*oshape[i] + idx[i]
		}
		copy(out[int(o)*es:], data[lin*es:(lin+1)*es])
	}
	return out
}

func TestTranspose(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, dt := range []DType{U8, BF16, F32, F64} {
		for iter := 0; iter < 60; iter++ {
			rank := 2 + r.IntN(3)
			shape := make(Shape, rank)
			for i := range shape {
				shape[i] = int64(1 + r.IntN(40/rank))
			}
			d0, d1 := r.IntN(rank), r.IntN(rank)
			es := dt.Size()
			data := make([]byte, int(shape.NumElements())*es)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			var x Tensor
			var err error
			switch r.IntN(3) {
			case 0:
				x, err = New(dt, shape, data)
			case 1: // pieces cut at element boundaries, not rows
				cut := es * r.IntN(len(data)/es+1)
				x, err = FromPieces(dt, shape, [][]byte{append([]byte{}, data[:cut]...), append([]byte{}, data[cut:]...)})
			case 2: // pieces cut at row boundaries
				rb := int(shape[rank-1]) * es
				cut := rb * r.IntN(len(data)/rb+1)
				x, err = FromPieces(dt, shape, [][]byte{append([]byte{}, data[:cut]...), append([]byte{}, data[cut:]...)})
			}
			if err != nil {
				t.Fatal(err)
			}
			y, err := Transpose(x, d0, d1, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d0 == d1 {
				if !y.Equal(x) {
					t.Fatal("identity transpose changed data")
				}
				continue
			}
			want := naiveTranspose(data, shape, d0, d1, es)
			if !bytes.Equal(y.Bytes(), want) {
				t.Fatalf("Transpose(%v, %d, %d) of %v wrong", shape, d0, d1, dt)
			}
			if y.Shape[d0] != shape[d1] || y.Shape[d1] != shape[d0] {
				t.Fatalf("shape %v", y.Shape)
			}
		}
	}
	x := mustNew(t, F32, Shape{2, 3}, make([]byte, 24))
	if _, err := Transpose(x, 0, 1, make([]byte, 10)); err == nil {
		t.Error("Transpose into a short buffer succeeded")
	}
	if _, err := Transpose(x, 0, 2, nil); err == nil {
		t.Error("Transpose with a bad dim succeeded")
	}
}

type chunkWriter struct {
	buf    bytes.Buffer
	writes int
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.buf.Write(p)
}

func TestWriteToEqualString(t *testing.T) {
	a, b := seq(8), seq(16)[4:12]
	x, err := FromPieces(U8, Shape{4, 4}, [][]byte{a, b})
	if err != nil {
		t.Fatal(err)
	}
	var w chunkWriter
	n, err := x.WriteTo(&w)
	if err != nil || n != 16 || w.writes != 2 || !bytes.Equal(w.buf.Bytes(), x.Bytes()) {
		t.Errorf("WriteTo = %d, %v, %d writes", n, err, w.writes)
	}
	y := mustNew(t, U8, Shape{4, 4}, x.Bytes())
	if !x.Equal(y) || !y.Equal(x) {
		t.Error("Equal false for same bytes in different pieces")
	}
	z, _ := y.Reshape(Shape{16})
	if x.Equal(z) {
		t.Error("Equal true for different shapes")
	}
	w2 := mustNew(t, U8, Shape{4, 4}, append(x.Bytes()[:15:15], 0))
	if x.Equal(w2) {
		t.Error("Equal true for different bytes")
	}
	if got := x.String(); got != "U8[4, 4] (2 pieces)" {
		t.Errorf("String = %q", got)
	}
}

func TestStacked(t *testing.T) {
	a := mustNew(t, BF16, Shape{2, 3}, seq(12))
	b := mustNew(t, BF16, Shape{1, 3}, seq(6))
	s, err := NewStacked(0, a, b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Concat()
	if err != nil || !c.Shape.Equal(Shape{3, 3}) {
		t.Fatalf("Concat = %v, %v", c, err)
	}
	if got := s.String(); got != "Stacked(dim 0: BF16[2, 3], BF16[1, 3])" {
		t.Errorf("String = %q", got)
	}
	if _, err := NewStacked(1, a, b); err == nil {
		t.Error("NewStacked along dim 1 of mismatched rows succeeded")
	}
	if _, err := NewStacked(0); err == nil {
		t.Error("empty NewStacked succeeded")
	}
}

func TestBuilder(t *testing.T) {
	buf := seq(24)
	x := mustNew(t, U8, Shape{6, 4}, buf)
	var b Builder
	b.Grow(3)
	b.Rows(x, 4, 6)
	b.Rows(x, 0, 2)
	b.Rows(x, 2, 4) // adjacent to the previous range: merged
	y, err := b.Build(Shape{-1, 4})
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{}, buf[16:24]...), buf[:16]...)
	if !bytes.Equal(y.Bytes(), want) || y.NumPieces() != 2 {
		t.Errorf("Build = %v", y)
	}
	b.Rows(x, 5, 7)
	if _, err := b.Build(Shape{-1}); err == nil {
		t.Error("out-of-range rows built")
	}
	b.Rows(x, 0, 1)
	b.All(mustNew(t, I8, Shape{1}, []byte{1}))
	if _, err := b.Build(Shape{-1}); err == nil {
		t.Error("mixed dtypes built")
	}
	if _, err := b.Build(Shape{1}); err == nil {
		t.Error("empty builder built")
	}
}
