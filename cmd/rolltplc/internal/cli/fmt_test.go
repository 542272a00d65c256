package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	fmtMessy     = "config   a{\nx->y\n   hidden_size -> hidden_size\n}\n\n\n\nmca m { use rope }\n"
	fmtFormatted = "config a {\n    x           -> y\n    hidden_size -> hidden_size\n}\n\nmca m { use rope }\n"
)

func fmtRun(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(append([]string{"fmt"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func fmtWriteFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func fmtReadFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// The behaviour of fmt (stdin, -l, -w, -d, --check, errors, usage) is
// tested by testdata/script/fmt.txtar; TestFmtWrite checks what a script
// cannot see: -w keeps a file's permissions and leaves no temporary file.
func TestFmtWrite(t *testing.T) {
	dir := fmtWriteFiles(t, map[string]string{
		"a.rolltpl":     fmtMessy,
		"b.rolltpl":     fmtFormatted,
		"sub/c.rolltpl": fmtMessy,
	})
	a := filepath.Join(dir, "a.rolltpl")
	if err := os.Chmod(a, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := fmtRun(t, "", "-w", a, filepath.Join(dir, "sub"))
	if code != ExitOK || stdout != "" || stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, name := range []string{"a.rolltpl", "b.rolltpl", "sub/c.rolltpl"} {
		if got := fmtReadFile(t, filepath.Join(dir, name)); got != fmtFormatted {
			t.Errorf("%s after -w = %q, want %q", name, got, fmtFormatted)
		}
	}
	st, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("-w changed the permissions of a.rolltpl to %v", st.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
	// Now everything is formatted.
	code, stdout, stderr = fmtRun(t, "", "-l", "-w", dir)
	if code != ExitOK || stdout != "" || stderr != "" {
		t.Errorf("second run: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
