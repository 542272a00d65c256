package main

import (
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/runtime/ops"
)

// pythonPending are the op kinds without a Python rule yet (none).
var pythonPending []string

// TestOpKindsHaveBothBackends checks that every op kind of the language has
// a runtime implementation, and a Python emitter rule unless it is listed as
// pending. The two backends never import each other; this test is where
// they meet.
func TestOpKindsHaveBothBackends(t *testing.T) {
	var missingPy []string
	emit := map[string]bool{}
	for _, k := range pyemit.OpKinds() {
		emit[k] = true
	}
	for _, spec := range vocab.Ops {
		if _, ok := ops.Lookup(spec.Kind); !ok {
			t.Errorf("op kind %s has no runtime implementation", spec.Kind)
		}
		if !emit[spec.Kind] {
			missingPy = append(missingPy, spec.Kind)
		}
	}
	sort.Strings(missingPy)
	if diff := cmp.Diff(pythonPending, missingPy); diff != "" {
		t.Errorf("op kinds without a Python rule changed (-pending +actual):\n%s", diff)
	}
	if len(ops.Kinds()) != len(vocab.Ops) {
		t.Errorf("runtime has %d op kinds, the language %d", len(ops.Kinds()), len(vocab.Ops))
	}
}

// TestLossyOpsAgree: the op catalog declares an op lossy in the dtypes the
// runtime derives (runtime/ops' lossy table, tested against the ops'
// own arithmetic).
func TestLossyOpsAgree(t *testing.T) {
	for _, spec := range vocab.Ops {
		var got []string
		for _, dt := range ops.LossyDTypes(spec.Kind) {
			got = append(got, dt.String())
		}
		if diff := cmp.Diff(got, spec.LossyIn); diff != "" {
			t.Errorf("%s: the catalog's LossyIn differs from the runtime's (-runtime +catalog):\n%s", spec.Kind, diff)
		}
	}
}
