package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	fmtMessy     = "config   a{\nx->y\n   hidden_size -> hidden_size\n}\n\n\n\nmca m { use rope }\n"
	fmtFormatted = "config a {\n    x           -> y\n    hidden_size -> hidden_size\n}\n\nmca m { use rope }\n"
	fmtBroken    = "config a {\n    x -> \n}\n"
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

func TestFmtStdin(t *testing.T) {
	code, stdout, stderr := fmtRun(t, fmtMessy)
	if code != ExitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if diff := cmp.Diff(fmtFormatted, stdout); diff != "" {
		t.Errorf("output mismatch (-want +got):\n%s", diff)
	}
}

func TestFmtStdinList(t *testing.T) {
	for in, want := range map[string]string{fmtMessy: "<stdin>\n", fmtFormatted: ""} {
		code, stdout, stderr := fmtRun(t, in, "-l")
		if code != ExitOK || stderr != "" || stdout != want {
			t.Errorf("fmt -l <%q: exit %d, stdout %q, stderr %q; want 0, %q, \"\"", in, code, stdout, stderr, want)
		}
	}
}

func TestFmtStdinWrite(t *testing.T) {
	code, stdout, stderr := fmtRun(t, fmtMessy, "-w")
	if code != ExitUsage || stdout != "" || !strings.Contains(stderr, "cannot use -w with standard input") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestFmtStdinSyntaxError(t *testing.T) {
	code, stdout, stderr := fmtRun(t, fmtBroken)
	if code != ExitError || stdout != "" {
		t.Errorf("exit %d, stdout %q; want %d and no output", code, stdout, ExitError)
	}
	want := `<stdin>:3:1: error: Syntax error [syntax-error]
 3 | }
   | ^
`
	if !strings.HasPrefix(stderr, want) {
		t.Errorf("stderr does not start with the diagnostic:\n%s\nwant prefix:\n%s", stderr, want)
	}
}

func TestFmtList(t *testing.T) {
	dir := fmtWriteFiles(t, map[string]string{
		"a.rolltpl":          fmtMessy,
		"b.rolltpl":          fmtFormatted,
		"sub/c.rolltpl":      fmtMessy,
		"sub/notes.txt":      fmtMessy,
		"sub/deep/d.rolltpl": fmtFormatted,
	})
	code, stdout, stderr := fmtRun(t, "", "-l", dir)
	if code != ExitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := filepath.Join(dir, "a.rolltpl") + "\n" + filepath.Join(dir, "sub", "c.rolltpl") + "\n"
	if diff := cmp.Diff(want, stdout); diff != "" {
		t.Errorf("listed files mismatch (-want +got):\n%s", diff)
	}
	if got := fmtReadFile(t, filepath.Join(dir, "a.rolltpl")); got != fmtMessy {
		t.Errorf("-l changed a file: %q", got)
	}
}

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

func TestFmtListAndWrite(t *testing.T) {
	dir := fmtWriteFiles(t, map[string]string{"a.rolltpl": fmtMessy})
	a := filepath.Join(dir, "a.rolltpl")
	code, stdout, stderr := fmtRun(t, "", "-l", "-w", a)
	if code != ExitOK || stdout != a+"\n" || stderr != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := fmtReadFile(t, a); got != fmtFormatted {
		t.Errorf("a.rolltpl = %q, want %q", got, fmtFormatted)
	}
}

func TestFmtFilesToStdout(t *testing.T) {
	dir := fmtWriteFiles(t, map[string]string{"a.rolltpl": fmtMessy, "b.rolltpl": "import \"x\"\n"})
	code, stdout, stderr := fmtRun(t, "", filepath.Join(dir, "a.rolltpl"), filepath.Join(dir, "b.rolltpl"))
	if code != ExitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if diff := cmp.Diff(fmtFormatted+"import \"x\"\n", stdout); diff != "" {
		t.Errorf("output mismatch (-want +got):\n%s", diff)
	}
	if got := fmtReadFile(t, filepath.Join(dir, "a.rolltpl")); got != fmtMessy {
		t.Errorf("printing changed the file: %q", got)
	}
}

func TestFmtErrors(t *testing.T) {
	dir := fmtWriteFiles(t, map[string]string{
		"a.rolltpl":   fmtMessy,
		"bad.rolltpl": fmtBroken,
	})
	missing := filepath.Join(dir, "missing.rolltpl")
	code, stdout, stderr := fmtRun(t, "", "-w", "-l", missing, dir)
	if code != ExitError {
		t.Errorf("exit %d, want %d", code, ExitError)
	}
	// The good file is still listed and rewritten; the bad one is left alone.
	if want := filepath.Join(dir, "a.rolltpl") + "\n"; stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}
	if got := fmtReadFile(t, filepath.Join(dir, "a.rolltpl")); got != fmtFormatted {
		t.Errorf("a.rolltpl = %q, want it formatted", got)
	}
	if got := fmtReadFile(t, filepath.Join(dir, "bad.rolltpl")); got != fmtBroken {
		t.Errorf("bad.rolltpl changed: %q", got)
	}
	for _, want := range []string{
		"missing.rolltpl: no such file or directory",
		"bad.rolltpl:3:1: error: Syntax error [syntax-error]",
		" 3 | }\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestFmtUsage(t *testing.T) {
	if code, stdout, _ := fmtRun(t, "", "--bogus"); code != ExitUsage || stdout != "" {
		t.Errorf("fmt --bogus: exit %d, stdout %q; want %d and no output", code, stdout, ExitUsage)
	}
	var out bytes.Buffer
	if code := Run([]string{"help", "fmt"}, strings.NewReader(""), &out, &out); code != ExitOK {
		t.Errorf("help fmt: exit %d", code)
	}
	for _, want := range []string{"-l, --list", "-w, --write"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help fmt lacks %q:\n%s", want, out.String())
		}
	}
}
