package ir_test

import (
	"slices"
	"testing"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/rollname"
)

// TestParallelClassesCoverRollnameClasses: the tensor-parallel classes
// compiler/rollname classifies by are parallel classes of the language
// (ir's lists, built from rollname's names): lists for the plain classes,
// maps for the grouped ones.
func TestParallelClassesCoverRollnameClasses(t *testing.T) {
	for _, c := range rollname.Classes {
		grouped := c <= rollname.GroupedRow
		in := ir.ParallelClasses
		if grouped {
			in = ir.ParallelMaps
		}
		if !slices.Contains(in, c.Key()) {
			t.Errorf("rollname class %v (key %q) is not in ir's parallel classes (grouped: %v)", c, c.Key(), grouped)
		}
	}
	seen := map[string]bool{}
	for _, k := range append(slices.Clone(ir.ParallelClasses), ir.ParallelMaps...) {
		if k == "" || seen[k] {
			t.Errorf("parallel class %q empty or listed twice", k)
		}
		seen[k] = true
	}
}
