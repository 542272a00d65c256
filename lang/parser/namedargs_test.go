package parser

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
)

// TestNamedCallArgs pins named call arguments (spec §7, tensor steps):
// positional arguments first, then `name = value`; a comparison `a == b`
// stays a positional argument; a positional argument after a named one is
// a syntax error.
func TestNamedCallArgs(t *testing.T) {
	tests := []struct {
		call string
		want string // the call's arguments: positional dumps, then name=dump
		err  string
	}{
		{call: `split(".a", [1, 2], dim = 0)`, want: `(Primary String=".a") | (Primary List=(ListLit Elems=[(Primary Int="1") (Primary Int="2")])) | dim=(Primary Int="0")`},
		{call: `f(a = 1, b = -2,)`, want: `a=(Primary Int="1") | b=(Unary Op="-" Operand=(Primary Int="2"))`},
		{call: `f(a == 1, b)`, want: `(CmpExpr Left=(Primary Ident="a") Op="==" Right=(Primary Int="1")) | (Primary Ident="b")`},
		{call: `f(x, dim = mca.n * 2)`, want: `(Primary Ident="x") | dim=(MulExpr Left=(Postfix X=(Primary Ident="mca") Ops=[(Suffix Field=(Ident Name="n"))]) Rest=[(MulTerm Op="*" Right=(Primary Int="2"))])`},
		{call: `f()`, want: ``},
		{call: `f(a = 1, b)`, err: `expected "="`},
		{call: `f(a = )`, err: `unexpected token ")"`},
	}
	for _, tt := range tests {
		t.Run(tt.call, func(t *testing.T) {
			f, diags := ParseFile("n.rolltpl", []byte("weights w { rename "+tt.call+" -> \".m\" }"))
			if tt.err != "" {
				if len(diags) != 1 || !strings.Contains(diags[0].Detail, tt.err) || diags[0].Code != diag.SyntaxError {
					t.Fatalf("want one syntax error with %q, got %v", tt.err, diags)
				}
				return
			}
			if len(diags) > 0 {
				t.Fatal(diags.Err())
			}
			call := f.Decls[0].Weights.Items[0].Op.HF[0].Value.Left.Left.Left.Left.Left.Value.Ops[0].Call
			var got []string
			for _, a := range call.Args {
				got = append(got, ast.Dump(a))
			}
			for _, n := range call.Named {
				got = append(got, n.Name.Name+"="+ast.Dump(n.Value))
			}
			if diff := cmp.Diff(tt.want, strings.Join(got, " | ")); diff != "" {
				t.Errorf("arguments (-want +got):\n%s", diff)
			}
		})
	}
}
