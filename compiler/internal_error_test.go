package compiler_test

import (
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/stdlib"
)

// TestInternalError: a panic anywhere in the front end (here in the
// parser a caller passes) is an internal-error diagnostic, not a crash;
// no input is known to cause one, so the corpus of codes has no case
// for it.
func TestInternalError(t *testing.T) {
	res := compiler.Compile([]string{"stdlib/templates/qwen2.rolltpl"}, compiler.Options{
		Lib:   stdlib.Templates(),
		Parse: func(string, []byte) (*ast.File, diag.List) { panic("boom") },
	})
	if len(res.Diags) != 1 {
		t.Fatalf("got %d diagnostics, want 1: %v", len(res.Diags), res.Diags)
	}
	d := res.Diags[0]
	if d.Code != diag.InternalError || d.Severity != diag.Error || !strings.Contains(d.Detail, "boom") {
		t.Errorf("got %v, want an %s naming the panic", d, diag.InternalError)
	}
}
