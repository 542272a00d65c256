package exec

import "testing"

// TestOpTableSplitKeepsMCAName: on the MCA side a fused-expert split op
// keeps an MCA name a later per-expert op declares too (converting back
// writes fused experts); on the HF side, and between ops of one kind, the
// last declaration wins as in ROLL.
func TestOpTableSplitKeepsMCAName(t *testing.T) {
	mk := func(kind string, names ...string) *side {
		return &side{sources: names, info: &opInfo{kind: kind}}
	}
	split := mk("split_stack_experts", ".linear_fc1.weight")
	stack := mk("stack", ".linear_fc1.weight")
	rename := mk("rename", ".linear_fc2.weight")
	rename2 := mk("rename", ".linear_fc2.weight")
	keys := func(s *side) []string { return s.sources }
	for _, c := range []struct {
		sides   []*side
		mcaSide bool
		name    string
		want    *side
	}{
		{[]*side{split, stack}, true, ".linear_fc1.weight", split},
		{[]*side{split, stack}, false, ".linear_fc1.weight", stack},
		{[]*side{stack, split}, true, ".linear_fc1.weight", split},
		{[]*side{rename, rename2}, true, ".linear_fc2.weight", rename2},
	} {
		got, ok := newOpTable(c.sides, keys, c.mcaSide).lookup(c.name)
		if !ok || got != c.want {
			t.Errorf("mcaSide %v, order %v: %s -> %v, want %v", c.mcaSide, []string{c.sides[0].info.kind, c.sides[1].info.kind}, c.name, got.info.kind, c.want.info.kind)
		}
	}
}
