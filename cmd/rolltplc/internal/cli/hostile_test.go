package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFmtWriteSymlink: `fmt -w` on a symbolic link (and on a folder
// holding one) formats the file it points to, keeps its mode, and leaves
// the link a link.
func TestFmtWriteSymlink(t *testing.T) {
	dir := fmtWriteFiles(t, map[string]string{"real/a.rolltpl": fmtMessy})
	target := filepath.Join(dir, "real", "a.rolltpl")
	if err := os.Chmod(target, 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.rolltpl")
	if err := os.Symlink(filepath.Join("real", "a.rolltpl"), link); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := fmtRun(t, "", "-w", link)
	if code != ExitOK || stdout != "" || stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("%s is no longer a symbolic link (%v, %v)", link, st.Mode(), err)
	}
	if got := fmtReadFile(t, target); got != fmtFormatted {
		t.Errorf("target after -w = %q, want %q", got, fmtFormatted)
	}
	if st, _ := os.Stat(target); st.Mode().Perm() != 0o640 {
		t.Errorf("target mode %v, want 0640", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left in the link's folder: %s", e.Name())
		}
	}
}

// withTimeout runs f and fails the test if it does not return in time.
func withTimeout(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s hangs", what)
	}
}

// TestFIFOInputs: a FIFO given as a template, as an import, to fmt or to
// schema infer is an error naming it (--hf-config: TestCheckHFConfigFIFO), at once (opening one blocks until a
// writer comes: they hung).
func TestFIFOInputs(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.rolltpl")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	importer := filepath.Join(dir, "imp.rolltpl")
	if err := os.WriteFile(importer, []byte("import \"pipe\"\n\ntemplate t { layer_prefix = \"x\" }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string // besides the FIFO's path and "named pipe"
	}{
		{"check", []string{"check", fifo}, "not a regular file"},
		{"import", []string{"check", importer}, "The import names " + fifo + ", which cannot be read"},
		{"fmt", []string{"fmt", fifo}, "not a regular file"},
		{"schema infer", []string{"schema", "infer", fifo}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			var stderr string
			withTimeout(t, strings.Join(tt.args, " "), func() { code, _, stderr = run(t, "", tt.args...) })
			for _, want := range []string{fifo, "named pipe", tt.want} {
				if code != ExitError || !strings.Contains(stderr, want) {
					t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, ExitError, want)
				}
			}
		})
	}
}

// TestDeepNesting: 100 000 nested parentheses are one nesting-too-deep
// error in check, fmt and build (they overflowed the stack).
func TestDeepNesting(t *testing.T) {
	src := "template t {\n    layer_prefix = " + strings.Repeat("(", 100000) + "\"x\"" + strings.Repeat(")", 100000) + "\n}\n"
	dir := fmtWriteFiles(t, map[string]string{"deep.rolltpl": src})
	path := filepath.Join(dir, "deep.rolltpl")
	for _, args := range [][]string{{"check", path}, {"fmt", path}, {"build", "-o", filepath.Join(dir, "out"), path}} {
		code, _, stderr := run(t, "", args...)
		if code != ExitError || !strings.Contains(stderr, "deep.rolltpl:2:") || !strings.Contains(stderr, "[nesting-too-deep]") {
			t.Errorf("%s: exit %d, stderr %.500q; want a nesting-too-deep error on line 2", args[0], code, stderr)
		}
	}
}

// TestBOMInput: a file starting with a byte order mark checks like one
// without, and fmt drops the mark.
func TestBOMInput(t *testing.T) {
	const messy, formatted = "template t {\nlayer_prefix =   \"x\"\n}\n", "template t {\n    layer_prefix = \"x\"\n}\n"
	dir := fmtWriteFiles(t, map[string]string{"bom.rolltpl": "\ufeff" + messy, "bad.rolltpl": "\ufefftemplate t { layer_prefix = 1 + }\n"})
	path := filepath.Join(dir, "bom.rolltpl")
	if code, _, stderr := run(t, "", "check", path); code != ExitOK {
		t.Errorf("check: exit %d, stderr %s", code, stderr)
	}
	if code, stdout, stderr := fmtRun(t, "", path); code != ExitOK || stdout != formatted {
		t.Errorf("fmt: exit %d, stdout %q, stderr %s; want %q", code, stdout, stderr, formatted)
	}
	// Columns on the first line count from after the mark, carets included.
	_, _, stderr := run(t, "", "check", filepath.Join(dir, "bad.rolltpl"))
	want := "bad.rolltpl:1:31: error: Syntax error [syntax-error]\n 1 | template t { layer_prefix = 1 + }\n   |                               ^\n"
	if !strings.Contains(stderr, want) {
		t.Errorf("check of a file with a syntax error after a BOM:\n%s\nwant:\n%s", stderr, want)
	}
}
