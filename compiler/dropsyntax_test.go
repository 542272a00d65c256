package compiler_test

import (
	"path/filepath"
	"runtime"
	"testing"
	"weak"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/parser"
	"github.com/rolltpl/rolltpl/stdlib"
)

// TestDropSyntax: with Options.DropSyntax the syntax trees are released
// once the program is lowered (nothing keeps them reachable), and the
// program, the diagnostics and the sources are those of a compilation
// that keeps them.
func TestDropSyntax(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "errors", "*.rolltpl"))
	libs, err := compiler.LibPaths(stdlib.Templates())
	if err != nil {
		t.Fatal(err)
	}
	inputs := [][]string{libs}
	for _, f := range files {
		inputs = append(inputs, []string{f})
	}
	for _, paths := range inputs {
		var trees []weak.Pointer[ast.File]
		parse := func(name string, src []byte) (*ast.File, diag.List) {
			f, d := parser.ParseFile(name, src)
			trees = append(trees, weak.Make(f))
			return f, d
		}
		opts := compiler.Options{Lib: stdlib.Templates(), SchemaLib: stdSchemas(), Backend: pyemit.Check, Parse: parse}
		keep := compiler.Compile(paths, opts)
		opts.DropSyntax = true
		trees = nil
		drop := compiler.Compile(paths, opts)
		runtime.GC()
		runtime.GC()
		for i, w := range trees {
			if w.Value() != nil {
				t.Errorf("%v: syntax tree %d still reachable after Compile with DropSyntax", paths, i)
			}
		}
		if len(trees) == 0 {
			t.Errorf("%v: Parse was not called", paths)
		}
		if diff := cmp.Diff(messages(keep.Diags), messages(drop.Diags)); diff != "" {
			t.Errorf("%v: diagnostics differ (-keep +drop):\n%s", paths, diff)
		}
		if diff := cmp.Diff(keep.Program, drop.Program); diff != "" {
			t.Errorf("%v: programs differ (-keep +drop):\n%s", paths, diff)
		}
		if diff := cmp.Diff(keep.Sources(), drop.Sources()); diff != "" {
			t.Errorf("%v: sources differ (-keep +drop):\n%s", paths, diff)
		}
		for _, f := range drop.Info.Files {
			if f.AST != nil || f.Symbols != nil {
				t.Errorf("%v: %s keeps its syntax tree or symbols", paths, f.Path)
			}
		}
		runtime.KeepAlive(keep)
	}
}

// messages returns each diagnostic of l as its one-line message.
func messages(l diag.List) []string {
	var out []string
	for _, d := range l {
		out = append(out, d.Error())
	}
	return out
}
