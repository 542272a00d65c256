// Package torchtest finds the Python interpreter the runtime's torch
// cross-checks run: ROLLTPL_PYTHON, or Debian's /usr/bin/python3 with
// python3-torch. Tests that need it are skipped when it cannot import
// torch, and fail instead when the environment variable CI is set, so that
// CI never passes a cross-check it did not run.
package torchtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultPython is the interpreter used when ROLLTPL_PYTHON is not set.
const DefaultPython = "/usr/bin/python3"

var (
	mu     sync.Mutex
	probed = map[string]error{} // "python\x00modules" -> import error
)

// Interpreter returns ROLLTPL_PYTHON, or DefaultPython.
func Interpreter() string {
	if py := os.Getenv("ROLLTPL_PYTHON"); py != "" {
		return py
	}
	return DefaultPython
}

// Python returns the interpreter after checking, once per process, that
// it imports torch and the other modules named. If it does not, the test
// is skipped, or fails when CI is set.
func Python(t testing.TB, modules ...string) string {
	t.Helper()
	py := Interpreter()
	if err := Check(py, modules...); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and the torch cross-check cannot run: %v", err)
		}
		t.Skipf("%v; set CI to make this a failure", err)
	}
	return py
}

// Check reports whether py imports torch and modules (the answer is
// cached per process).
func Check(py string, modules ...string) error {
	mods := append([]string{"torch"}, modules...)
	key := py + "\x00" + strings.Join(mods, ",")
	mu.Lock()
	defer mu.Unlock()
	if err, ok := probed[key]; ok {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", "import "+strings.Join(mods, ", ")).CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%s cannot import %s (%v): %s", py, strings.Join(mods, ", "), err, strings.TrimSpace(string(out)))
	}
	probed[key] = err
	return err
}
