// Package format prints .rolltpl source in its one canonical layout, keeping
// every comment. It is a token-stream rewriter in the manner of hclwrite: the
// source is re-lexed with [parser.Lexer], comments included, and the syntax
// tree is used only to find structure (where items begin and end, which
// braces open blocks, which `-` is unary). Tokens are never added, dropped or
// reordered; only the white space between them changes. [Source] refuses a
// file with syntax errors.
//
// # Layout
//
//   - Every declaration and every item of a block starts on its own line.
//     Inside an item the author's line breaks are kept; a line that
//     continues an item (`-> ".x"` under a long op, the entries under
//     `duplicated`) is indented one level deeper than the item's first line.
//   - Indentation is four spaces per open brace, bracket or parenthesis. A
//     line inside `( )` or `[ ]` is indented one level deeper than the line
//     that opened it, and a line that starts with a closing bracket is
//     indented like the line with the matching opening one.
//   - A block `{` stays on the line of its header (after a comment that
//     ends that line, it starts the next one, indented like the header).
//   - One-line blocks: a block is printed on one line, `mca { use rope }`,
//     when the author wrote its braces on one line, it holds at most one item
//     and every block inside it is one-line too. A block with no items and no
//     comments is always `{}`. Every other block has one item per line and
//     its `}` on a line of its own.
//   - Blank lines: runs of blank lines become one. A blank line is kept only
//     where the author wrote one before a declaration, an item or a comment
//     line, and never right after an opening brace or bracket, before a
//     closing one, at the start of the file or at its end. The file ends in
//     exactly one newline (an empty file stays empty).
//   - Spaces: one around `->`, `=`, `|`, binary operators and between
//     words; one after `,` and `:`; none before `,` `:` `?` `)` `]` `.` or
//     after `(` `[` `.` or a unary `-` or `!`; none before the `(` of a call
//     or of op parameters (`stack(dim = 0)`), the `[` of an index or of an
//     element type (`hidden_act: list[str]? = null`). One space inside the
//     braces of a one-line block.
//   - Comments keep their text, less trailing white space. A comment that
//     follows code on a line stays there, two spaces after it; a comment on
//     a line of its own is indented like the code line that follows it.
//   - A UTF-8 byte order mark at the start of the file is dropped.
//
// # Alignment
//
// Within one block, consecutive single-line items of the same shape have
// their operator column aligned, one space after the longest left side:
// config maps (`a -> b`) on `->`, mca constants and template fields
// (`key = value`) on `=`, and weight ops of the same kind with an arrow
// (`rename "a" -> "b"`) on `->`. A `use` line in between neither joins nor
// ends the run; a blank line, a comment line, an item that spans several
// lines or an item of another shape ends it. Nothing else is aligned
// (parallel entries, `set` lines, schema fields, trailing comments): the
// author's padding anywhere else collapses to one space.
package format

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/parser"
)

// SyntaxError is returned by [Source] for a file that does not parse.
type SyntaxError struct {
	Diags diag.List
}

// Error lists the error diagnostics one per line.
func (e *SyntaxError) Error() string {
	var lines []string
	for _, d := range e.Diags {
		if d.Severity == diag.Error {
			lines = append(lines, d.Error())
		}
	}
	return strings.Join(lines, "\n")
}

// Source returns src in canonical form. It fails with a [*SyntaxError] when
// src has syntax errors; filename names the positions in its diagnostics.
// Formatting is idempotent: Source of its own output returns it unchanged.
//
// A large file is formatted in pieces of whole top-level declarations (cut
// at [parser.LineCuts]), several at a time on as many cores, so that memory
// is bounded by the pieces in hand rather than the syntax tree of the whole
// file; the output is the same as formatting the file at once. When a
// piece fails, the whole file is formatted at once for its diagnostics.
func Source(filename string, src []byte) ([]byte, error) {
	return sourcePieces(filename, src, pieceSize)
}

// pieceSize is the size of the pieces [Source] cuts a large file into.
const pieceSize = 256 << 10

// sourcePieces is [Source] with pieces of at least size bytes (the last
// may be shorter).
func sourcePieces(filename string, src []byte, size int) ([]byte, error) {
	starts := pieceStarts(src, size)
	if len(starts) < 2 {
		return sourceWhole(filename, src)
	}
	outs := make([][]byte, len(starts))
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(starts)) {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= len(starts) {
					return
				}
				end := len(src)
				if i+1 < len(starts) {
					end = starts[i+1]
				}
				out, err := sourceWhole(filename, src[starts[i]:end])
				if err != nil {
					failed.Store(true)
					return
				}
				outs[i] = out
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		return sourceWhole(filename, src)
	}
	n := 0
	for _, o := range outs {
		n += len(o) + 1
	}
	out := make([]byte, 0, n)
	for i, o := range outs {
		if len(o) == 0 {
			continue
		}
		// Each piece's output has no blank line at its start or end: the
		// one the author wrote before the piece's first declaration goes
		// back here.
		if len(out) > 0 && blankLineBefore(src, starts[i]) {
			out = append(out, '\n')
		}
		out = append(out, o...)
	}
	return out, nil
}

// pieceStarts returns the offsets at which src is cut into pieces of at
// least size bytes: 0, then line cuts (see [parser.LineCuts]).
func pieceStarts(src []byte, size int) []int {
	if len(src) <= size {
		return []int{0}
	}
	starts := []int{0}
	for _, c := range parser.LineCuts(src) {
		if c-starts[len(starts)-1] >= size {
			starts = append(starts, c)
		}
	}
	return starts
}

// blankLineBefore reports whether the line before the one starting at off
// holds only white space.
func blankLineBefore(src []byte, off int) bool {
	if off == 0 || src[off-1] != '\n' {
		return false
	}
	for i := off - 2; i >= 0; i-- {
		switch src[i] {
		case '\n':
			return true
		case ' ', '\t', '\r':
		default:
			return false
		}
	}
	return true
}

// sourceWhole formats src at once (see [Source]).
func sourceWhole(filename string, src []byte) ([]byte, error) {
	// The cache makes the check below parse only the declarations whose
	// text formatting changed.
	cache := parser.NewCache()
	f, diags := cache.ParseFile(filename, src)
	if diags.HasErrors() {
		return nil, &SyntaxError{Diags: diags}
	}
	out, err := format(filename, f, src)
	if err != nil {
		return nil, err
	}
	// The formatter only moves white space, so the output must mean the
	// same; check it rather than hand back a damaged file.
	g, gdiags := cache.ParseFile(filename, out)
	if gdiags.HasErrors() || !sameTree(f, g) {
		return nil, fmt.Errorf("%s: internal formatter error: the formatted text does not parse to the same syntax tree; please report this with the file", filename)
	}
	return out, nil
}

// sameTree reports whether f and g are the same syntax tree, positions
// aside. Declarations the parser cache carried over from f into g are the
// same nodes, so only the others are compared.
func sameTree(f, g *ast.File) bool {
	if len(f.Decls) != len(g.Decls) || len(f.Comments) != len(g.Comments) {
		return false
	}
	for i, d := range f.Decls {
		if d != g.Decls[i] && ast.Dump(d) != ast.Dump(g.Decls[i]) {
			return false
		}
	}
	for i, c := range f.Comments {
		if c.Text != g.Comments[i].Text {
			return false
		}
	}
	return true
}

func format(filename string, f *ast.File, src []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("%s: internal formatter error (%v); please report this with the file", filename, r)
		}
	}()
	p, err := newPrinter(filename, f, src)
	if err != nil {
		return nil, err
	}
	lines := p.layout()
	p.align(lines)
	return p.render(lines), nil
}
