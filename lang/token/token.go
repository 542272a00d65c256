// Package token holds source positions for .rolltpl files: [Pos] (a byte
// offset with its line and column), [Span] (a half-open byte range), and
// [File], which converts byte offsets to lines, UTF-8 columns and the UTF-16
// columns the Language Server Protocol uses.
//
// Pos is participle's lexer.Position itself (an alias, not a copy of its
// layout): the parser sets the position of every syntax node it builds
// through reflection, and converting between two distinct struct types
// there costs a field-by-field type comparison per node (a tenth of the
// time of checking a large file).
package token

import (
	"fmt"
	"sort"
	"unicode/utf8"

	"github.com/alecthomas/participle/v2/lexer"
)

// Pos is a position in a source file: Filename, Offset, Line and Column.
// Offset is the byte offset from the start of the file (the ground truth);
// Line and Column are 1-based, Column counting runes, as participle reports
// them. Its String method formats it as "file:line:col" ("line:col"
// without a file name); [Valid] tells whether it is set.
type Pos = lexer.Position

// Valid reports whether p has a line number.
func Valid(p Pos) bool { return p.Line > 0 }

// Span is the half-open byte range [Start, End) of a piece of source.
type Span struct {
	Start Pos
	End   Pos
}

// IsValid reports whether s has a valid start.
func (s Span) IsValid() bool { return Valid(s.Start) }

// Contains reports whether the byte offset off lies inside s (the end is
// included so that a cursor just past a token still counts).
func (s Span) Contains(off int) bool {
	return s.Start.Offset <= off && off <= s.End.Offset
}

// String formats s as "file:line:col-line:col".
func (s Span) String() string {
	return fmt.Sprintf("%s-%d:%d", s.Start, s.End.Line, s.End.Column)
}

// File is the line table of one source file.
type File struct {
	Name  string
	Src   []byte
	lines []int // byte offset of the start of each line
	bom   int   // 3 when Src starts with a UTF-8 byte order mark, else 0
	// marks are column checkpoints inside long lines, in offset order, so
	// that a position far into a long line costs no more than one stride
	// of counting.
	marks []mark
}

// mark is a rune boundary inside a long line with its columns there.
type mark struct {
	off, col, col16 int // col and col16 are 0-based
}

// stride is the spacing of the column checkpoints of a long line.
const stride = 1024

// NewFile builds the line table of src. A leading UTF-8 byte order mark
// is not part of the text people read: [File.Pos] moves offsets inside it
// past it and counts rune columns from the character after it, and
// [File.Line] and [File.LineStart] leave it out. The UTF-16 columns of the
// Language Server Protocol count it as the one character it is in the
// client's copy of the text.
func NewFile(name string, src []byte) *File {
	f := &File{Name: name, Src: src, lines: []int{0}}
	if len(src) >= 3 && src[0] == 0xEF && src[1] == 0xBB && src[2] == 0xBF {
		f.bom = 3
	}
	for i, c := range src {
		if c == '\n' {
			f.lines = append(f.lines, i+1)
		}
	}
	for n, start := range f.lines {
		end := len(src)
		if n+1 < len(f.lines) {
			end = f.lines[n+1]
		}
		if end-start > stride {
			f.markLine(start, end)
		}
	}
	return f
}

// markLine records a checkpoint about every stride bytes of the line
// [start, end), at rune boundaries as utf8.RuneCount finds them.
func (f *File) markLine(start, end int) {
	col, col16, next := 0, 0, start+stride
	if start == 0 && f.bom > 0 {
		start, col16 = f.bom, 1
	}
	for off := start; off < end; {
		if off >= next {
			f.marks = append(f.marks, mark{off, col, col16})
			next = off + stride
		}
		r, size := utf8.DecodeRune(f.Src[off:end])
		col++
		col16++
		if r >= 0x10000 {
			col16++
		}
		off += size
	}
}

// from returns where to start counting the columns of byte offset off on
// the line starting at start: that offset and the 0-based rune and UTF-16
// columns there (0 and 0 at start).
func (f *File) from(start, off int) (int, int, int) {
	i := sort.Search(len(f.marks), func(i int) bool { return f.marks[i].off > off }) - 1
	if i >= 0 && f.marks[i].off >= start {
		return f.marks[i].off, f.marks[i].col, f.marks[i].col16
	}
	return start, 0, 0
}

// textStart returns where the text of the line starting at byte start
// begins: after the byte order mark on the first line.
func (f *File) textStart(start int) int {
	if start == 0 {
		return f.bom
	}
	return start
}

// LineCount returns the number of lines in the file.
func (f *File) LineCount() int { return len(f.lines) }

// LineStart returns the byte offset of the start of 1-based line n.
func (f *File) LineStart(n int) int {
	if n < 1 {
		return f.bom
	}
	if n > len(f.lines) {
		return len(f.Src)
	}
	return f.textStart(f.lines[n-1])
}

// Line returns the text of 1-based line n without its newline.
func (f *File) Line(n int) string {
	start := f.LineStart(n)
	end := len(f.Src)
	if n < len(f.lines) {
		end = f.lines[n] - 1
	}
	if end < start {
		end = start
	}
	s := f.Src[start:end]
	if len(s) > 0 && s[len(s)-1] == '\r' {
		s = s[:len(s)-1]
	}
	return string(s)
}

func (f *File) clamp(off int) int {
	if off < 0 {
		return 0
	}
	if off > len(f.Src) {
		return len(f.Src)
	}
	return off
}

// Pos returns the position of byte offset off (clamped to the file).
func (f *File) Pos(off int) Pos {
	off = max(f.clamp(off), f.bom)
	line := sort.Search(len(f.lines), func(i int) bool { return f.lines[i] > off })
	from, col, _ := f.from(f.textStart(f.lines[line-1]), off)
	return Pos{Filename: f.Name, Offset: off, Line: line, Column: col + utf8.RuneCount(f.Src[from:off]) + 1}
}

// Span returns the span of the byte range [start, end).
func (f *File) Span(start, end int) Span {
	return Span{Start: f.Pos(start), End: f.Pos(end)}
}

// UTF16Column returns the 0-based UTF-16 column of byte offset off within its
// line, as the Language Server Protocol counts characters.
func (f *File) UTF16Column(off int) int {
	off = f.clamp(off)
	line := sort.Search(len(f.lines), func(i int) bool { return f.lines[i] > off })
	from, _, n := f.from(f.lines[line-1], off)
	for _, r := range string(f.Src[from:off]) {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// OffsetUTF16 returns the byte offset of the 0-based line and UTF-16
// character, clamped to the line's end.
func (f *File) OffsetUTF16(line, char int) int {
	if line < 0 {
		return 0
	}
	if line >= len(f.lines) {
		return len(f.Src)
	}
	off := f.lines[line]
	end := len(f.Src)
	if line+1 < len(f.lines) {
		end = f.lines[line+1] - 1
	}
	n := 0
	for off < end && n < char {
		r, size := utf8.DecodeRune(f.Src[off:end])
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
		off += size
	}
	return off
}
