package parser

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/lang/ast"
)

// TestSpans pins the exact byte ranges participle fills through the
// embedded ast.Range, including for nodes that end before trailing
// comments and whitespace.
func TestSpans(t *testing.T) {
	src := `template t {   # comment
    layer_prefix = "model.layers."
    weights {
        stack(dim = 0) ".g", ".u"
            -> ".fc1"   # trailing
    }
}
`
	f, diags := ParseFile("s.rolltpl", []byte(src))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	text := func(n ast.Node) string {
		s := n.Span()
		return src[s.Start.Offset:s.End.Offset]
	}
	tm := f.Decls[0].Template
	op := tm.Items[1].Weights.Items[0].Op
	got := []string{
		text(tm),
		text(tm.Name),
		text(tm.Items[0].Field),
		text(tm.Items[0].Field.Value),
		text(op),
		text(op.Params[0]),
		text(op.HF[1]),
		text(op.MCA[0]),
	}
	want := []string{
		src[:len(src)-1],
		"t",
		`layer_prefix = "model.layers."`,
		`"model.layers."`,
		"stack(dim = 0) \".g\", \".u\"\n            -> \".fc1\"",
		"dim = 0",
		`".u"`,
		`".fc1"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("spans mismatch (-want +got):\n%s", diff)
	}
	p := op.Span().Start
	if p.Line != 4 || p.Column != 9 || p.Filename != "s.rolltpl" {
		t.Errorf("op starts at %v, want s.rolltpl:4:9", p)
	}
}

// TestRecovery: each broken declaration costs one diagnostic and the
// declarations after it still parse.
func TestRecovery(t *testing.T) {
	src := strings.Join([]string{
		`template a { weights { rename "x" -> } }`,
		`template b { layer_prefix = "ok" }`,
		`config c { hidden_size -> }`,
		`weights d { rename "a" -> "b" }`,
		`template e { layer_prefix = "unterminated }`,
		`parallel f { duplicated "x" }`,
		`@@@ junk`,
	}, "\n")
	f, diags := ParseFile("r.rolltpl", []byte(src))
	var lines []int
	for _, d := range diags {
		lines = append(lines, d.Subject.Start.Line)
		if d.Code != "syntax-error" {
			t.Errorf("code %q", d.Code)
		}
	}
	if diff := cmp.Diff([]int{1, 3, 5, 7}, lines); diff != "" {
		t.Errorf("diagnostic lines mismatch (-want +got):\n%s", diff)
	}
	var kinds []string
	for _, d := range f.Decls {
		kinds = append(kinds, fmt.Sprintf("%T", d.Node()))
	}
	want := []string{"*ast.BadDecl", "*ast.Template", "*ast.BadDecl", "*ast.WeightsBlock", "*ast.BadDecl", "*ast.ParallelBlock", "*ast.BadDecl"}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("declarations mismatch (-want +got):\n%s", diff)
	}
}

func ExampleParseFile() {
	src := "template t {\n    weights { renam \"a\" \"b\" }\n}\n"
	_, diags := ParseFile("t.rolltpl", []byte(src))
	for _, d := range diags {
		fmt.Println(d.Error())
	}
	// Output: t.rolltpl:2:25: error: Syntax error: unexpected token "b" (expected "->" a name). [syntax-error]
}

// TestQuantSpansAndRecovery pins the ranges of a quant block's nodes,
// top level and inside a template, and checks that a broken scale rule
// costs its declaration only: "quant" starts a declaration, so the
// template after it parses.
func TestQuantSpansAndRecovery(t *testing.T) {
	src := `quant fp8_block {
    scale "{}.weight"  # the weight
        -> "{}.weight_scale_inv"
}
template t { layer_prefix = "model.layers." quant { use fp8_block  scale "{}.w" -> "{}.s" } }
quant broken { scale "{}.weight" -> }
template u { layer_prefix = "x." }
`
	f, diags := ParseFile("q.rolltpl", []byte(src))
	if len(diags) != 1 || diags[0].Code != "syntax-error" || diags[0].Subject.Start.Line != 6 {
		t.Fatalf("diagnostics %v, want one syntax-error on line 6", diags)
	}
	text := func(n ast.Node) string {
		s := n.Span()
		return src[s.Start.Offset:s.End.Offset]
	}
	q := f.Decls[0].Quant
	inner := f.Decls[1].Template.Items[1].Quant
	got := []string{
		text(q), text(q.Name), text(q.Items[0].Scale), text(q.Items[0].Scale.Weight), text(q.Items[0].Scale.Scale),
		text(inner), text(inner.Items[0].Use), text(inner.Items[1].Scale),
	}
	want := []string{
		src[:strings.Index(src, "\ntemplate t")],
		"fp8_block",
		"scale \"{}.weight\"  # the weight\n        -> \"{}.weight_scale_inv\"",
		`"{}.weight"`,
		`"{}.weight_scale_inv"`,
		`quant { use fp8_block  scale "{}.w" -> "{}.s" }`,
		"use fp8_block",
		`scale "{}.w" -> "{}.s"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("spans mismatch (-want +got):\n%s", diff)
	}
	if q.Items[0].Scale.Weight.Value != "{}.weight" || inner.Name != nil {
		t.Errorf("values: weight %q, inner name %v", q.Items[0].Scale.Weight.Value, inner.Name)
	}
	var kinds []string
	for _, d := range f.Decls {
		kinds = append(kinds, fmt.Sprintf("%T", d.Node()))
	}
	if diff := cmp.Diff([]string{"*ast.QuantBlock", "*ast.Template", "*ast.BadDecl", "*ast.Template"}, kinds); diff != "" {
		t.Errorf("declarations mismatch (-want +got):\n%s", diff)
	}
}
