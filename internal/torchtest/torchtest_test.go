package torchtest

import (
	"os"
	"path/filepath"
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

func TestRunEachInterpreter(t *testing.T) {
	a, _ := fakePython(t, "print('warning: something')\n__version__ = '1.13.0a0'\n")
	b, _ := fakePython(t, "__version__ = '2.6.0+debian'\n")
	t.Setenv("ROLLTPL_PYTHONS", a+":"+b)
	var ran []string
	Run(t, func(t *testing.T, python string) {
		ran = append(ran, t.Name()+" "+python)
	}, "numpy")
	want := []string{"TestRunEachInterpreter/torch-1.13.0a0 " + a, "TestRunEachInterpreter/torch-2.6.0+debian " + b}
	if diff := cmp.Diff(want, ran); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

func TestCheckBroken(t *testing.T) {
	exit := filepath.Join(t.TempDir(), "python3")
	write(t, exit, "#!/bin/sh\necho oops >&2\nexit 1\n")
	if err := os.Chmod(exit, 0o755); err != nil {
		t.Fatal(err)
	}
	noTorch, _ := fakePython(t, "raise ImportError('oops')\n")
	silent, _ := fakePython(t, "__version__ = ''\n")
	for _, c := range []struct{ name, py, says string }{
		{"exit", exit, "oops"},
		{"no-torch", noTorch, "ImportError: oops"},
		{"silent", silent, "printed no torch version"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := Check(c.py, "numpy")
			if err == nil || v != "" {
				t.Fatalf("Check = %q, %v; want an error", v, err)
			}
			if want := c.py + " cannot import torch, numpy"; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("error %q does not start with %q or lacks %q", err, want, c.says)
			}
		})
	}
	// Without CI, Run skips the subtest of an interpreter that fails.
	t.Setenv("CI", "")
	t.Setenv("ROLLTPL_PYTHONS", exit)
	Run(t, func(t *testing.T, python string) { t.Errorf("ran under %s", python) })
}
