package token

import (
	"strings"
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

// naiveColumns counts the 1-based rune column and 0-based UTF-16 column of
// off from the start of its line, the definition the checkpoints of long
// lines must agree with.
func naiveColumns(src []byte, lineStart, off int) (int, int) {
	col16 := 0
	for _, r := range string(src[lineStart:off]) {
		col16++
		if r >= 0x10000 {
			col16++
		}
	}
	return len([]rune(string(src[lineStart:off]))) + 1, col16
}

// TestLongLineColumns checks the columns of every offset of a file with
// lines far longer than the checkpoint stride, multi-byte runes (some cut
// by a checkpoint boundary) and an invalid byte, against counting from the
// line start.
func TestLongLineColumns(t *testing.T) {
	pieces := [][]byte{[]byte("a"), []byte("é"), []byte("😀"), {0xff}, {0x9f}, []byte("😀")[:2]}
	var b []byte
	for i := 0; i < 3000; i++ {
		b = append(b, pieces[i*7%len(pieces)]...)
	}
	src := append(append(append([]byte{}, b...), '\n'), b...)
	second := len(b) + 1
	f := NewFile("long.rolltpl", src)
	if len(f.marks) == 0 {
		t.Fatal("no checkpoints for a long line")
	}
	for off := 0; off <= len(src); off++ {
		start := 0
		line := 1
		if off >= second {
			start, line = second, 2
		}
		col, col16 := naiveColumns(src, start, off)
		if p := f.Pos(off); p.Line != line || p.Column != col {
			t.Fatalf("Pos(%d) = %d:%d, want %d:%d", off, p.Line, p.Column, line, col)
		}
		if got := f.UTF16Column(off); got != col16 {
			t.Fatalf("UTF16Column(%d) = %d, want %d", off, got, col16)
		}
	}
}

// TestBOM checks that a leading byte order mark is not part of the text
// people read (rune columns count from the character after it, and the
// line's text leaves it out) but is the one UTF-16 character it is for a
// language client that has it in its copy of the text.
func TestBOM(t *testing.T) {
	src := []byte("\ufeffab😀c\nd")
	f := NewFile("bom.rolltpl", src)
	type row struct{ Off, Line, Column, UTF16 int }
	var got []row
	for _, off := range []int{0, 3, 4, 5, 9, 11} {
		p := f.Pos(off)
		got = append(got, row{p.Offset, p.Line, p.Column, f.UTF16Column(off)})
	}
	want := []row{{3, 1, 1, 0}, {3, 1, 1, 1}, {4, 1, 2, 2}, {5, 1, 3, 3}, {9, 1, 4, 5}, {11, 2, 1, 0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("positions mismatch (-want +got):\n%s", diff)
	}
	if got := f.Line(1); got != "ab😀c" {
		t.Errorf("Line(1) = %q, want %q", got, "ab😀c")
	}
	if got := f.LineStart(1); got != 3 {
		t.Errorf("LineStart(1) = %d, want 3", got)
	}
	for char, want := range map[int]int{0: 0, 1: 3, 5: 9} {
		if got := f.OffsetUTF16(0, char); got != want {
			t.Errorf("OffsetUTF16(0, %d) = %d, want %d", char, got, want)
		}
	}
	// A long first line: its checkpoints count from after the mark too.
	long := append([]byte("\ufeff"), []byte(strings.Repeat("é", 3*stride))...)
	lf := NewFile("long.rolltpl", long)
	for _, off := range []int{3, 5, 3 + 2*stride, len(long)} {
		col, col16 := naiveColumns(long, 3, off)
		if p := lf.Pos(off); p.Column != col {
			t.Errorf("long line: Pos(%d).Column = %d, want %d", off, p.Column, col)
		}
		if got := lf.UTF16Column(off); got != col16+1 {
			t.Errorf("long line: UTF16Column(%d) = %d, want %d", off, got, col16+1)
		}
	}
}
