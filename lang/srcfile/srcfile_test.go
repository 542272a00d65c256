//go:build unix

package srcfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadFile: a regular file (directly or through a symbolic link) is
// read whole; a FIFO (without a writer: opening it would block), a
// directory and a character device are a *NotRegularError naming the
// file and what it is, returned at once, by ReadFile, ReadFileMax and
// Open alike.
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
	if got, err := ReadFile(filepath.Join(dir, "empty")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %q, %v", got, err)
	}
	read := map[string]func(string) error{
		"ReadFile":    func(n string) error { _, err := ReadFile(n); return err },
		"ReadFileMax": func(n string) error { _, err := ReadFileMax(n, 10); return err },
		"Open": func(n string) error {
			f, _, err := Open(n)
			if err == nil {
				f.Close()
			}
			return err
		},
	}
	tests := []struct{ name, want string }{
		{fifo, fifo + ": a named pipe (FIFO), not a regular file; refusing to read it"},
		{dir, dir + ": a directory, not a regular file"},
		{"/dev/null", "/dev/null: a character device, not a regular file"},
	}
	for fn, f := range read {
		for _, tt := range tests {
			done := make(chan error, 1)
			go func() { done <- f(tt.name) }()
			select {
			case err := <-done:
				var nr *NotRegularError
				if !errors.As(err, &nr) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s(%s) error %v, want a *NotRegularError saying %q", fn, tt.name, err, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s(%s) hangs", fn, tt.name)
			}
		}
	}
}

// TestReadFileMax: a file of at most the limit is read; a larger one is
// an error naming it and its size.
func TestReadFileMax(t *testing.T) {
	reg := filepath.Join(t.TempDir(), "a.json")
	if err := os.WriteFile(reg, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		limit int64
		want  string // the error, or "" for the contents
	}{
		{0, ""},
		{10, ""},
		{9, reg + ": 10 bytes, more than the 9 bytes accepted for this file"},
	} {
		b, err := ReadFileMax(reg, c.limit)
		switch {
		case c.want == "" && (err != nil || string(b) != "0123456789"):
			t.Errorf("limit %d: %q, %v", c.limit, b, err)
		case c.want != "" && (err == nil || err.Error() != c.want):
			t.Errorf("limit %d: error %v, want %q", c.limit, err, c.want)
		}
	}
}
