package vocab_test

import (
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/vocab"
)

// TestParallelClassDocCoversClasses: every parallel class of the language
// (ir.ParallelClasses, ir.ParallelMaps, the one list) is documented, and
// nothing else is.
func TestParallelClassDocCoversClasses(t *testing.T) {
	want := append(slices.Clone(ir.ParallelClasses), ir.ParallelMaps...)
	var got []string
	for k := range vocab.ParallelClassDoc {
		got = append(got, k)
	}
	sort.Strings(want)
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParallelClassDoc keys differ from ir's parallel classes (-want +got):\n%s", diff)
	}
}

// TestROLLImport pins where ROLL defines each op's class: template.py for
// most, a model module for the GDN ops, and for the fused-expert splits a
// module chosen by transpose, with distinct import names and the template
// class that gathers experts when ROLL has one.
func TestROLLImport(t *testing.T) {
	type imp struct{ Module, Name, Template string }
	for _, tc := range []struct {
		kind string
		by   bool
		want imp
	}{
		{"rename", false, imp{"", "RenameConverOp", ""}},
		{"qkv", true, imp{"", "QKVConverOp", ""}}, // no ROLLBy: by is ignored
		{"next_gdn", false, imp{"mcore_adapter.models.qwen3_next", "NextGDNConverOp", ""}},
		{"qwen3_5_gdn", false, imp{"mcore_adapter.models.qwen3_5", "Qwen3_5_GDNConverOp", ""}},
		{"split_experts", true, imp{"mcore_adapter.models.qwen3_vl_moe", "TransposedSplitConverOp", "Qwen3VLMoeTemplate"}},
		{"split_experts", false, imp{"mcore_adapter.models.qwen3_5_moe", "SplitConverOp", ""}},
		{"split_stack_experts", true, imp{"mcore_adapter.models.qwen3_vl_moe", "TransposedSplitStackConverOp", "Qwen3VLMoeTemplate"}},
		{"split_stack_experts", false, imp{"mcore_adapter.models.qwen3_5_moe", "SplitStackConverOp", ""}},
	} {
		var got imp
		got.Module, got.Name, got.Template = vocab.Op(tc.kind).ROLLImport(tc.by)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (by %v): (-want +got):\n%s", tc.kind, tc.by, diff)
		}
	}
}

// TestROLLClassesWellFormed: every op has a ROLL class; an op whose class
// is chosen by a parameter has that parameter as a required bool and a
// variant for both values; no two imported names of different classes
// collide (the support module re-exports them side by side).
func TestROLLClassesWellFormed(t *testing.T) {
	imported := map[string]string{} // name -> module.class
	add := func(kind, module, name string) {
		if module == "" {
			return
		}
		id := module + "." + vocab.Op(kind).ROLLClass
		if prev, ok := imported[name]; ok && prev != id {
			t.Errorf("%s: import name %s is both %s and %s", kind, name, prev, id)
		}
		imported[name] = id
	}
	for _, o := range vocab.Ops {
		if o.ROLLClass == "" {
			t.Errorf("%s: no ROLL class", o.Kind)
		}
		if o.ROLLBy == "" {
			if len(o.ROLLVariants) > 0 {
				t.Errorf("%s: variants without ROLLBy", o.Kind)
			}
			m, n, _ := o.ROLLImport(false)
			add(o.Kind, m, n)
			continue
		}
		if o.ROLLModule != "" {
			t.Errorf("%s: both ROLLModule and ROLLBy", o.Kind)
		}
		if p := o.Param(o.ROLLBy); p == nil || p.Type != "bool" || !p.Required {
			t.Errorf("%s: ROLLBy %q is not a required bool parameter", o.Kind, o.ROLLBy)
		}
		for _, by := range []bool{false, true} {
			if _, ok := o.ROLLVariants[by]; !ok {
				t.Errorf("%s: no variant for %s=%v", o.Kind, o.ROLLBy, by)
			}
			m, n, _ := o.ROLLImport(by)
			add(o.Kind, m, n)
		}
	}
}
