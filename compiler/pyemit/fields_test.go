package pyemit

import (
	"testing"

	"github.com/rolltpl/rolltpl/compiler/ir"
)

// TestParallelFieldsCoverClasses: every parallel class of the language
// has its DistParallelConfig argument, so an inline parallel part never
// emits a keyword argument named "".
func TestParallelFieldsCoverClasses(t *testing.T) {
	for _, c := range ir.ParallelClasses {
		if listFields[c] == "" {
			t.Errorf("list class %s has no DistParallelConfig argument", c)
		}
	}
	for _, m := range ir.ParallelMaps {
		if mapFields[m] == "" {
			t.Errorf("map class %s has no DistParallelConfig argument", m)
		}
	}
	if len(listFields) != len(ir.ParallelClasses) || len(mapFields) != len(ir.ParallelMaps) {
		t.Errorf("argument tables have %d+%d entries, the classes %d+%d", len(listFields), len(mapFields), len(ir.ParallelClasses), len(ir.ParallelMaps))
	}
}
