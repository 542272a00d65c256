package shard

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestReadBackName: with transformer_impl local and ROLL's default
// classes, a dense layer's fused norms come back as they went, but a MoE
// layer's pre_mlp_layernorm comes back as the dense fused norm; that is
// the name Merge gives the weight split from it; with Transformer Engine
// names every name comes back as it is.
func TestReadBackName(t *testing.T) {
	for _, tc := range []struct {
		impl, name, want string
	}{
		{ImplLocal, "decoder.layers.1.pre_mlp_layernorm.weight", "decoder.layers.1.mlp.linear_fc1.layer_norm_weight"},
		{ImplLocal, "decoder.layers.1.mlp.linear_fc1.layer_norm_weight", "decoder.layers.1.mlp.linear_fc1.layer_norm_weight"},
		{ImplLocal, "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight", "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight"},
		{ImplLocal, "decoder.final_layernorm.weight", "decoder.final_layernorm.weight"},
		{ImplTransformerEngine, "decoder.layers.1.pre_mlp_layernorm.weight", "decoder.layers.1.pre_mlp_layernorm.weight"},
	} {
		s, err := New(Layout{NumLayers: 2, NumExperts: 2, TransformerImpl: tc.impl}, rollDefault(), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.ReadBackName(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("%s %s: %q, %v, want %q", tc.impl, tc.name, got, err, tc.want)
			continue
		}
		// What Merge makes of the rank file Split writes.
		x, _ := tensor.New(tensor.BF16, tensor.Shape{4}, make([]byte, 8))
		pieces, err := s.Split(tc.name, x)
		if err != nil {
			t.Fatal(err)
		}
		var locals []Local
		for _, p := range pieces {
			locals = append(locals, Local{Rank: p.Rank, Stage: p.Stage, Name: p.Name, Tensor: p.Data})
		}
		gs, err := s.Merge(locals)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, g := range gs {
			names = append(names, g.Name)
		}
		if diff := cmp.Diff([]string{tc.want}, names); diff != "" {
			t.Errorf("%s %s: merged back as (-ReadBackName +Merge):\n%s", tc.impl, tc.name, diff)
		}
	}
}
