package torchtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestInterpreters(t *testing.T) {
	for _, c := range []struct {
		name, pythons, python string
		want                  []string
	}{
		{"default", "", "", []string{DefaultPython}},
		{"one", "", "/opt/py", []string{"/opt/py"}},
		{"list", "/usr/bin/python3:/ci/chroot-python", "/opt/py", []string{"/usr/bin/python3", "/ci/chroot-python"}},
		{"blanks", " /a ::/b: ", "", []string{"/a", "/b"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("ROLLTPL_PYTHONS", c.pythons)
			t.Setenv("ROLLTPL_PYTHON", c.python)
			if diff := cmp.Diff(c.want, Interpreters()); diff != "" {
				t.Errorf("Interpreters() (-want +got):\n%s", diff)
			}
		})
	}
}

// fakePython writes a shell script standing in for python3: it prints
// out (a warning line, then the version) and exits with code.
func fakePython(t *testing.T, name, out string, code int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	script := "#!/bin/sh\ncat <<'EOF'\n" + out + "EOF\necho oops >&2\nexit " + strconv.Itoa(code) + "\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunEachInterpreter(t *testing.T) {
	a := fakePython(t, "py-a", "warning: something\n1.13.0a0\n", 0)
	b := fakePython(t, "py-b", "2.6.0+debian\n", 0)
	t.Setenv("ROLLTPL_PYTHONS", a+":"+b)
	var ran []string
	Run(t, func(t *testing.T, python string) {
		ran = append(ran, t.Name()+" "+filepath.Base(python))
	}, "numpy")
	want := []string{"TestRunEachInterpreter/torch-1.13.0a0 py-a", "TestRunEachInterpreter/torch-2.6.0+debian py-b"}
	if diff := cmp.Diff(want, ran); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

func TestCheckBroken(t *testing.T) {
	for _, c := range []struct {
		name, out string
		code      int
	}{
		{"exit", "", 1},
		{"silent", "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			py := fakePython(t, "py-"+c.name, c.out, c.code)
			v, err := Check(py, "numpy")
			if err == nil || v != "" {
				t.Fatalf("Check = %q, %v; want an error", v, err)
			}
			if want := py + " cannot import torch, numpy"; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
	// Without CI, Run skips the subtest of an interpreter that fails.
	t.Setenv("CI", "")
	t.Setenv("ROLLTPL_PYTHONS", fakePython(t, "py-broken", "", 1))
	Run(t, func(t *testing.T, python string) { t.Errorf("ran under %s", python) })
}
