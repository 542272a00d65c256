package ast_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/parser"
)

func TestDump(t *testing.T) {
	f, diags := parser.ParseFile("d.rolltpl", []byte(`mca m { a = -x[0] + 1 }`))
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	want := `(File Decls=[(Decl Mca=(McaBlock Name=(Ident Name="m") Items=[(McaItem Const=(Field Key=(Ident Name="a") ` +
		`Value=(AddExpr Left=(Unary Op="-" Operand=(Postfix X=(Primary Ident="x") Ops=[(Suffix Index=(Primary Int="0"))])) ` +
		`Rest=[(AddTerm Op="+" Right=(Primary Int="1"))])))]))] Name="d.rolltpl")`
	if diff := cmp.Diff(want, ast.Dump(f)); diff != "" {
		t.Errorf("Dump mismatch (-want +got):\n%s", diff)
	}
}

func TestDumpIgnoresLayout(t *testing.T) {
	a, _ := parser.ParseFile("d.rolltpl", []byte("# c\nconfig x { a.b -> c }\n"))
	b, _ := parser.ParseFile("d.rolltpl", []byte("\n\n# c\nconfig   x {\n    a . b\n        -> c\n}"))
	if diff := cmp.Diff(ast.Dump(a), ast.Dump(b)); diff != "" {
		t.Errorf("layout changed the dump (-a +b):\n%s", diff)
	}
	c, _ := parser.ParseFile("d.rolltpl", []byte("# c\nconfig x { a.b -> d }\n"))
	if ast.Dump(a) == ast.Dump(c) {
		t.Errorf("different trees dump the same: %s", ast.Dump(a))
	}
}
