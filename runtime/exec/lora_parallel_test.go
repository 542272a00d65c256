package exec_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/exec"
)

// TestDerivedLoRAParallelEqualsStdlib checks the Go runtime's LoRA
// parallel classes, derived from the base weights' classes
// (exec.DeriveLoRAParallel, lora-fp8.md §1.5.3), against the stdlib's
// hand-written sets that ROLL's Python runtime uses: lora (from decoder),
// lora_shared_moe (from shared_moe) and lora_te_moe (from te_moe), each
// restricted to the modules ROLL's hand-written sets cover.
func TestDerivedLoRAParallelEqualsStdlib(t *testing.T) {
	prog := stdlibProgram(t)
	eff := func(name string) ir.Effective {
		return prog.Effective(&ir.ParallelSet{Parts: []ir.ParallelPart{{Use: name}}})
	}
	keep := func(e ir.Effective, pred func(string) bool) map[string][]string {
		out := map[string][]string{}
		for k, v := range e.Lists {
			for _, n := range v {
				if pred(n) {
					out[k] = append(out[k], n)
				}
			}
		}
		for k, v := range e.Maps {
			if k == "te_to_local" {
				continue
			}
			for _, me := range v {
				if pred(me.From) {
					out[k] = append(out[k], me.From+" -> "+me.To)
				}
			}
		}
		for k := range out {
			slices.Sort(out[k])
		}
		return out
	}
	isLoRA := func(n string) bool { return strings.Contains(n, ".lora_") }
	for _, c := range []struct {
		base, lora string
		pred       func(string) bool
	}{
		{"decoder", "lora", func(n string) bool {
			for _, m := range []string{"linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"} {
				if strings.Contains(n, "."+m+".lora_") && !strings.Contains(n, "shared_experts") {
					return true
				}
			}
			return false
		}},
		{"shared_moe", "lora_shared_moe", func(n string) bool { return strings.Contains(n, ".shared_experts.") && isLoRA(n) }},
		{"te_moe", "lora_te_moe", func(n string) bool {
			return strings.Contains(n, ".mlp.experts.") || strings.HasPrefix(n, ".linear_fc") && isLoRA(n)
		}},
	} {
		derived := exec.DeriveLoRAParallel(eff(c.base))
		got := keep(derived, c.pred)
		if c.base == "decoder" {
			// decoder's legacy grouped-GEMM maps have no LoRA in ROLL
			delete(got, "grouped_duplicated")
			delete(got, "grouped_column")
			delete(got, "grouped_row")
		}
		if c.base == "te_moe" {
			for k := range got {
				if !strings.HasPrefix(k, "grouped_") {
					delete(got, k)
				}
			}
		}
		want := keep(eff(c.lora), func(string) bool { return true })
		if len(want) == 0 {
			t.Fatalf("%s: the stdlib set is empty", c.lora)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("derived from %s vs hand-written %s (-want +got):\n%s", c.base, c.lora, d)
		}
	}
}
