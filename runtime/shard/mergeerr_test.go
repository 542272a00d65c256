package shard

import (
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestMergeErrorsNameRankFiles checks that a checkpoint whose shares do
// not fit together is refused, by the planner (shapes and dtypes) and by
// Merge (data), with an error naming the weight and the rank files (and
// stage and local name) involved, not just the weight.
func TestMergeErrorsNameRankFiles(t *testing.T) {
	const (
		qkv  = "decoder.layers.1.self_attention.linear_qkv.weight"
		proj = "decoder.layers.1.self_attention.linear_proj.weight"
		fc1  = "decoder.layers.0.mlp.linear_fc1.weight"
	)
	// edit changes the tensor name on rank file dir (tensor rank tp) of
	// the TP2 case.
	type edit struct {
		tp   int
		name string
		fn   func(rt *rankTensor)
	}
	withShape := func(dt tensor.DType, shape tensor.Shape) func(rt *rankTensor) {
		return func(rt *rankTensor) {
			rt.dtype, rt.shape = dt, shape
			rt.data = make([]byte, shape.NumElements()*int64(dt.Size()))
		}
	}
	rename := func(to string) func(rt *rankTensor) { return func(rt *rankTensor) { rt.Name = to } }
	for _, c := range []struct {
		name  string
		edits func(rts []*rankTensor) []edit
		merge bool // the planner accepts it; Merge of the data refuses it
		want  []string
	}{
		{"dtypes differ", func(rts []*rankTensor) []edit {
			rt := find(rts, 1, qkv)
			return []edit{{1, qkv, withShape(tensor.F32, rt.shape)}}
		}, false, []string{`weight "` + qkv + `"`, `the share in mp_rank_00 (model, "` + qkv + `") is BF16`, `the share in mp_rank_01 (model, "` + qkv + `") is F32`}},
		{"shapes do not concatenate", func(rts []*rankTensor) []edit {
			rt := find(rts, 1, proj)
			return []edit{{1, proj, withShape(rt.dtype, tensor.Shape{rt.shape[0] + 1, rt.shape[1]})}}
		}, false, []string{`weight "` + proj + `"`, `the share in mp_rank_00 (model, "` + proj + `")`, `the share in mp_rank_01 (model, "` + proj + `")`, "along dim 1"}},
		{"swiglu rows differ", func(rts []*rankTensor) []edit {
			rt := find(rts, 1, fc1)
			return []edit{{1, fc1, withShape(rt.dtype, tensor.Shape{rt.shape[0] + 2, rt.shape[1]})}}
		}, false, []string{`weight "` + fc1 + `"`, `mp_rank_00 (model, "` + fc1 + `")`, `mp_rank_01 (model, "` + fc1 + `")`}},
		{"swiglu share does not halve", func(rts []*rankTensor) []edit {
			var out []edit
			for tp := range 2 {
				rt := find(rts, tp, fc1)
				out = append(out, edit{tp, fc1, withShape(rt.dtype, tensor.Shape{rt.shape[0] + 1, rt.shape[1]})})
			}
			return out
		}, false, []string{`weight "` + fc1 + `"`, `the share in mp_rank_00 (model, "` + fc1 + `")`, "does not halve"}},
		{"name of no parallel class", func(rts []*rankTensor) []edit {
			return []edit{{1, proj, rename("decoder.layers.1.self_attention.mystery.weight")}}
		}, false, []string{`rank file mp_rank_01, model: weight "decoder.layers.1.self_attention.mystery.weight"`}},
		{"data: column shares of different widths", func(rts []*rankTensor) []edit {
			rt := find(rts, 1, qkv)
			return []edit{{1, qkv, withShape(rt.dtype, tensor.Shape{rt.shape[0], rt.shape[1] + 1})}}
		}, true, []string{`weight "` + qkv + `"`, `mp_rank_00 (model, "` + qkv + `")`, `mp_rank_01 (model, "` + qkv + `")`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, l, _, rts := splitCase(t, "TP2")
			for _, e := range c.edits(rts) {
				rt := find(rts, e.tp, e.name)
				if rt == nil {
					t.Fatalf("no %s on tensor rank %d", e.name, e.tp)
				}
				e.fn(rt)
			}
			var err error
			if c.merge {
				_, err = s.Merge(localsOf(rts, func(rt *rankTensor) bool { return rt.Name == qkv }))
			} else {
				_, err = s.PlanRead(rankFiles(l, rts))
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// find returns the local tensor name of tensor rank tp (pipeline and
// expert rank 0), or nil.
func find(rts []*rankTensor, tp int, name string) *rankTensor {
	for _, rt := range rts {
		if rt.Rank == (Rank{TP: tp}) && rt.Name == name {
			return rt
		}
	}
	return nil
}
