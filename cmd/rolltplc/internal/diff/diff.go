// Package diff prints line-based unified diffs in the layout gofmt -d uses:
// rolltplc fmt -d shows what formatting would change with it.
//
// The alignment is a shortest edit script (Myers' O((n+m)D) algorithm in its
// linear-space, divide-and-conquer form), after lines that occur nowhere in
// the other text are set aside as changed, which keeps the all-different
// case linear. Runs of changed lines are then slid, where equal lines allow,
// to the same places GNU diff puts them: as far down as they go, or up to a
// change in the other text when one lies in reach.
package diff

import (
	"bytes"
	"fmt"
	"strings"
)

// context is the number of unchanged lines printed around each change.
const context = 3

// noNewline marks a last line that has no newline, as diff and gofmt -d do.
const noNewline = "\n\\ No newline at end of file\n"

// Diff returns the unified diff from old (named oldName) to new (named
// newName): a header "diff oldName newName", "--- oldName", "+++ newName",
// then hunks "@@ -a,b +c,d @@" with three lines of context. A text whose
// last line has no newline gets "\ No newline at end of file" after that
// line. Diff returns nil when old and new are equal.
func Diff(oldName string, old []byte, newName string, new []byte) []byte {
	if bytes.Equal(old, new) {
		return nil
	}
	x, y := splitLines(old), splitLines(new)
	xch, ych := align(x, y)
	var out bytes.Buffer
	fmt.Fprintf(&out, "diff %s %s\n--- %s\n+++ %s\n", oldName, newName, oldName, newName)
	writeHunks(&out, x, y, xch, ych)
	return out.Bytes()
}

// splitLines returns the lines of t, each with its newline; a last line
// without one carries the noNewline marker instead, so that it differs from
// the same line with a newline and prints as diff prints it.
func splitLines(t []byte) []string {
	if len(t) == 0 {
		return nil
	}
	ls := strings.SplitAfter(string(t), "\n")
	if last := len(ls) - 1; ls[last] == "" {
		ls = ls[:last]
	} else {
		ls[last] += noNewline
	}
	return ls
}

// align returns, for each line of x and of y, whether it is changed (deleted
// from x, inserted into y) in a shortest edit script from x to y. The
// unchanged lines of x and y pair up in order.
func align(x, y []string) (xch, ych []bool) {
	// Number the distinct lines so that comparisons are of integers.
	ids := make(map[string]int)
	number := func(ls []string) []int {
		out := make([]int, len(ls))
		for i, l := range ls {
			id, ok := ids[l]
			if !ok {
				id = len(ids)
				ids[l] = id
			}
			out[i] = id
		}
		return out
	}
	a, b := number(x), number(y)
	inA := make([]bool, len(ids))
	inB := make([]bool, len(ids))
	for _, id := range a {
		inA[id] = true
	}
	for _, id := range b {
		inB[id] = true
	}
	xch, ych = make([]bool, len(a)), make([]bool, len(b))

	// A line found nowhere in the other text is changed in every alignment:
	// set it aside and align the rest, remembering where each kept line was.
	keep := func(s []int, other []bool, ch []bool) (kept, at []int) {
		for i, id := range s {
			if other[id] {
				kept = append(kept, id)
				at = append(at, i)
			} else {
				ch[i] = true
			}
		}
		return kept, at
	}
	ka, atA := keep(a, inB, xch)
	kb, atB := keep(b, inA, ych)
	m := &myers{a: ka, b: kb, ach: make([]bool, len(ka)), bch: make([]bool, len(kb))}
	// Diagonals reach at most about 1.5(n+m) from 0 while the search runs.
	n := 2 * (len(ka) + len(kb) + 2)
	m.vf, m.vb = make([]int, 2*n+1), make([]int, 2*n+1)
	m.compare(0, len(ka), 0, len(kb))
	for i, c := range m.ach {
		xch[atA[i]] = c
	}
	for i, c := range m.bch {
		ych[atB[i]] = c
	}
	slide(a, xch, ych)
	slide(b, ych, xch)
	return xch, ych
}

// myers holds the state of the linear-space Myers alignment of a and b.
type myers struct {
	a, b     []int
	ach, bch []bool // changed marks, filled in by compare
	vf, vb   []int  // furthest-reaching x per diagonal, forward and backward
}

// compare marks the changed lines of a[a0:a1] and b[b0:b1] for a shortest
// edit script between them, splitting the problem at a middle snake.
func (m *myers) compare(a0, a1, b0, b1 int) {
	for {
		for a0 < a1 && b0 < b1 && m.a[a0] == m.b[b0] {
			a0, b0 = a0+1, b0+1
		}
		for a0 < a1 && b0 < b1 && m.a[a1-1] == m.b[b1-1] {
			a1, b1 = a1-1, b1-1
		}
		switch {
		case a0 == a1:
			for i := b0; i < b1; i++ {
				m.bch[i] = true
			}
			return
		case b0 == b1:
			for i := a0; i < a1; i++ {
				m.ach[i] = true
			}
			return
		}
		xm, ym, xe, ye := m.middleSnake(a0, a1, b0, b1)
		m.compare(a0, xm, b0, ym)
		a0, b0 = xe, ye // the second half, without recursing
	}
}

// middleSnake returns the start (x0,y0) and end (x1,y1) of the middle snake
// of a shortest edit script between a[a0:a1] and b[b0:b1], both non-empty
// and differing in their first and last lines. Coordinates are absolute.
func (m *myers) middleSnake(a0, a1, b0, b1 int) (x0, y0, x1, y1 int) {
	n, mm := a1-a0, b1-b0
	delta := n - mm
	odd := delta&1 != 0
	off := len(m.vf) / 2 // diagonal k is at index off+k
	vf, vb := m.vf, m.vb
	// Diagonal k holds the points with x-y == k, x and y relative to a0, b0.
	vf[off+1] = 0
	vb[off+delta-1] = n
	for d := 0; ; d++ {
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && vf[off+k-1] < vf[off+k+1]) {
				x = vf[off+k+1] // down: an insertion
			} else {
				x = vf[off+k-1] + 1 // right: a deletion
			}
			y := x - k
			sx, sy := x, y
			for x < n && y < mm && m.a[a0+x] == m.b[b0+y] {
				x, y = x+1, y+1
			}
			vf[off+k] = x
			if odd && k >= delta-(d-1) && k <= delta+(d-1) && x >= vb[off+k] {
				return a0 + sx, b0 + sy, a0 + x, b0 + y
			}
		}
		for k := -d; k <= d; k += 2 {
			kk := k + delta
			var x int
			if k == d || (k != -d && vb[off+kk-1] < vb[off+kk+1]) {
				x = vb[off+kk-1] // up: an insertion
			} else {
				x = vb[off+kk+1] - 1 // left: a deletion
			}
			y := x - kk
			ex, ey := x, y
			for x > 0 && y > 0 && m.a[a0+x-1] == m.b[b0+y-1] {
				x, y = x-1, y-1
			}
			vb[off+kk] = x
			if !odd && kk >= -d && kk <= d && x <= vf[off+kk] {
				return a0 + x, b0 + y, a0 + ex, b0 + ey
			}
		}
	}
}

// slide moves each run of changed lines of s (marked in ch) over equal lines,
// which keeps the edit script valid and as short: first as far up as it
// goes, merging with runs it meets, then as far down; it ends at the lowest
// place where it lies against a run of changes in the other text (marked in
// och), or at the bottom if there is none, as GNU diff does.
func slide(s []int, ch, och []bool) {
	n, on := len(s), len(och)
	// j follows i in the other text: the index after the pair of the last
	// unchanged line before i, so that och[j:] starts with the other text's
	// changes at the place of the run.
	i, j := 0, 0
	for {
		for i < n && !ch[i] {
			for j < on && och[j] {
				j++
			}
			i, j = i+1, j+1
		}
		if i == n {
			return
		}
		start := i
		for i < n && ch[i] {
			i++
		}
		end := i
		// back moves j to the pair of the unchanged line before start.
		back := func() {
			j--
			for j > 0 && och[j-1] {
				j--
			}
		}
		corr := -1 // lowest end at which the run lies against other changes
		for {
			size := end - start
			for start > 0 && s[start-1] == s[end-1] {
				start, end = start-1, end-1
				ch[start], ch[end] = true, false
				back()
				for start > 0 && ch[start-1] {
					start--
				}
			}
			corr = -1
			if j < on && och[j] {
				corr = end
			}
			for end < n && s[start] == s[end] {
				ch[start], ch[end] = false, true
				start, end = start+1, end+1
				for j < on && och[j] {
					j++
				}
				j++
				for end < n && ch[end] {
					end++
				}
				if j < on && och[j] {
					corr = end
				}
			}
			if end-start == size {
				break
			}
		}
		for corr >= 0 && end > corr {
			start, end = start-1, end-1
			ch[start], ch[end] = true, false
			back()
		}
		i = end
	}
}

// writeHunks writes the hunks of the alignment xch, ych of x and y: each
// change with up to context unchanged lines around it, changes fewer than
// 2*context unchanged lines apart sharing a hunk (as gofmt -d does; GNU diff
// also joins changes exactly 2*context lines apart, where gofmt -d prints
// two hunks that touch). In a change, the deleted lines come before the
// inserted ones.
func writeHunks(out *bytes.Buffer, x, y []string, xch, ych []bool) {
	// ops lists the alignment: ' ' pairs x[i] and y[j], '-' deletes x[i],
	// '+' inserts y[j].
	type op struct {
		kind byte
		i, j int
	}
	var ops []op
	for i, j := 0, 0; i < len(x) || j < len(y); {
		switch {
		case i < len(x) && xch[i]:
			ops = append(ops, op{'-', i, j})
			i++
		case j < len(y) && ych[j]:
			ops = append(ops, op{'+', i, j})
			j++
		default:
			ops = append(ops, op{' ', i, j})
			i, j = i+1, j+1
		}
	}
	for k := 0; k < len(ops); {
		if ops[k].kind == ' ' {
			k++
			continue
		}
		// A hunk starts context lines before this change and runs to the
		// last change followed by 2*context or more unchanged lines.
		first := max(k-context, 0)
		last := k // the last changed op in the hunk
		for e := k + 1; e < len(ops) && e-last <= 2*context; e++ {
			if ops[e].kind != ' ' {
				last = e
			}
		}
		stop := min(last+1+context, len(ops))
		var nx, ny int
		for _, o := range ops[first:stop] {
			if o.kind != '+' {
				nx++
			}
			if o.kind != '-' {
				ny++
			}
		}
		// Ranges count from 1; an empty range names the line before it.
		sx, sy := ops[first].i, ops[first].j
		if nx > 0 {
			sx++
		}
		if ny > 0 {
			sy++
		}
		fmt.Fprintf(out, "@@ -%d,%d +%d,%d @@\n", sx, nx, sy, ny)
		for _, o := range ops[first:stop] {
			out.WriteByte(o.kind)
			if o.kind == '+' {
				out.WriteString(y[o.j])
			} else {
				out.WriteString(x[o.i])
			}
		}
		k = stop
	}
}
