package ops

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// nd is a naive row-major array for reference results, computed element
// by element without the tensor package.
type nd struct {
	shape []int64
	es    int
	data  []byte
}

func ndOf(x tensor.Tensor) nd {
	return nd{shape: append([]int64(nil), x.Shape...), es: x.DType.Size(), data: append([]byte(nil), x.Bytes()...)}
}

func (a nd) strides() []int64 {
	s := make([]int64, len(a.shape))
	acc := int64(1)
	for i := len(a.shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= a.shape[i]
	}
	return s
}

// gather builds an array of shape by reading, for every output index, the
// element src(idx) returns (an array and a flat index into it).
func gather(shape []int64, es int, src func(idx []int64) (nd, int64)) nd {
	out := nd{shape: shape, es: es}
	n := tensor.Shape(shape).NumElements()
	idx := make([]int64, len(shape))
	for i := int64(0); i < n; i++ {
		a, j := src(idx)
		out.data = append(out.data, a.data[j*int64(es):(j+1)*int64(es)]...)
		for d := len(idx) - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out
}

func (a nd) flat(idx []int64) int64 {
	var j int64
	for d, s := range a.strides() {
		j += idx[d] * s
	}
	return j
}

func (a nd) narrow(d int, start, n int64) nd {
	shape := append([]int64(nil), a.shape...)
	shape[d] = n
	return gather(shape, a.es, func(idx []int64) (nd, int64) {
		in := append([]int64(nil), idx...)
		in[d] += start
		return a, a.flat(in)
	})
}

func catND(d int, xs ...nd) nd {
	shape := append([]int64(nil), xs[0].shape...)
	shape[d] = 0
	for _, x := range xs {
		shape[d] += x.shape[d]
	}
	return gather(shape, xs[0].es, func(idx []int64) (nd, int64) {
		in := append([]int64(nil), idx...)
		for _, x := range xs {
			if in[d] < x.shape[d] {
				return x, x.flat(in)
			}
			in[d] -= x.shape[d]
		}
		panic("out of range")
	})
}

func (a nd) transpose(p, q int) nd {
	shape := append([]int64(nil), a.shape...)
	shape[p], shape[q] = shape[q], shape[p]
	return gather(shape, a.es, func(idx []int64) (nd, int64) {
		in := append([]int64(nil), idx...)
		in[p], in[q] = in[q], in[p]
		return a, a.flat(in)
	})
}

func sameND(t tensor.Tensor, a nd) bool {
	return tensor.Shape(a.shape).Equal(t.Shape) && bytes.Equal(t.Bytes(), a.data)
}

// stepCase is one step program on one random input shape with the
// reference result of each part.
type stepCase struct {
	name   string
	shapes []tensor.Shape
	nodes  []*Node
	want   func(in []nd) []nd
	oneWay bool // the steps have no inverse
}

func stepCases() []stepCase {
	S := func(s ...int64) tensor.Shape { return s }
	step := func(kind string, n Node, ops ...*Node) *Node {
		n.Leaf, n.Step, n.Operands = -1, kind, ops
		return &n
	}
	return []stepCase{
		{name: "split_dim0", shapes: []tensor.Shape{S(10, 6)},
			nodes: []*Node{step(StepSplit, Node{Dim: 0, Sizes: []int64{4, 3, 3}}, Leaf(0))},
			want: func(in []nd) []nd {
				return []nd{in[0].narrow(0, 0, 4), in[0].narrow(0, 4, 3), in[0].narrow(0, 7, 3)}
			}},
		{name: "split_dim1_neg", shapes: []tensor.Shape{S(3, 7, 5)},
			nodes: []*Node{step(StepSplit, Node{Dim: -2, Sizes: []int64{2, 0, 5}}, Leaf(0))},
			want: func(in []nd) []nd {
				return []nd{in[0].narrow(1, 0, 2), in[0].narrow(1, 2, 0), in[0].narrow(1, 2, 5)}
			}},
		{name: "chunk_dim1", shapes: []tensor.Shape{S(4, 6)},
			nodes: []*Node{step(StepChunk, Node{Dim: 1, Parts: 3}, Leaf(0))},
			want: func(in []nd) []nd {
				return []nd{in[0].narrow(1, 0, 2), in[0].narrow(1, 2, 2), in[0].narrow(1, 4, 2)}
			}},
		{name: "cat_dim0_two_leaves", shapes: []tensor.Shape{S(3, 4), S(5, 4)},
			nodes: []*Node{step(StepCat, Node{Dim: 0, Sizes: []int64{3, 5}}, Leaf(0), Leaf(1))},
			want:  func(in []nd) []nd { return []nd{catND(0, in[0], in[1])} }},
		{name: "cat_dim1_of_split_parts", shapes: []tensor.Shape{S(6, 4)},
			// split rows in two, put the halves side by side: [3, 8].
			nodes: []*Node{step(StepCat, Node{Dim: 1}, step(StepSplit, Node{Dim: 0, Sizes: []int64{3, 3}}, Leaf(0)))},
			want: func(in []nd) []nd {
				return []nd{catND(1, in[0].narrow(0, 0, 3), in[0].narrow(0, 3, 3))}
			}},
		{name: "reshape_then_split", shapes: []tensor.Shape{S(12, 5)},
			// [12, 5] -> [2, 6, 5] -> split dim 1 [4, 2]: per group 4 then 2 rows.
			nodes: []*Node{step(StepSplit, Node{Dim: 1, Sizes: []int64{4, 2}}, step(StepReshape, Node{Shape: []int64{2, -1, 5}, From: []int64{-1, 5}}, Leaf(0)))},
			want: func(in []nd) []nd {
				g := nd{shape: []int64{2, 6, 5}, es: in[0].es, data: in[0].data}
				return []nd{g.narrow(1, 0, 4), g.narrow(1, 4, 2)}
			}},
		{name: "transpose", shapes: []tensor.Shape{S(5, 7)},
			nodes: []*Node{step(StepTranspose, Node{Dims: [2]int{0, 1}}, Leaf(0))},
			want:  func(in []nd) []nd { return []nd{in[0].transpose(0, 1)} }},
		{name: "transpose_3d_outer", shapes: []tensor.Shape{S(3, 4, 5)},
			nodes: []*Node{step(StepTranspose, Node{Dims: [2]int{0, -1}}, Leaf(0))},
			want:  func(in []nd) []nd { return []nd{in[0].transpose(0, 2)} }},
		{name: "split_dim1_then_transpose", shapes: []tensor.Shape{S(4, 6)},
			nodes: []*Node{step(StepTranspose, Node{Dims: [2]int{0, 1}}, step(StepSplit, Node{Dim: 1, Sizes: []int64{6}}, Leaf(0)))},
			want:  func(in []nd) []nd { return []nd{in[0].transpose(0, 1)} }},
		{name: "pieces_then_transpose_3d", shapes: []tensor.Shape{S(3, 4, 6)},
			// chunk the last dim, cat the halves along dim 1 (a tensor of
			// many pieces), then transpose the outer dims.
			nodes: []*Node{step(StepTranspose, Node{Dims: [2]int{0, 2}},
				step(StepCat, Node{Dim: 1}, step(StepChunk, Node{Dim: 2, Parts: 2}, Leaf(0))))},
			want: func(in []nd) []nd {
				return []nd{catND(1, in[0].narrow(2, 0, 3), in[0].narrow(2, 3, 3)).transpose(0, 2)}
			}},
		{name: "two_operands", shapes: []tensor.Shape{S(8, 3), S(2, 3)},
			nodes: []*Node{step(StepChunk, Node{Dim: 0, Parts: 2}, Leaf(0)), Leaf(1)},
			want: func(in []nd) []nd {
				return []nd{in[0].narrow(0, 0, 4), in[0].narrow(0, 4, 4), in[1]}
			}},
		{name: "slice", shapes: []tensor.Shape{S(6, 4)},
			nodes: []*Node{step(StepSlice, Node{Dim: 1, Start: 1, Stop: 3}, Leaf(0))},
			want:  func(in []nd) []nd { return []nd{in[0].narrow(1, 1, 2)} }, oneWay: true},
	}
}

// TestStepsBothWays runs every step kind HF -> MCA on random tensors of
// several dtypes against the element-wise reference, then MCA -> HF back
// to the inputs bit for bit (a slice has no inverse: an error).
func TestStepsBothWays(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, c := range stepCases() {
		for _, dt := range append(testDTypes, tensor.F64, tensor.I8) {
			t.Run(c.name+"/"+dt.String(), func(t *testing.T) {
				var in []tensor.Tensor
				var ref []nd
				for _, s := range c.shapes {
					x := randTensor(t, r, dt, s)
					in = append(in, x)
					ref = append(ref, ndOf(x))
				}
				got, err := RunSteps(HFToMCA, c.nodes, in)
				if err != nil {
					t.Fatal(err)
				}
				want := c.want(ref)
				if len(got) != len(want) {
					t.Fatalf("%d parts, want %d", len(got), len(want))
				}
				for k := range got {
					if !sameND(got[k], want[k]) {
						t.Errorf("part %d: %v differs from the reference %v", k, got[k], want[k].shape)
					}
				}
				back, err := RunSteps(MCAToHF, c.nodes, got)
				if c.oneWay {
					if err == nil || !strings.Contains(err.Error(), "no inverse") {
						t.Fatalf("inverse of a slice: err %v, want 'no inverse'", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(back) != len(in) {
					t.Fatalf("%d tensors back, want %d", len(back), len(in))
				}
				for i := range in {
					if !back[i].Equal(in[i]) {
						t.Errorf("input %d: %v came back as %v or bytes differ", i, in[i], back[i])
					}
				}
			})
		}
	}
}

// TestSplitDim0ZeroCopy checks that a split along dim 0 yields row windows
// of the input's own bytes, and that its inverse is the input's bytes again
// (one piece, no copy).
func TestSplitDim0ZeroCopy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := randTensor(t, r, tensor.BF16, tensor.Shape{10, 8})
	nodes := []*Node{{Leaf: -1, Step: StepSplit, Sizes: []int64{4, 6}, Operands: []*Node{Leaf(0)}}}
	parts, err := RunSteps(HFToMCA, nodes, []tensor.Tensor{x})
	if err != nil {
		t.Fatal(err)
	}
	base := &x.Bytes()[0]
	if p := parts[1].Pieces(); len(p) != 1 || &p[0][0] != (*byte)(unsafe.Add(unsafe.Pointer(base), 4*8*2)) {
		t.Errorf("part 1 is not a window of the input: %v", parts[1])
	}
	back, err := RunSteps(MCAToHF, nodes, parts)
	if err != nil {
		t.Fatal(err)
	}
	if p := back[0].Pieces(); len(p) != 1 || &p[0][0] != base {
		t.Errorf("the inverse copied: %v", back[0])
	}
}

// TestStepErrors: shape errors name the step and the tensor.
func TestStepErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := randTensor(t, r, tensor.F32, tensor.Shape{10, 8})
	split := &Node{Leaf: -1, Step: StepSplit, Sizes: []int64{4, 4}, Pos: "phi3.rolltpl:9:5", Operands: []*Node{Leaf(0)}}
	c := &Composite{Op: Op{Kind: KindStack, NumHF: 2, NumMCA: 1}, Inputs: []*Node{split}, NumHF: 1, Names: []string{"model.layers.0.mlp.gate_up_proj.weight"}}
	_, err := c.Apply(HFToMCA, Config{}, []Value{TensorValue(x)})
	if err == nil {
		t.Fatal("no error for sizes that do not add up")
	}
	for _, want := range []string{"split", "phi3.rolltpl:9:5", "model.layers.0.mlp.gate_up_proj.weight", "add up to 8", "is 10"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	bad := []struct {
		name string
		c    *Composite
		want string
	}{
		{"arity", &Composite{Op: Op{Kind: KindQKV, NumHF: 2, NumMCA: 1}, Inputs: []*Node{{Leaf: -1, Step: StepChunk, Parts: 2, Operands: []*Node{Leaf(0)}}}, NumHF: 1}, "want 3 and 1"},
		{"leaf", &Composite{Op: Op{Kind: KindRename}, Inputs: []*Node{Leaf(1)}, NumHF: 1}, "HF input 1 of 1"},
		{"unknown", &Composite{Op: Op{Kind: KindRename}, Inputs: []*Node{{Leaf: -1, Step: "permute", Operands: []*Node{Leaf(0)}}}, NumHF: 1}, "unknown tensor step"},
		{"two_into_split", &Composite{Op: Op{Kind: KindConcat, NumHF: 2, NumMCA: 1}, Inputs: []*Node{{Leaf: -1, Step: StepSplit, Sizes: []int64{5, 5}, Operands: []*Node{Leaf(0), Leaf(0)}}}, NumHF: 1}, "takes one tensor"},
		{"overflowing_sizes", &Composite{Op: Op{Kind: KindConcat, NumHF: 3, NumMCA: 1}, Inputs: []*Node{{Leaf: -1, Step: StepSplit, Sizes: []int64{1 << 62, 1 << 62, 10}, Operands: []*Node{Leaf(0)}}}, NumHF: 1}, "more than 2^62"},
		{"huge_chunk", &Composite{Op: Op{Kind: KindConcat, NumHF: 1 << 30, NumMCA: 1}, Inputs: []*Node{{Leaf: -1, Step: StepChunk, Parts: 1 << 30, Operands: []*Node{Leaf(0)}}}, NumHF: 1}, "want 1 to"},
	}
	for _, b := range bad {
		_, err := b.c.Apply(HFToMCA, Config{}, []Value{TensorValue(x)})
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: err %v, want %q", b.name, err, b.want)
		}
	}
	// A reshape whose input is not of the shape it says it reshapes from
	// (its inverse would restore the wrong shape).
	from := &Node{Leaf: -1, Step: StepReshape, Shape: []int64{-1}, From: []int64{8, 10}, Operands: []*Node{Leaf(0)}}
	if _, err := RunSteps(HFToMCA, []*Node{from}, []tensor.Tensor{x}); err == nil || !strings.Contains(err.Error(), "reshapes from") {
		t.Errorf("reshape from the wrong shape: %v", err)
	}
	// The inverse of a reshape of an HF tensor of unknown shape.
	rs := &Node{Leaf: -1, Step: StepReshape, Shape: []int64{-1}, Operands: []*Node{Leaf(0)}}
	if _, err := RunSteps(MCAToHF, []*Node{rs}, []tensor.Tensor{x}); err == nil || !strings.Contains(err.Error(), "not determined") {
		t.Errorf("inverse reshape of an unknown shape: %v", err)
	}
}

// TestCompositeMatchesCatalog: a fused tensor split into q/k/v feeding
// qkv, and into gate/up feeding stack, gives what the catalog op gives on
// the pre-split tensors, and comes back bit for bit (MHA and GQA).
func TestCompositeMatchesCatalog(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, h := range []struct{ nh, ng, d, hid, inter int64 }{{4, 4, 6, 8, 10}, {8, 2, 4, 12, 14}} {
		for _, dt := range testDTypes {
			cfg := Config{NumAttentionHeads: h.nh, NumQueryGroups: h.ng, KVChannels: h.d, HiddenSize: h.hid}
			q := randTensor(t, r, dt, tensor.Shape{h.nh * h.d, h.hid})
			k := randTensor(t, r, dt, tensor.Shape{h.ng * h.d, h.hid})
			v := randTensor(t, r, dt, tensor.Shape{h.ng * h.d, h.hid})
			fused, err := tensor.Concat(0, q, k, v)
			if err != nil {
				t.Fatal(err)
			}
			fused, _ = tensor.New(dt, fused.Shape, fused.Bytes())
			comp := &Composite{Op: Op{Kind: KindQKV, NumHF: 3, NumMCA: 1}, NumHF: 1, Inputs: []*Node{
				{Leaf: -1, Step: StepSplit, Sizes: []int64{h.nh * h.d, h.ng * h.d, h.ng * h.d}, Operands: []*Node{Leaf(0)}}}}
			got, err := comp.Apply(HFToMCA, cfg, []Value{TensorValue(fused)})
			if err != nil {
				t.Fatal(err)
			}
			want, err := Op{Kind: KindQKV}.Apply(HFToMCA, cfg, values(q, k, v))
			if err != nil {
				t.Fatal(err)
			}
			if !valuesEqual(got, want) {
				t.Errorf("qkv %v %+v: composite differs from the catalog op", dt, h)
			}
			back, err := comp.Apply(MCAToHF, cfg, got)
			if err != nil {
				t.Fatal(err)
			}
			if len(back) != 1 || !back[0].Tensor.Equal(fused) {
				t.Errorf("qkv %v: the fused tensor did not come back: %v", dt, back)
			}

			gate := randTensor(t, r, dt, tensor.Shape{h.inter, h.hid})
			up := randTensor(t, r, dt, tensor.Shape{h.inter, h.hid})
			gu, _ := tensor.Concat(0, gate, up)
			gu, _ = tensor.New(dt, gu.Shape, gu.Bytes())
			sc := &Composite{Op: Op{Kind: KindStack, NumHF: 2, NumMCA: 1}, NumHF: 1, Inputs: []*Node{
				{Leaf: -1, Step: StepChunk, Parts: 2, Operands: []*Node{Leaf(0)}}}}
			got, err = sc.Apply(HFToMCA, cfg, []Value{TensorValue(gu)})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !got[0].IsStacked() || !got[0].Stacked.Components[0].Equal(gate) || !got[0].Stacked.Components[1].Equal(up) {
				t.Fatalf("stack: got %v, want the stacked gate and up", got)
			}
			back, err = sc.Apply(MCAToHF, cfg, got)
			if err != nil {
				t.Fatal(err)
			}
			if len(back) != 1 || !back[0].Tensor.Equal(gu) {
				t.Errorf("stack %v: gate_up did not come back", dt)
			}
		}
	}
}

// TestCompositePlanReadsNoBytes: planning runs the steps, transposes
// included, on stand-ins whose bytes are never read.
func TestCompositePlanReadsNoBytes(t *testing.T) {
	// A tensor header over a nil-backed slice would fault on any read;
	// use a slice of the right length whose contents the check poisons.
	data := make([]byte, 6*4*4)
	x, _ := tensor.New(tensor.F32, tensor.Shape{6, 4}, data)
	comp := &Composite{Op: Op{Kind: KindRename, NumHF: 1, NumMCA: 1}, NumHF: 1, Inputs: []*Node{
		{Leaf: -1, Step: StepTranspose, Dims: [2]int{0, 1}, Operands: []*Node{Leaf(0)}}}}
	allocs := 0
	cfg := Config{Alloc: func(n int) []byte { allocs++; return make([]byte, n) }}
	out, err := comp.Plan(HFToMCA, cfg, []Value{TensorValue(x)}, Op.Apply)
	if err != nil {
		t.Fatal(err)
	}
	if !out[0].Tensor.Shape.Equal(tensor.Shape{4, 6}) || allocs != 0 {
		t.Errorf("plan: %v with %d allocations, want F32[4, 6] and none", out[0], allocs)
	}
	out, err = comp.Apply(HFToMCA, cfg, []Value{TensorValue(x)})
	if err != nil || allocs != 1 || !out[0].Tensor.Shape.Equal(tensor.Shape{4, 6}) {
		t.Errorf("apply: %v, %v with %d allocations from Config.Alloc, want 1", out, err, allocs)
	}
}

// TestStepsRandom builds random step programs (reshape, transpose, then a
// split or chunk, the chunk's parts possibly concatenated along another
// dim) over random shapes and dtypes, checks every part against the
// element-wise reference and the inverse against the input.
func TestStepsRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	dts := append(testDTypes, tensor.F64, tensor.I8)
	for iter := range 200 {
		dt := dts[r.IntN(len(dts))]
		rank := 2 + r.IntN(2)
		shape := make(tensor.Shape, rank)
		for i := range shape {
			shape[i] = int64(1 + r.IntN(6))
		}
		x := randTensor(t, r, dt, shape)
		cur := ndOf(x)
		node := Leaf(0)
		var desc []string
		if r.IntN(2) == 0 { // merge the first two dims: [a*b, ...]
			ns := append([]int64{cur.shape[0] * cur.shape[1]}, cur.shape[2:]...)
			from := append([]int64(nil), cur.shape...)
			if r.IntN(2) == 0 {
				ns[0] = -1
			}
			node = &Node{Leaf: -1, Step: StepReshape, Shape: ns, From: from, Operands: []*Node{node}}
			if ns[0] == -1 {
				ns[0] = cur.shape[0] * cur.shape[1]
			}
			cur = nd{shape: append([]int64(nil), ns...), es: cur.es, data: cur.data}
			desc = append(desc, "reshape")
		}
		if len(cur.shape) >= 2 && r.IntN(2) == 0 {
			a, b := r.IntN(len(cur.shape)), r.IntN(len(cur.shape))
			node = &Node{Leaf: -1, Step: StepTranspose, Dims: [2]int{a, b - len(cur.shape)}, Operands: []*Node{node}}
			cur = cur.transpose(a, b)
			desc = append(desc, "transpose")
		}
		d := r.IntN(len(cur.shape))
		var parts []nd
		if r.IntN(2) == 0 {
			var sizes []int64
			for rest := cur.shape[d]; rest > 0; {
				s := min(rest, int64(r.IntN(4)))
				sizes = append(sizes, s)
				rest -= s
			}
			if len(sizes) == 0 {
				sizes = []int64{0}
			}
			node = &Node{Leaf: -1, Step: StepSplit, Dim: d, Sizes: sizes, Operands: []*Node{node}}
			var off int64
			for _, s := range sizes {
				parts = append(parts, cur.narrow(d, off, s))
				off += s
			}
			desc = append(desc, "split")
		} else {
			p := 1
			for k := 2; k <= 3; k++ {
				if cur.shape[d]%int64(k) == 0 && r.IntN(2) == 0 {
					p = k
				}
			}
			node = &Node{Leaf: -1, Step: StepChunk, Dim: d, Parts: p, Operands: []*Node{node}}
			w := cur.shape[d] / int64(p)
			for k := range p {
				parts = append(parts, cur.narrow(d, int64(k)*w, w))
			}
			desc = append(desc, "chunk")
			if len(cur.shape) >= 2 && r.IntN(2) == 0 { // cat the equal parts along another dim
				e := (d + 1 + r.IntN(len(cur.shape)-1)) % len(cur.shape)
				node = &Node{Leaf: -1, Step: StepCat, Dim: e, Operands: []*Node{node}}
				parts = []nd{catND(e, parts...)}
				desc = append(desc, "cat")
			}
		}
		nodes := []*Node{node}
		got, err := RunSteps(HFToMCA, nodes, []tensor.Tensor{x})
		if err != nil {
			t.Fatalf("%d %v %v %v: %v", iter, dt, shape, desc, err)
		}
		if len(got) != len(parts) {
			t.Fatalf("%d %v: %d parts, want %d", iter, desc, len(got), len(parts))
		}
		for k := range got {
			if !sameND(got[k], parts[k]) {
				t.Fatalf("%d %v %v %v: part %d %v differs from the reference %v", iter, dt, shape, desc, k, got[k], parts[k].shape)
			}
		}
		back, err := RunSteps(MCAToHF, nodes, got)
		if err != nil {
			t.Fatalf("%d %v %v %v: inverse: %v", iter, dt, shape, desc, err)
		}
		if len(back) != 1 || !back[0].Equal(x) {
			t.Fatalf("%d %v %v %v: the inverse gave %v", iter, dt, shape, desc, back)
		}
	}
}

// TestTransposeOfPiecesUsesAlloc: a transpose of a tensor of many pieces
// gathers them into a buffer from Config.Alloc, not fresh heap memory, and
// writes its result into another.
func TestTransposeOfPiecesUsesAlloc(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	x := randTensor(t, r, tensor.BF16, tensor.Shape{3, 4, 6})
	var c stepCase
	for _, sc := range stepCases() {
		if sc.name == "pieces_then_transpose_3d" {
			c = sc
		}
	}
	comp := &Composite{Op: Op{Kind: KindRename, NumHF: 1, NumMCA: 1}, NumHF: 1, Inputs: c.nodes}
	var sizes []int
	cfg := Config{Alloc: func(n int) []byte { sizes = append(sizes, n); return make([]byte, n) }}
	out, err := comp.Apply(HFToMCA, cfg, []Value{TensorValue(x)})
	if err != nil {
		t.Fatal(err)
	}
	if !sameND(out[0].Tensor, c.want([]nd{ndOf(x)})[0]) {
		t.Errorf("result differs from the reference")
	}
	if len(sizes) != 2 || sizes[0] != int(x.Len()) || sizes[1] != int(x.Len()) {
		t.Errorf("Config.Alloc calls %v, want two of %d bytes", sizes, x.Len())
	}
}

// TestStepPieceBound: a split along an inner dim that would cut a tensor
// into more than maxPieces pieces is an error, not millions of slice
// headers.
func TestStepPieceBound(t *testing.T) {
	rows := int64(maxPieces/2 + 1)
	x, err := tensor.New(tensor.I8, tensor.Shape{rows, 2}, make([]byte, rows*2))
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*Node{{Leaf: -1, Step: StepSplit, Dim: 1, Sizes: []int64{1, 1}, Operands: []*Node{Leaf(0)}}}
	if _, err := RunSteps(HFToMCA, nodes, []tensor.Tensor{x}); err == nil || !strings.Contains(err.Error(), "pieces per part") {
		t.Errorf("err %v, want a piece bound error", err)
	}
	nodes[0].Dim = 0
	nodes[0].Sizes = []int64{rows - 1, 1}
	if _, err := RunSteps(HFToMCA, nodes, []tensor.Tensor{x}); err != nil {
		t.Errorf("split along dim 0: %v", err)
	}
}

// TestCompositeCopiesNothing: a fused qkv split into q, k, v for qkv
// and back allocates a few headers whatever the tensor size: the steps are
// views, no bytes are copied.
func TestCompositeCopiesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	cfg := Config{NumAttentionHeads: 8, NumQueryGroups: 2, KVChannels: 4}
	comp := &Composite{Op: Op{Kind: KindQKV, NumHF: 3, NumMCA: 1}, NumHF: 1, Inputs: []*Node{
		{Leaf: -1, Step: StepSplit, Sizes: []int64{32, 8, 8}, Operands: []*Node{Leaf(0)}}}}
	in := []Value{TensorValue(randTensor(t, r, tensor.BF16, tensor.Shape{48, 1 << 16}))} // 6 MiB
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, err := comp.Apply(HFToMCA, cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	back, err := comp.Apply(MCAToHF, cfg, out)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("%d bytes allocated converting a %d-byte tensor both ways; want only headers", n, in[0].Tensor.Len())
	}
	if !back[0].Tensor.Equal(in[0].Tensor) {
		t.Error("the tensor did not come back")
	}
}
