//go:build unix

package cli

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCheckHFConfigFIFO: a config.json that is a FIFO is refused at once,
// naming it, instead of blocking until something writes to it.
func TestCheckHFConfigFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.json")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, _, stderr := run(t, "", "check", "--hf-config", p)
		done <- result{code, stderr}
	}()
	select {
	case r := <-done:
		if r.code != ExitError || !strings.Contains(r.stderr, p+": a named pipe (FIFO), not a regular file") {
			t.Errorf("exit %d:\n%s", r.code, r.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("check --hf-config blocked on a FIFO")
	}
}
