package shard

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

func rowsTensor(t *testing.T, rows, cols int64, fill byte) tensor.Tensor {
	t.Helper()
	data := make([]byte, rows*cols*2)
	for i := range data {
		data[i] = fill + byte(i)
	}
	x, err := tensor.New(tensor.BF16, tensor.Shape{rows, cols}, data)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestStacks joins and cuts swiglu and gdn weights (the global form of a
// 1x1x1 layout) and reports the misuse of each.
func TestStacks(t *testing.T) {
	l := Layout{Swiglu: true, LinearNumKeyHeads: 2, LinearKeyHeadDim: 2, LinearNumValueHeads: 2, LinearValueHeadDim: 3}
	s, err := NewStacks(l, Classification{
		Swiglu: []string{".mlp.linear_fc1.weight"}, GDN: []string{".self_attention.in_proj.weight", ".self_attention.conv1d.weight"},
		Column: []string{".self_attention.linear_qkv.weight"}, Duplicated: []string{"decoder.final_layernorm.weight"},
	})
	if err != nil {
		t.Fatal(err)
	}
	const fc1, inProj, qkv = "decoder.layers.3.mlp.linear_fc1.weight", "decoder.layers.0.self_attention.in_proj.weight", "decoder.layers.0.self_attention.linear_qkv.bias"
	for name, want := range map[string]Class{fc1: Swiglu, inProj: GDN, qkv: Column, "decoder.final_layernorm.weight": Duplicated, "output_layer.weight": Unclassified} {
		if got := s.Class(name); got != want {
			t.Errorf("Class(%q) = %v, want %v", name, got, want)
		}
	}
	for _, c := range []struct {
		name  string
		comps []tensor.Tensor
	}{
		{fc1, []tensor.Tensor{rowsTensor(t, 3, 2, 0), rowsTensor(t, 3, 2, 100)}},
		// in_proj: q, k (2×2 rows), v, z (2×3), b, a (2).
		{inProj, []tensor.Tensor{rowsTensor(t, 4, 2, 0), rowsTensor(t, 4, 2, 10), rowsTensor(t, 6, 2, 20),
			rowsTensor(t, 6, 2, 30), rowsTensor(t, 2, 2, 40), rowsTensor(t, 2, 2, 50)}},
	} {
		j, err := s.Join(c.name, tensor.Tensor{}, &tensor.Stacked{Components: c.comps})
		if err != nil {
			t.Fatalf("Join(%s): %v", c.name, err)
		}
		st, stacked, err := s.Cut(c.name, j)
		if err != nil || !stacked || len(st.Components) != len(c.comps) {
			t.Fatalf("Cut(%s) = %v, %v, %v", c.name, st, stacked, err)
		}
		for k, comp := range st.Components {
			if !comp.Shape.Equal(c.comps[k].Shape) || !bytes.Equal(comp.Bytes(), c.comps[k].Bytes()) {
				t.Errorf("%s component %d: %v, want %v", c.name, k, comp, c.comps[k])
			}
		}
	}
	plain := rowsTensor(t, 4, 2, 0)
	if st, stacked, err := s.Cut(qkv, plain); err != nil || stacked || len(st.Components) != 0 {
		t.Errorf("Cut of a column weight: %v %v %v", st, stacked, err)
	}
	for _, c := range []struct {
		err  func() error
		want string
	}{
		{func() error { _, err := s.Join(fc1, plain, nil); return err }, "is swiglu but the op produced a plain tensor"},
		{func() error {
			_, err := s.Join(qkv, tensor.Tensor{}, &tensor.Stacked{Components: []tensor.Tensor{plain, plain}})
			return err
		}, "is column-parallel but the op produced a stacked tensor"},
		{func() error { _, err := s.Join("output_layer.weight", plain, nil); return err }, "is in no parallel class"},
		{func() error { _, _, err := s.Cut(fc1, rowsTensor(t, 3, 2, 0)); return err }, "does not have an even number of rows"},
		{func() error { _, _, err := s.Cut(inProj, rowsTensor(t, 5, 2, 0)); return err }, "is gdn with components of [4 4 6 6 2 2] rows (24 in all)"},
	} {
		if err := c.err(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
	if _, err := (Layout{}).GDNRows(inProj); err == nil || !strings.Contains(err.Error(), "no linear_* sizes") {
		t.Errorf("GDNRows without sizes: %v", err)
	}
}
