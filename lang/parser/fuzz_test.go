package parser_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/format"
	"github.com/rolltpl/rolltpl/lang/parser"
)

// seeds returns every .rolltpl file of the repository's stdlib, compiler and
// CLI test data.
func seeds(f *testing.F) [][]byte {
	var out [][]byte
	for _, pattern := range []string{
		"../../stdlib/templates/*.rolltpl",
		"../../compiler/testdata/errors/*.rolltpl",
		"../../cmd/rolltplc/internal/cli/testdata/*.rolltpl",
		"../../examples/*/*.rolltpl",
		"testdata/*.rolltpl",
	} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, b)
		}
	}
	if len(out) < 10 {
		f.Fatalf("only %d seed files", len(out))
	}
	return out
}

// FuzzParse checks the parser's invariants on any input: it never panics,
// every diagnostic lies inside the file, every node's span can be read and
// is well-formed, and a file without errors formats, re-parses and formats
// to itself.
func FuzzParse(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Add([]byte("template t { weights { rename \"a\" -> \"b\" } }"))
	f.Add([]byte("template \"unterminated"))
	f.Add([]byte("\x00\xff template {{{{ ]]] ->"))
	f.Fuzz(func(t *testing.T, src []byte) {
		file, diags := parser.ParseFile("fuzz.rolltpl", src)
		if file == nil {
			t.Fatal("nil file")
		}
		for _, d := range diags {
			s := d.Subject
			if s.Start.Offset < 0 || s.End.Offset > len(src) || s.Start.Offset > s.End.Offset {
				t.Fatalf("diagnostic %v outside the file (len %d)", d, len(src))
			}
		}
		ast.Inspect(file, func(n ast.Node) bool {
			s := n.Span()
			if s.End.Offset > len(src) || s.Start.Offset > s.End.Offset && s.End.Line != 0 {
				t.Fatalf("%T has span %v outside the file (len %d)", n, s, len(src))
			}
			return true
		})
		if len(diags) > 0 {
			return
		}
		out, err := format.Source("fuzz.rolltpl", src)
		if err != nil {
			t.Fatalf("format failed on a file without errors: %v", err)
		}
		if _, diags := parser.ParseFile("fuzz.rolltpl", out); len(diags) > 0 {
			t.Fatalf("formatted output does not parse: %v\n%s", diags[0], out)
		}
		again, err := format.Source("fuzz.rolltpl", out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("format is not idempotent:\n%s\n---\n%s", out, again)
		}
	})
}
