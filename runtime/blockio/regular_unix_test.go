//go:build unix

package blockio

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadRegularRefusesFIFO: a FIFO without a writer is refused at once
// (os.ReadFile would block forever), naming it; a regular file, also
// through a symbolic link, reads; a file over the limit is refused.
func TestReadRegularRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "config.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ReadRegular(fifo, 0)
		done <- err
	}()
	select {
	case err := <-done:
		var nr *NotRegularError
		if !errors.As(err, &nr) || !strings.Contains(err.Error(), fifo+": a named pipe (FIFO)") {
			t.Errorf("error %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadRegular blocked on a FIFO")
	}
	if _, err := OpenRegular(dir); err == nil || !strings.Contains(err.Error(), "a directory") {
		t.Errorf("directory: %v", err)
	}
	reg := filepath.Join(dir, "a.json")
	os.WriteFile(reg, []byte("0123456789"), 0o644)
	link := filepath.Join(dir, "link.json")
	os.Symlink(reg, link)
	for _, p := range []string{reg, link} {
		if b, err := ReadRegular(p, 10); err != nil || string(b) != "0123456789" {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
	if _, err := ReadRegular(reg, 9); err == nil || !strings.Contains(err.Error(), "10 bytes, more than the 9") {
		t.Errorf("limit: %v", err)
	}
}
