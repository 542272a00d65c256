package exec

import (
	"slices"
	"testing"
)

func TestSplitPrefix(t *testing.T) {
	hf := prefixes{layer: "model.layers.", expert: ".mlp.experts."}
	for _, c := range []struct {
		name, prefix, pure string
		layer, expert      int
		fused              bool
	}{
		{"lm_head.weight", "", "lm_head.weight", -1, -1, false},
		{"model.layers.3.self_attn.q_proj.weight", "model.layers.3", ".self_attn.q_proj.weight", 3, -1, false},
		{"model.layers.12.mlp.experts.7.gate_proj.weight", "model.layers.12.mlp.experts.7", ".gate_proj.weight", 12, 7, false},
		{"model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.", "gate_up_proj", 0, -1, true},
		{"model.layers.0.mlp.shared_expert.gate_proj.weight", "model.layers.0", ".mlp.shared_expert.gate_proj.weight", 0, -1, false},
		{"model.layers.5", "model.layers.5", "", 5, -1, false},
	} {
		wp, pure, err := hf.split(c.name)
		if err != nil || wp.Prefix != c.prefix || pure != c.pure || wp.Layer != c.layer || wp.Expert != c.expert || wp.Fused != c.fused {
			t.Errorf("split(%q) = %+v %q %v", c.name, wp, pure, err)
		}
	}
	for _, bad := range []string{"model.layers.x.weight", "model.layers..weight", "model.layers.01.weight", "model.layers.-1.w"} {
		if _, _, err := hf.split(bad); err == nil {
			t.Errorf("split(%q): no error", bad)
		}
	}
	mca := prefixes{layer: MCALayerPrefix, expert: MCAExpertPrefix}
	if got := convertPrefix("model.layers.12.mlp.experts.7", hf, mca); got != "decoder.layers.12.mlp.experts.local_experts.7" {
		t.Errorf("convertPrefix: %q", got)
	}
	if got := convertPrefix("decoder.layers.0.mlp.experts.local_experts.", mca, hf); got != "model.layers.0.mlp.experts." {
		t.Errorf("convertPrefix back: %q", got)
	}
}

func TestLookupTable(t *testing.T) {
	mk := func(names ...string) *side { return &side{sources: names} }
	a := mk(".self_attn.q_proj.weight", ".self_attn.k_proj.weight")
	b := mk("visual.{}")
	c := mk(".mlp.gate.weight")
	d := mk(".self_attn.q_proj.weight") // declared again later: wins the key
	tab := newOpTable([]*side{a, b, c, d}, func(s *side) []string { return s.sources })
	for name, want := range map[string]*side{
		".self_attn.q_proj.weight":         d,
		".self_attn.k_proj.weight":         a,
		"visual.blocks.0.attn.qkv.weight":  b,
		".mlp.gate.weight_scale_inv":       c, // prefix match
		".mlp-gate-weight":                 c, // unescaped dots match any character
		".self_attn.q_proj.weightXYZ":      d, // first key in insertion order
		"model.visual.blocks.0.qkv.weight": nil,
	} {
		got, ok := tab.lookup(name)
		if (want == nil) == ok || got != want {
			t.Errorf("lookup(%q) = %v, %v", name, got, ok)
		}
	}
	if !slices.Equal(tab.keys.Keys(), []string{".self_attn.q_proj.weight", ".self_attn.k_proj.weight", "visual.{}", ".mlp.gate.weight"}) {
		t.Errorf("keys: %v", tab.keys)
	}
	// ROLL's re.match of an alternation key: every alternative anchored
	// at the start (the checker used to anchor only the first).
	alt := mk("a.{}|b")
	tab = newOpTable([]*side{alt}, func(s *side) []string { return s.sources })
	for name, want := range map[string]bool{"a.x": true, "b.x": true, "x.b": false} {
		if _, ok := tab.lookup(name); ok != want {
			t.Errorf("lookup(%q) in {a.{}|b} = %v, want %v", name, ok, want)
		}
	}
	s := newSide(nil, []string{".gate_proj.weight", "visual.{}"}, nil)
	for name, want := range map[string]bool{".gate_proj.weight": true, ".gate_proj.weight_scale_inv": true, "visual.x": true, "visualx": false, ".up_proj.weight": false} {
		if s.requires(name) != want {
			t.Errorf("requires(%q) != %v", name, want)
		}
	}
}

func TestAssignShards(t *testing.T) {
	outs := []Output{{Name: "a", Size: 4}, {Name: "b", Size: 4}, {Name: "c", Size: 20}, {Name: "d", Size: 1}, {Name: "e", Size: 9}}
	got := assignShards(outs, 10)
	var desc []string
	for _, s := range got {
		var names []string
		for _, o := range outs[s.first:s.end] {
			names = append(names, o.Name)
		}
		desc = append(desc, s.name+":"+joinLimited(names, 9))
	}
	if len(got) != 3 || desc[0] != "model-00001-of-00003.safetensors:a, b" || desc[1] != "model-00002-of-00003.safetensors:c" || desc[2] != "model-00003-of-00003.safetensors:d, e" {
		t.Errorf("shards: %v", desc)
	}
	if one := assignShards(nil, 10); len(one) != 1 || one[0].name != "model-00001-of-00001.safetensors" {
		t.Errorf("no outputs: %+v", one)
	}
}
