package srcfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadFile: a regular file (directly or through a symbolic link) is
// read whole; a FIFO (without a writer: opening it would block), a
// directory and a character device are errors naming the file and what it
// is, returned at once.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "a.rolltpl")
	data := strings.Repeat("template t {}\n", 1000)
	if err := os.WriteFile(reg, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.rolltpl")
	if err := os.Symlink(reg, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.rolltpl")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	for _, name := range []string{reg, link} {
		got, err := ReadFile(name)
		if err != nil || string(got) != data {
			t.Errorf("ReadFile(%s) = %d bytes, %v; want the %d bytes", name, len(got), err, len(data))
		}
	}
	if got, err := ReadFile(filepath.Join(dir, "empty")); err == nil {
		t.Errorf("missing file read: %q", got)
	}
	tests := []struct{ name, want string }{
		{fifo, "not a regular file (a named pipe)"},
		{dir, "not a regular file (a directory)"},
		{"/dev/null", "not a regular file (a character device)"},
	}
	for _, tt := range tests {
		done := make(chan error, 1)
		go func() {
			_, err := ReadFile(tt.name)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tt.name) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ReadFile(%s) error %v, want one naming the file and %q", tt.name, err, tt.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("ReadFile(%s) hangs", tt.name)
		}
	}
}
