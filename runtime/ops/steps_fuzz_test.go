package ops

import (
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// FuzzSteps builds a step program and an input shape from the fuzzer's
// bytes and runs it both ways: no panic (an "internal error" would be a
// recovered one), and whenever both directions succeed the input comes
// back bit for bit.
func FuzzSteps(f *testing.F) {
	f.Add([]byte{2, 4, 6, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{3, 2, 3, 4, 3, 1, 2, 1, 0, 0, 5, 2, 1})
	f.Add([]byte{2, 6, 4, 1, 0, 2, 2, 4, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		next := func() int {
			if len(b) == 0 {
				return 0
			}
			v := int(b[0])
			b = b[1:]
			return v
		}
		rank := 1 + next()%3
		shape := make(tensor.Shape, rank)
		for i := range shape {
			shape[i] = int64(next() % 7)
		}
		n := shape.NumElements()
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*7 + 3)
		}
		x, err := tensor.New(tensor.I8, shape, data)
		if err != nil {
			return
		}
		node := Leaf(0)
		for range 1 + next()%3 {
			dim := next()%5 - 2
			switch next() % 6 {
			case 0:
				k := 1 + next()%4
				sizes := make([]int64, k)
				for i := range sizes {
					sizes[i] = int64(next() % 5)
				}
				node = &Node{Leaf: -1, Step: StepCat, Dim: dim, Operands: []*Node{{Leaf: -1, Step: StepSplit, Dim: dim, Sizes: sizes, Operands: []*Node{node}}}}
			case 1:
				node = &Node{Leaf: -1, Step: StepCat, Dim: next()%5 - 2, Operands: []*Node{{Leaf: -1, Step: StepChunk, Dim: dim, Parts: 1 + next()%3, Operands: []*Node{node}}}}
			case 2:
				s := []int64{int64(next()%5) - 1, int64(next() % 5)}
				node = &Node{Leaf: -1, Step: StepReshape, Shape: s[:1+next()%2], From: []int64(shape), Operands: []*Node{node}}
			case 3:
				node = &Node{Leaf: -1, Step: StepTranspose, Dims: [2]int{dim, next()%5 - 2}, Operands: []*Node{node}}
			case 4:
				start := int64(next() % 4)
				node = &Node{Leaf: -1, Step: StepSlice, Dim: dim, Start: start, Stop: start + int64(next()%4), Operands: []*Node{node}}
			default:
				node = &Node{Leaf: -1, Step: StepSplit, Dim: dim, Sizes: []int64{int64(next() % 8)}, Operands: []*Node{node}}
			}
		}
		nodes := []*Node{node}
		parts, err := RunSteps(HFToMCA, nodes, []tensor.Tensor{x})
		if err != nil {
			if strings.Contains(err.Error(), "internal error") {
				t.Fatal(err)
			}
			return
		}
		back, err := RunSteps(MCAToHF, nodes, parts)
		if err != nil {
			if strings.Contains(err.Error(), "internal error") {
				t.Fatal(err)
			}
			return
		}
		if len(back) != 1 || !back[0].Equal(x) {
			t.Fatalf("%v came back as %v", x, back)
		}
	})
}
