package pyemit

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// checkSupport, run by python3 with a folder, compiles every .py file in
// it and lists, per file, the global names its code reads that neither the
// file nor Python's builtins define (symtable's implicit globals), one
// "file: name" per line.
const checkSupport = `
import builtins, os, py_compile, symtable, sys

def used_globals(table, out):
    for sym in table.get_symbols():
        if sym.is_referenced() and (sym.is_global() and not sym.is_declared_global()):
            out.add(sym.get_name())
    for child in table.get_children():
        used_globals(child, out)

folder = sys.argv[1]
for name in sorted(os.listdir(folder)):
    if not name.endswith(".py"):
        continue
    path = os.path.join(folder, name)
    py_compile.compile(path, cfile=path + "c", doraise=True)
    with open(path) as f:
        top = symtable.symtable(f.read(), name, "exec")
    defined = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    used = set()
    used_globals(top, used)
    for n in sorted(used - defined - set(dir(builtins))):
        print(f"{name}: {n}")
`

// supportImports are the names the support module's import block (written
// by emitSupport) and ir.PythonPrelude give the parts.
var supportImports = map[string][]string{
	"base.py":       {"dist_converter"},
	"steps.py":      {"StackedTensors", "contextmanager", "torch"},
	"key_prefix.py": {"Template"},
	"generated.py":  {"_rt_field"},
	"mtp.py":        nil,
}

// TestSupportFiles: every embedded part of the support module is Python
// that compiles (py_compile) and reads no global name but its own, the
// builtins and what the module imports for it; and each is documented by
// a leading comment that is not emitted.
func TestSupportFiles(t *testing.T) {
	entries, err := fs.ReadDir(supportFiles, "support")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
		src, err := supportFiles.ReadFile("support/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(src), "# ") {
			t.Errorf("%s: no leading comment saying what the part is", e.Name())
		}
		part := supportPart(strings.TrimSuffix(e.Name(), ".py"))
		if strings.HasPrefix(strings.TrimLeft(part, "\n"), "#") || !strings.HasPrefix(part, "\n\n") || strings.HasPrefix(part, "\n\n\n") {
			t.Errorf("%s: emitted part does not start with two blank lines and code:\n%s", e.Name(), part[:min(len(part), 200)])
		}
		if _, ok := supportImports[e.Name()]; !ok {
			t.Errorf("%s: not in supportImports", e.Name())
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != len(supportImports) {
		t.Errorf("embedded parts %v, want those of supportImports", got)
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is required in CI")
		}
		t.Skip("python3 not found")
	}
	out, err := exec.Command(py, "-c", checkSupport, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		file, name, _ := strings.Cut(line, ": ")
		ok := false
		for _, n := range supportImports[file] {
			ok = ok || n == name
		}
		if !ok {
			t.Errorf("%s reads %s, which neither it nor the module's imports define", file, name)
		}
	}
}

// TestStripLeadingComment pins what of a part's head is not emitted.
func TestStripLeadingComment(t *testing.T) {
	for in, want := range map[string]string{
		"# a\n# b\n\ndef f():\n    pass\n": "def f():\n    pass\n",
		"# a\ndef f(): pass\n":             "def f(): pass\n",
		"def f(): pass\n# c\n":             "def f(): pass\n# c\n",
		"\ndef f(): pass\n":                "\ndef f(): pass\n",
		"# only":                           "",
	} {
		if got := stripLeadingComment(in); got != want {
			t.Errorf("stripLeadingComment(%q) = %q, want %q", in, got, want)
		}
	}
}
