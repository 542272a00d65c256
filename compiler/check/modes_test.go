package check

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler/ir"
)

// TestResolvedCached: the checker resolves an op's names once per
// template and mode: resolved gives what op.Resolved gives in each of the
// template's modes, and a second call hands back the same slices.
func TestResolvedCached(t *testing.T) {
	ops := []*ir.Op{
		{Kind: "rename", HF: []ir.Name{{Value: ".a.weight"}}, MCA: []ir.Name{{Value: ".b.weight"}}},
		{Kind: "qkv", HF: []ir.Name{{Value: ".q"}, {Value: ".k"}, {Value: ".v"}}, MCA: []ir.Name{{Value: ".qkv"}}},
	}
	tmpl := &ir.Template{Name: "m", Ops: ops}
	c := &checker{}
	modes := c.modes(tmpl)
	if diff := cmp.Diff(templateModes(tmpl), modes); diff != "" {
		t.Fatalf("modes (-want +got):\n%s", diff)
	}
	if len(modes) < 2 {
		t.Fatalf("only %d modes", len(modes))
	}
	for mi, mode := range modes {
		for _, op := range ops {
			hf, mca := c.resolved(tmpl, op, mi)
			wantHF, wantMCA := op.Resolved(mode)
			if diff := cmp.Diff([2][]string{wantHF, wantMCA}, [2][]string{hf, mca}); diff != "" {
				t.Errorf("%s in mode %v (-want +got):\n%s", op.Kind, mode, diff)
			}
			hf2, mca2 := c.resolved(tmpl, op, mi)
			if &hf2[0] != &hf[0] || &mca2[0] != &mca[0] {
				t.Errorf("%s in mode %v resolved again", op.Kind, mode)
			}
		}
	}
	if len(c.modeSets) != 1 || len(c.modeSets[tmpl].resolved) != len(ops) {
		t.Errorf("cache holds %d templates, %d ops; want 1, %d", len(c.modeSets), len(c.modeSets[tmpl].resolved), len(ops))
	}
}
