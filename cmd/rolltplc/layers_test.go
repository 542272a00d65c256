package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
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
	"compiler/vocab": {},
	// The config schemas.
	"compiler/schema":  {"lang/..."},
	"compiler/resolve": {"lang/...", "compiler/schema", "compiler/vocab"},
	"compiler/check":   {"lang/...", "compiler/schema", "compiler/vocab", "compiler/resolve", "compiler/ir", "compiler/rollname"},
	"compiler/lower":   {"lang/...", "compiler/schema", "compiler/vocab", "compiler/resolve", "compiler/check", "compiler/ir", "compiler/rollname"},
	"compiler/pyemit":  {"compiler/ir", "compiler/rollname", "lang/token", "lang/diag", "runtime/outdir", "runtime/tempname"}, // leaves: see runtime/outdir
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
