package main

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/lang/diag"
)

const module = "github.com/rolltpl/rolltpl/"

// allowed says, for each package (by path below the module), which project
// packages it may import (STYLE.md §2). A "/..." suffix allows a subtree.
var allowed = map[string][]string{
	"lang/token":    {},
	"lang/diag":     {"lang/token"},
	"lang/ast":      {"lang/token"},
	"lang/parser":   {"lang/token", "lang/diag", "lang/ast"},
	"lang/format":   {"lang/token", "lang/diag", "lang/ast", "lang/parser"},
	"lang/langtest": {},
	"lang/srcfile":  {}, // reading only regular files: the front end's and the runtime's (lang is the lowest layer)
	// The IR names diagnostic codes through lang/diag's registry.
	"compiler/ir": {"lang/token", "compiler/rollname", "lang/diag"},
	// The language's vocabulary (op kinds, fields, build flags): a leaf.
	"compiler/vocab": {"compiler/rollname"},
	// The config schemas.
	"compiler/schema":  {"lang/..."},
	"compiler/resolve": {"lang/...", "compiler/schema", "compiler/vocab"},
	"compiler/check":   {"lang/...", "compiler/schema", "compiler/vocab", "compiler/resolve", "compiler/ir", "compiler/rollname"},
	"compiler/lower":   {"lang/...", "compiler/schema", "compiler/vocab", "compiler/resolve", "compiler/check", "compiler/ir", "compiler/rollname"},
	"compiler/pyemit":  {"compiler/ir", "compiler/rollname", "compiler/vocab", "lang/token", "lang/diag", "runtime/outdir", "runtime/tempname"}, // leaves: see runtime/outdir
	"compiler":         {"lang/...", "compiler/schema", "compiler/resolve", "compiler/check", "compiler/lower", "compiler/ir", "compiler/rollname"},
	"stdlib":           {},
	"runtime/tensor":   {},
	"runtime/blockio":  {},
	"runtime/...":      {"runtime/tensor", "runtime/blockio", "runtime/tempname", "runtime/outdir", "lang/srcfile", "runtime/pyjson", "compiler/rollname"},
	// JSON as Python reads and writes it: a leaf every runtime package may
	// use for config files and headers.
	"runtime/pyjson": {},

	// ROLL's naming rules (Python fnmatch globs, op lookup, pure names,
	// parallel classes, key prefixes): a leaf every layer may import.
	"compiler/rollname": {},

	// The model of mca_config.json: its values (pyjson), their checks
	// (compiler/ir's MCA rules) and the layout it records (shard).
	"runtime/mcaconfig": {"compiler/ir", "compiler/rollname", "runtime/pyjson", "runtime/ops", "runtime/shard"},
	"runtime/exec":      {"compiler/ir", "compiler/rollname", "lang/token", "lang/srcfile", "runtime/..."},
	// Names of temporary files that record their writer (tempname), and
	// output folders written through a temporary folder and committed
	// (outdir): the one owner of both the runtime's --to and the Python
	// emitter's build -o, so leaves importing nothing of the project but
	// each other, which compiler/pyemit may import without depending on
	// the runtime.
	"runtime/tempname": {},
	"runtime/outdir":   {"runtime/tempname"},
	"cmd/...":          {"..."},
	// The CLI parses flags, calls and prints: of the runtime it sees only
	// exec, which owns every conversion and checkpoint operation.
	"cmd/rolltplc/internal/cli": {"lang/...", "compiler/...", "compiler", "stdlib", "cmd/...", "runtime/exec"},
	"examples":                  {"..."},
	"examples/...":              {"..."},

	// The tests' Python runner (torch cross-checks), for every layer's tests.
	"internal/torchtest": {},
}

func rulesFor(pkg string) ([]string, bool) {
	if r, ok := allowed[pkg]; ok {
		return r, true
	}
	best, bestLen := []string(nil), -1
	for k, r := range allowed {
		if strings.HasSuffix(k, "/...") {
			prefix := strings.TrimSuffix(k, "...")
			if strings.HasPrefix(pkg, prefix) && len(prefix) > bestLen {
				best, bestLen = r, len(prefix)
			}
		}
	}
	return best, bestLen >= 0
}

func permits(rules []string, imp string) bool {
	for _, r := range rules {
		switch {
		case r == "...":
			return true
		case strings.HasSuffix(r, "/..."):
			if strings.HasPrefix(imp, strings.TrimSuffix(r, "...")) {
				return true
			}
		case r == imp:
			return true
		}
	}
	return false
}

// TestImportLayers enforces the import rules between the project's
// packages: the IR imports nothing but lang/token, the Python emitter and
// the runtime never import each other, nothing imports cmd.
func TestImportLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		pkg := strings.TrimPrefix(p.ImportPath, module)
		rules, ok := rulesFor(pkg)
		if !ok {
			t.Errorf("package %s has no import rule; add one to allowed", pkg)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			imp = strings.TrimPrefix(imp, module)
			if !permits(rules, imp) {
				t.Errorf("%s imports %s, which the layering rules forbid", pkg, imp)
			}
		}
	}
	if n < 10 {
		t.Errorf("go list found only %d packages", n)
	}
}

// TestCLIReportsNoDiagnostics: the CLI parses flags, calls and prints; the
// checks that report a diagnostic code (lang/spec.md §11) live in the
// compiler. No non-test file of cmd/rolltplc/internal/cli builds a
// diagnostic (diag.Errorf, diag.Warningf, a diag.Diagnostic literal) or
// names a registered code, as a string or as a lang/diag constant.
func TestCLIReportsNoDiagnostics(t *testing.T) {
	dir := filepath.Join("internal", "cli")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	codes := map[string]bool{}
	for _, c := range diag.Codes() {
		codes[c.Code] = true
	}
	consts := codeConsts(t)
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		diagName := ""
		for _, imp := range f.Imports {
			if imp.Path.Value == `"`+module+`lang/diag"` {
				diagName = "diag"
				if imp.Name != nil {
					diagName = imp.Name.Name
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && x.Name == diagName && diagName != "" {
					switch sel := n.Sel.Name; {
					case sel == "Errorf" || sel == "Warningf" || sel == "Diagnostic":
						t.Errorf("%s: the CLI builds a diagnostic (%s.%s); move the check into the compiler", fset.Position(n.Pos()), x.Name, sel)
					case consts[sel]:
						t.Errorf("%s: the CLI names diagnostic code %s.%s; move the check into the compiler", fset.Position(n.Pos()), x.Name, sel)
					}
				}
			case *ast.BasicLit:
				if s, err := strconv.Unquote(n.Value); err == nil && n.Kind == token.STRING && codes[s] {
					t.Errorf("%s: the CLI names diagnostic code %q; move the check into the compiler", fset.Position(n.Pos()), s)
				}
			}
			return true
		})
	}
}

// codeConsts returns the names of lang/diag's constants naming diagnostic
// codes (the const declarations of lang/diag/codes.go).
func codeConsts(t *testing.T) map[string]bool {
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "..", "lang", "diag", "codes.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, d := range f.Decls {
		if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.CONST {
			for _, spec := range gd.Specs {
				for _, id := range spec.(*ast.ValueSpec).Names {
					out[id.Name] = true
				}
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d code constants in lang/diag/codes.go", len(out))
	}
	return out
}
