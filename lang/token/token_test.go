package token

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPosAndUTF16(t *testing.T) {
	// "é" is 2 bytes / 1 UTF-16 unit; "😀" is 4 bytes / 2 UTF-16 units.
	src := []byte("ab\n# é😀 x\r\nlast")
	f := NewFile("f.rolltpl", src)
	type row struct {
		Off          int
		Line, Column int
		UTF16        int
	}
	var got []row
	for _, off := range []int{0, 2, 3, 5, 7, 11, 12, 14, 18, 100} {
		p := f.Pos(off)
		got = append(got, row{p.Offset, p.Line, p.Column, f.UTF16Column(off)})
	}
	want := []row{
		{0, 1, 1, 0}, {2, 1, 3, 2}, {3, 2, 1, 0}, {5, 2, 3, 2}, {7, 2, 4, 3},
		{11, 2, 5, 5}, {12, 2, 6, 6}, {14, 2, 8, 8}, {18, 3, 4, 3}, {19, 3, 5, 4},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("positions mismatch (-want +got):\n%s", diff)
	}
	for _, r := range append(want[:7:7], want[8:]...) {
		if off := f.OffsetUTF16(r.Line-1, r.UTF16); off != r.Off {
			t.Errorf("OffsetUTF16(%d, %d) = %d, want %d", r.Line-1, r.UTF16, off, r.Off)
		}
	}
	if got := f.Line(2); got != "# é😀 x" {
		t.Errorf("Line(2) = %q", got)
	}
	if f.LineCount() != 3 {
		t.Errorf("LineCount = %d", f.LineCount())
	}
}
