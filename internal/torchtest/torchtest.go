// Package torchtest finds the Python interpreters the runtime's torch
// cross-checks run under, runs each cross-check once per interpreter, and
// runs their Python scripts (Command) in one long-lived process per
// interpreter and test binary, which imports torch once, instead of a new
// process per script (importing torch costs about a second and a half).
// The process ends when the test binary does (its input closes). Setting
// ROLLTPL_TORCHTEST_FRESH runs every script in a process of its own.
//
// The interpreters are listed in ROLLTPL_PYTHONS, separated like PATH
// (":" on Unix); each entry is one executable that behaves as python3
// (for a chroot, a wrapper script such as .ci/chroot-python). Without
// ROLLTPL_PYTHONS, ROLLTPL_PYTHON names one interpreter, and without
// either Debian's /usr/bin/python3 with python3-torch is used. CI lists
// two, so that the files we write are loaded both by torch 1.13 and by a
// torch 2.x, whose torch.load defaults to weights_only=True.
//
// An interpreter that cannot import torch (and the modules a test names)
// skips its subtest, or fails it when the environment variable CI is set,
// so that CI never passes a cross-check it did not run.
package torchtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// DefaultPython is the interpreter used when neither ROLLTPL_PYTHONS nor
// ROLLTPL_PYTHON is set.
const DefaultPython = "/usr/bin/python3"

var (
	mu     sync.Mutex
	probed = map[string]probe{} // "python\x00modules" -> outcome
)

type probe struct {
	version string // torch.__version__
	err     error
}

// Interpreters returns the interpreters listed in ROLLTPL_PYTHONS, or
// ROLLTPL_PYTHON, or DefaultPython.
func Interpreters() []string {
	var pys []string
	for _, p := range filepath.SplitList(os.Getenv("ROLLTPL_PYTHONS")) {
		if p = strings.TrimSpace(p); p != "" {
			pys = append(pys, p)
		}
	}
	if len(pys) > 0 {
		return pys
	}
	if py := os.Getenv("ROLLTPL_PYTHON"); py != "" {
		return []string{py}
	}
	return []string{DefaultPython}
}

// Run runs f once per interpreter (see Interpreters), each in a subtest
// named by the interpreter's torch version ("torch-2.6.0"), after checking
// that the interpreter imports torch and the modules named. When it does
// not, that subtest is skipped, or fails when CI is set.
func Run(t *testing.T, f func(t *testing.T, python string), modules ...string) {
	t.Helper()
	for _, py := range Interpreters() {
		version, err := Check(py, modules...)
		name := "torch-" + version
		if err != nil {
			name = "python-" + filepath.Base(py)
		}
		t.Run(name, func(t *testing.T) {
			if err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("CI is set and the torch cross-check cannot run: %v", err)
				}
				t.Skipf("%v; set CI to make this a failure", err)
			}
			t.Logf("python %s, torch %s", py, version)
			f(t, py)
		})
	}
}

// Check reports the torch version py imports, or why py does not import
// torch and modules (the answer is cached per process).
func Check(py string, modules ...string) (version string, err error) {
	mods := append([]string{"torch"}, modules...)
	key := py + "\x00" + strings.Join(mods, ",")
	mu.Lock()
	defer mu.Unlock()
	if p, ok := probed[key]; ok {
		return p.version, p.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	script := "import " + strings.Join(mods, ", ") + "; print(torch.__version__)"
	cmd := CommandContext(ctx, py, "-c", script)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); err == nil {
		version = strings.TrimSpace(lines[len(lines)-1]) // the last line: an import may print
	}
	if err == nil && version == "" {
		err = fmt.Errorf("printed no torch version")
	}
	if err != nil {
		err = fmt.Errorf("%s cannot import %s (%v): %s", py, strings.Join(mods, ", "), err, strings.TrimSpace(stderr.String()))
		version = ""
	}
	probed[key] = probe{version, err}
	return version, err
}
