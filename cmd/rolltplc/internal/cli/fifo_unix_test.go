//go:build unix

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestConfigFIFOs: a config.json or mca_config.json that is a FIFO makes
// convert, check --checkpoint and verify fail at once naming it, never
// block until something writes to the pipe; an MCA checkpoint whose
// mca_config.json is a FIFO is still taken for an MCA checkpoint (the
// error names mca_config.json, not a missing config.json).
func TestConfigFIFOs(t *testing.T) {
	dir := t.TempDir()
	hf, mca := filepath.Join(dir, "hf"), filepath.Join(dir, "mca")
	writeLlama(t, hf)
	if code, _, stderr := run(t, "", "convert", "--quiet", "--from", hf, "--to", mca); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	fifo := func(p string) {
		t.Helper()
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Skip("mkfifo:", err)
		}
	}
	hfCfg, mcaCfg := filepath.Join(hf, "config.json"), filepath.Join(mca, "mca_config.json")
	fifo(hfCfg)
	fifo(mcaCfg)
	for _, tc := range []struct {
		name string
		args []string
		want string // the FIFO the error names
	}{
		{"convert HF", []string{"convert", "--quiet", "--from", hf, "--to", filepath.Join(dir, "o1")}, hfCfg},
		{"check --checkpoint HF", []string{"check", "--checkpoint", hf}, hfCfg},
		{"verify", []string{"verify", "--quiet", hf}, hfCfg},
		{"convert MCA", []string{"convert", "--quiet", "--from", mca, "--to", filepath.Join(dir, "o2")}, mcaCfg},
		{"convert --to-hf", []string{"convert", "--quiet", "--to-hf", "--from", mca, "--to", filepath.Join(dir, "o3")}, mcaCfg},
		{"check --checkpoint MCA", []string{"check", "--checkpoint", mca}, mcaCfg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				code   int
				stderr string
			}
			done := make(chan result, 1)
			go func() {
				code, _, stderr := run(t, "", tc.args...)
				done <- result{code, stderr}
			}()
			select {
			case r := <-done:
				if r.code != ExitError || !strings.Contains(r.stderr, tc.want+": a named pipe (FIFO), not a regular file") {
					t.Errorf("exit %d, want an error naming %s:\n%s", r.code, tc.want, r.stderr)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("blocked on a FIFO")
			}
		})
	}
}
