package parser

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/lang/ast"
)

// TestNestingTooDeep: a declaration nesting deeper than MaxNesting, by any
// nestable construct, is one "nesting-too-deep" error at the token that
// first goes too deep, is not parsed (so nothing recursive can exhaust the
// stack, even at 100 000 levels), and costs the declarations around it
// nothing. Nesting up to the limit parses.
func TestNestingTooDeep(t *testing.T) {
	const deep = 100000
	rep := strings.Repeat
	ok := MaxNesting - 1 // the template's braces are the first level
	tests := []struct {
		name    string
		expr    string // the value of a template field
		tooDeep bool
	}{
		{"parens", rep("(", deep) + "1" + rep(")", deep), true},
		{"lists", rep("[", deep) + "1" + rep("]", deep), true},
		{"index", rep("a[", deep) + "0" + rep("]", deep), true},
		{"calls", rep("f(", deep) + "1" + rep(")", deep), true},
		{"not", rep("!", deep) + "a", true},
		{"minus", rep("- ", deep) + "a", true},
		{"conditionals", rep("1 if a else ", deep) + "2", true},
		{"mixed", rep("-(!a if [", deep) + "1" + rep("] else 2)", deep), true},
		{"parens at the limit", rep("(", ok) + "1" + rep(")", ok), false},
		{"not at the limit", rep("!", ok) + "a", false},
		{"long sums", rep("-a - ", 5000) + "a", false},
		{"long lists", "[" + rep("-1 if a else -2, ", 5000) + "]", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "config c { a -> b }\ntemplate t {\n    x = " + tt.expr + "\n}\ntemplate u { layer_prefix = \"x\" }\n"
			f, diags := ParseFile("deep.rolltpl", []byte(src))
			var got []string
			for _, d := range diags {
				got = append(got, fmt.Sprintf("%s %d", d.Code, d.Subject.Start.Line))
			}
			var want []string
			if tt.tooDeep {
				want = []string{"nesting-too-deep 3"}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("diagnostics mismatch (-want +got):\n%s", diff)
			}
			kinds := make([]string, len(f.Decls))
			for i, d := range f.Decls {
				kinds[i] = fmt.Sprintf("%T", d.Node())
			}
			wantKinds := []string{"*ast.ConfigBlock", "*ast.Template", "*ast.Template"}
			if tt.tooDeep {
				wantKinds[1] = "*ast.BadDecl"
			}
			if diff := cmp.Diff(wantKinds, kinds); diff != "" {
				t.Errorf("declarations mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNestingTooDeepPosition: the error is at the first token past the
// limit, and the limit counts every kind of level.
func TestNestingTooDeepPosition(t *testing.T) {
	for _, open := range []string{"(", "[", "!", "-"} {
		// The template's brace is level 1 and `(`s at 2..; the token that
		// makes level MaxNesting+1 is the MaxNesting-th opener.
		src := "template t {\n    x = " + strings.Repeat(open, MaxNesting+5) + "1\n}\n"
		_, diags := ParseFile("deep.rolltpl", []byte(src))
		if len(diags) != 1 || diags[0].Code != "nesting-too-deep" {
			t.Fatalf("%q: diagnostics %v, want one nesting-too-deep", open, diags)
		}
		want := len("    x = ") + MaxNesting // 1-based column of the MaxNesting-th opener
		if p := diags[0].Subject.Start; p.Line != 2 || p.Column != want {
			t.Errorf("%q: error at %d:%d, want 2:%d", open, p.Line, p.Column, want)
		}
	}
}

// TestStringLiteralLinear: parsing a string literal costs memory linear in
// its length (participle's own unquoting concatenates one rune at a time,
// quadratic: 28 s for 400 KB). The bytes allocated for a 64 KB literal
// must stay within a generous multiple of 16 times those for a 4 KB one;
// quadratic growth would be 256 times.
func TestStringLiteralLinear(t *testing.T) {
	alloc := func(n int) uint64 {
		src := []byte("template t {\n    layer_prefix = \"" + strings.Repeat("é\\n", n/4) + "\"\n}\n")
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f, diags := ParseFile("s.rolltpl", src)
		runtime.ReadMemStats(&after)
		if len(diags) > 0 {
			t.Fatal(diags)
		}
		if v, _ := f.Decls[0].Template.Items[0].Field.Value.StringLit(); v != strings.Repeat("é\n", n/4) {
			t.Fatalf("value of %d bytes wrong", n)
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := alloc(4<<10), alloc(64<<10)
	if large > 40*small {
		t.Errorf("parsing a 64 KB string literal allocated %d bytes, %.0f times the %d of a 4 KB one (linear: 16)", large, float64(large)/float64(small), small)
	}
}

// TestBOM: a leading UTF-8 byte order mark is ignored, and columns on the
// first line count from the character after it.
func TestBOM(t *testing.T) {
	src := []byte("\ufefftemplate t { layer_prefix = 1 + }\n")
	f, diags := ParseFile("bom.rolltpl", src)
	if len(f.Decls) != 1 || len(diags) != 1 || diags[0].Code != "syntax-error" {
		t.Fatalf("decls %d, diagnostics %v: want one syntax error", len(f.Decls), diags)
	}
	if p := diags[0].Subject.Start; p.Line != 1 || p.Column != 31 || p.Offset != 33 {
		t.Errorf("syntax error at %d:%d (offset %d), want 1:31 (offset 33), at the `+`", p.Line, p.Column, p.Offset)
	}
	f, diags = ParseFile("bom.rolltpl", []byte("\ufefftemplate t { layer_prefix = \"x\" }\n"))
	if len(diags) > 0 || f.Decls[0].Template == nil {
		t.Fatalf("diagnostics %v", diags)
	}
	if p := f.Decls[0].Span().Start; p.Column != 1 || p.Offset != 3 {
		t.Errorf("template at column %d offset %d, want column 1 offset 3", p.Column, p.Offset)
	}
}

// TestParallelParse: a file with many declarations, parsed on several
// cores, gives the same trees, positions and diagnostics as parsed on one.
func TestParallelParse(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 3*parallelMin; i++ {
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, "template t%d {\n    layer_prefix = \"m.l.\"\n    weights { rename \"a%d\" -> \"b\" }\n}\n", i, i)
		case 1:
			fmt.Fprintf(&b, "config c%d { a -> b\n  é -> c }\n", i) // a syntax error at é
		case 2:
			fmt.Fprintf(&b, "mca m%d { x = %s1%s }\n", i, strings.Repeat("(", MaxNesting), strings.Repeat(")", MaxNesting))
		default:
			fmt.Fprintf(&b, "# comment %d\nweights w%d {\n    rename \"x\" -> \"y\"  # trailing\n}\n", i, i)
		}
	}
	src := []byte(b.String())
	type result struct {
		Dump  string
		Spans []string
		Diags []string
	}
	run := func() result {
		f, diags := ParseFile("p.rolltpl", src)
		var r result
		r.Dump = ast.Dump(f)
		ast.Inspect(f, func(n ast.Node) bool {
			r.Spans = append(r.Spans, n.Span().String())
			return true
		})
		for _, d := range diags {
			r.Diags = append(r.Diags, d.Error())
		}
		return r
	}
	prev := runtime.GOMAXPROCS(1)
	one := run()
	runtime.GOMAXPROCS(4)
	many := run()
	runtime.GOMAXPROCS(prev)
	if len(one.Diags) != MaxErrors {
		t.Errorf("%d diagnostics, want the cap %d", len(one.Diags), MaxErrors)
	}
	if diff := cmp.Diff(one, many); diff != "" {
		t.Errorf("parallel parse differs (-one core +four):\n%s", diff)
	}
}
