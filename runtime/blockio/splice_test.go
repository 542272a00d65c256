package blockio

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestCopyToFile copies several blocks to real files, after bytes already
// written by the caller, and checks the file holds them all in order:
// a plain file (spliced on Linux) and one opened O_APPEND, which splice
// refuses, so the writer falls back to write(2) mid-copy.
func TestCopyToFile(t *testing.T) {
	src := make([]byte, 3_000_000)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	for _, flag := range []int{0, os.O_APPEND} {
		path := filepath.Join(t.TempDir(), "out.bin")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|flag, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("head")); err != nil {
			t.Fatal(err)
		}
		p := &Pipe{Block: 256 << 10, Buffers: 3}
		n, err := p.Copy(f, int64(len(src)), func(b []byte, off int64) error {
			copy(b, src[off:])
			return nil
		}, nil)
		if err != nil || n != int64(len(src)) {
			t.Fatalf("flag %#x: %d bytes, %v", flag, n, err)
		}
		if _, err := f.Write([]byte("tail")); err != nil {
			t.Fatal(err)
		}
		f.Close()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if want := append(append([]byte("head"), src...), "tail"...); !bytes.Equal(got, want) {
			t.Fatalf("flag %#x: the file differs (%d bytes, want %d)", flag, len(got), len(want))
		}
	}
}
