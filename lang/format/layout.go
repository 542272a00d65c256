package format

import (
	"strings"
	"unicode/utf8"
)

// line is one output line: token indexes and the spaces before each.
type line struct {
	indent int
	blank  bool // a blank line comes before it
	toks   []int
	spaces []int // spaces[k] is the number of spaces before toks[k]; spaces[0] is 0
}

// frame is an open bracket during layout.
type frame struct {
	indent int  // indentation of the line that opened it
	block  bool // a block body (its content is made of items)
}

// layout breaks the tokens into lines and indents them.
func (p *printer) layout() []*line {
	var lines []*line
	var stack []frame
	var cur *line
	for i := range p.toks {
		newline, blank, spaces := true, false, 0
		if i > 0 {
			newline, blank, spaces = p.gap(i)
		}
		if newline {
			cur = &line{indent: p.indent(i, stack), blank: blank && len(lines) > 0, toks: []int{i}, spaces: []int{0}}
			lines = append(lines, cur)
		} else {
			cur.toks = append(cur.toks, i)
			cur.spaces = append(cur.spaces, spaces)
		}
		t := &p.toks[i]
		switch {
		case t.opens():
			stack = append(stack, frame{indent: cur.indent, block: t.blockOpen})
		case t.closes() && len(stack) > 0:
			stack = stack[:len(stack)-1]
		}
	}
	return lines
}

// gap decides what comes between token i-1 and token i: a line break
// (possibly after a blank line) or some spaces.
func (p *printer) gap(i int) (newline, blank bool, spaces int) {
	prev, t := &p.toks[i-1], &p.toks[i]
	srcBlank := t.nl >= 2
	switch {
	case t.comment && t.nl == 0: // a trailing comment
		return false, false, 2
	case t.comment:
		return true, srcBlank && !prev.opens(), 0
	case prev.comment:
		return true, srcBlank && t.item != nil && !t.inline, 0
	case t.item != nil && !t.inline:
		return true, srcBlank && !prev.opens(), 0
	case t.blockClose:
		switch {
		case !t.block.oneLine:
			return true, false, 0
		case prev.blockOpen:
			return false, false, 0
		}
		return false, false, 1
	case t.blockOpen:
		return false, false, 1
	case t.nl > 0:
		return true, false, 0
	}
	return false, false, space(prev, t)
}

// space returns the number of spaces between two code tokens on one line.
func space(prev, t *tok) int {
	switch {
	case t.text == "," || t.text == ")" || t.text == "]" || t.text == "." || t.text == ":" || t.text == "?":
		return 0
	case prev.text == "(" || prev.text == "[" || prev.text == ".":
		return 0
	case prev.unary:
		return 0
	case t.text == "(" && !t.group: // call arguments, op parameters
		return 0
	case t.text == "[" && t.tight:
		return 0
	}
	return 1
}

// indent returns the indentation of a line starting with token i, given the
// brackets open before it.
func (p *printer) indent(i int, stack []frame) int {
	base, inBlock := 0, true
	if n := len(stack); n > 0 {
		base, inBlock = stack[n-1].indent+1, stack[n-1].block
	}
	t := &p.toks[i]
	if t.closes() {
		return max(base-1, 0)
	}
	if t.comment {
		// Indent like the code that follows, as if it did not close.
		j := i + 1
		for j < len(p.toks) && p.toks[j].comment {
			j++
		}
		if j == len(p.toks) || p.toks[j].closes() {
			return base
		}
		t = &p.toks[j]
	}
	if t.item != nil || t.blockOpen || !inBlock {
		return base
	}
	return base + 1 // an item continued on another line
}

// render prints the lines.
func (p *printer) render(lines []*line) []byte {
	var b strings.Builder
	for _, l := range lines {
		if l.blank {
			b.WriteByte('\n')
		}
		b.WriteString(strings.Repeat("    ", l.indent))
		for k, ti := range l.toks {
			b.WriteString(strings.Repeat(" ", l.spaces[k]))
			b.WriteString(p.toks[ti].text)
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// width returns the printed width of line l up to token k, without the
// spaces before it.
func (p *printer) width(l *line, k int) int {
	w := 4 * l.indent
	for j := 0; j < k; j++ {
		w += l.spaces[j] + utf8.RuneCountInString(p.toks[l.toks[j]].text)
	}
	return w
}
