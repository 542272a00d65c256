package exec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestComparerWrite: the comparer reads the original in buffer-sized
// pieces at the tensor's offset and reports the first differing byte,
// whatever the sizes of the writes and of its buffer.
func TestComparerWrite(t *testing.T) {
	orig := make([]byte, 100)
	for i := range orig {
		orig[i] = byte(i * 7)
	}
	path := filepath.Join(t.TempDir(), "orig.bin")
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const off, size = 13, 60
	for _, tc := range []struct {
		name   string
		flip   int // byte of the tensor to change, or -1
		writes []int
		want   int64
	}{
		{"equal", -1, []int{60}, -1},
		{"equal in pieces", -1, []int{1, 6, 7, 20, 26}, -1},
		{"first byte", 0, []int{60}, 0},
		{"last byte", 59, []int{30, 30}, 59},
		{"across buffers", 23, []int{11, 49}, 23},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := append([]byte(nil), orig[off:off+size]...)
			if tc.flip >= 0 {
				data[tc.flip] ^= 0x40
			}
			c := &comparer{f: f, off: off, diffAt: -1, buf: make([]byte, 7)}
			for _, n := range tc.writes {
				k, err := c.Write(data[:n])
				if err != nil || k != n {
					t.Fatalf("Write = %d, %v", k, err)
				}
				data = data[n:]
			}
			if diff := cmp.Diff(tc.want, c.diffAt); diff != "" {
				t.Errorf("first difference (-want +got):\n%s", diff)
			}
		})
	}
	// An original shorter than the tensor is an error naming the file.
	c := &comparer{f: f, off: 90, diffAt: -1}
	if _, err := c.Write(make([]byte, 20)); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("short original: %v", err)
	}
}
