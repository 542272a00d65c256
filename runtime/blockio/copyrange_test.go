package blockio

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCopyRange copies unaligned ranges of a file after bytes already
// written to the destination, and a range past the end of the source.
func TestCopyRange(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 3<<20+123)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	srcPath := filepath.Join(dir, "src")
	if err := os.WriteFile(srcPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := dst.Write([]byte("head")); err != nil {
		t.Fatal(err)
	}
	want := []byte("head")
	for _, r := range [][2]int64{{64, 2<<20 + 5}, {3, 17}, {0, 0}, {1 << 20, 1<<20 + 99}} {
		n, ok, err := CopyRange(dst, src, r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		if !ok { // no copy_file_range here: the caller copies
			if n != 0 {
				t.Fatalf("CopyRange declined after writing %d bytes", n)
			}
			t.Skip("copy_file_range is not available")
		}
		if n != r[1] {
			t.Fatalf("CopyRange(%d, %d) wrote %d bytes", r[0], r[1], n)
		}
		want = append(want, data[r[0]:r[0]+r[1]]...)
	}
	if pos, _ := dst.Seek(0, io.SeekCurrent); pos != int64(len(want)) {
		t.Fatalf("destination offset %d, want %d", pos, len(want))
	}
	got, err := os.ReadFile(dst.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("copied bytes differ from the source ranges")
	}
	_, _, err = CopyRange(dst, src, int64(len(data))-10, 20)
	if err == nil || !strings.Contains(err.Error(), "shorter than expected") || !strings.Contains(err.Error(), srcPath) {
		t.Fatalf("copy past the end: %v, want an error naming %s", err, srcPath)
	}
}
