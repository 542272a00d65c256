package diff

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDiff checks whole outputs of Diff on chosen cases.
func TestDiff(t *testing.T) {
	const head = "diff a.orig a\n--- a.orig\n+++ a\n"
	tests := []struct {
		name, old, new, want string
	}{
		{name: "both empty", old: "", new: "", want: ""},
		{name: "identical", old: "a\nb\n", new: "a\nb\n", want: ""},
		{name: "identical without newline", old: "a\nb", new: "a\nb", want: ""},
		{name: "from empty", old: "", new: "a\nb\nc\n",
			want: head + "@@ -0,0 +1,3 @@\n+a\n+b\n+c\n"},
		{name: "to empty", old: "a\nb\nc\n", new: "",
			want: head + "@@ -1,3 +0,0 @@\n-a\n-b\n-c\n"},
		{name: "all changed", old: "a\nb\n", new: "c\nd\ne\n",
			want: head + "@@ -1,2 +1,3 @@\n-a\n-b\n+c\n+d\n+e\n"},
		{name: "insert at start", old: "1\n2\n3\n4\n5\n", new: "0\n1\n2\n3\n4\n5\n",
			want: head + "@@ -1,3 +1,4 @@\n+0\n 1\n 2\n 3\n"},
		{name: "insert at end", old: "1\n2\n3\n4\n5\n", new: "1\n2\n3\n4\n5\n6\n",
			want: head + "@@ -3,3 +3,4 @@\n 3\n 4\n 5\n+6\n"},
		{name: "delete in middle", old: "1\n2\n3\n4\n5\n6\n7\n8\n9\n", new: "1\n2\n3\n4\n6\n7\n8\n9\n",
			want: head + "@@ -2,7 +2,6 @@\n 2\n 3\n 4\n-5\n 6\n 7\n 8\n"},
		{name: "newline removed at end", old: "a\nb\nc\n", new: "a\nb\nc",
			want: head + "@@ -1,3 +1,3 @@\n a\n b\n-c\n+c\n\\ No newline at end of file\n"},
		{name: "newline added at end", old: "a\nb\nc", new: "a\nb\nc\n",
			want: head + "@@ -1,3 +1,3 @@\n a\n b\n-c\n\\ No newline at end of file\n+c\n"},
		{name: "no newline on either side", old: "a\nb\nc", new: "a\nb\nd",
			want: head + "@@ -1,3 +1,3 @@\n a\n b\n-c\n\\ No newline at end of file\n+d\n\\ No newline at end of file\n"},
		{name: "no newline, unchanged last line", old: "x\n1\n2\n3\n4\nz", new: "y\n1\n2\n3\n4\nz",
			want: head + "@@ -1,4 +1,4 @@\n-x\n+y\n 1\n 2\n 3\n"},
		{name: "no newline as context", old: "x\n1\nz", new: "y\n1\nz",
			want: head + "@@ -1,3 +1,3 @@\n-x\n+y\n 1\n z\n\\ No newline at end of file\n"},
		// Changes fewer than six lines apart share a hunk; six apart, the
		// hunks touch, as with gofmt -d.
		{name: "hunks merge across five lines", old: "a\n1\n2\n3\n4\n5\nb\n", new: "A\n1\n2\n3\n4\n5\nB\n",
			want: head + "@@ -1,7 +1,7 @@\n-a\n+A\n 1\n 2\n 3\n 4\n 5\n-b\n+B\n"},
		{name: "hunks touch across six lines", old: "a\n1\n2\n3\n4\n5\n6\nb\n", new: "A\n1\n2\n3\n4\n5\n6\nB\n",
			want: head + "@@ -1,4 +1,4 @@\n-a\n+A\n 1\n 2\n 3\n@@ -5,4 +5,4 @@\n 4\n 5\n 6\n-b\n+B\n"},
		{name: "hunks split across seven lines", old: "a\n1\n2\n3\n4\n5\n6\n7\nb\n", new: "A\n1\n2\n3\n4\n5\n6\n7\nB\n",
			want: head + "@@ -1,4 +1,4 @@\n-a\n+A\n 1\n 2\n 3\n@@ -6,4 +6,4 @@\n 5\n 6\n 7\n-b\n+B\n"},
		{name: "deleted blank lines keep the first as context",
			old:  "}\n\n\n\nm\n",
			new:  "}\n\nm\n",
			want: head + "@@ -1,5 +1,3 @@\n }\n \n-\n-\n m\n"},
		// Runs of changes slide over equal lines as in GNU diff.
		{name: "insertions gather into one run", old: "b\nb\n", new: "a\nb\na\nb\na\na\nb\nb\n",
			want: head + "@@ -1,2 +1,8 @@\n+a\n+b\n+a\n+b\n+a\n+a\n b\n b\n"},
		{name: "a deletion slides to the insertion", old: "a\na\na\n", new: "a\n\na\n",
			want: head + "@@ -1,3 +1,3 @@\n a\n-a\n+\n a\n"},
		{name: "an insertion slides to the deletion", old: "b\nb\na\na\na\nb\n", new: "b\na\na\na\na\n",
			want: head + "@@ -1,6 +1,5 @@\n b\n-b\n a\n a\n a\n-b\n+a\n"},
		{name: "braces are not reused", old: "f {\n  a\n}\ng {\n  b\n}\n", new: "g {\n  b\n}\n",
			want: head + "@@ -1,6 +1,3 @@\n-f {\n-  a\n-}\n g {\n   b\n }\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(Diff("a.orig", []byte(tt.old), "a", []byte(tt.new)))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Diff(%q, %q) mismatch (-want +got):\n%s", tt.old, tt.new, diff)
			}
		})
	}
}

// TestDiffRandom checks on random texts of few distinct lines that the diff
// applies, is a shortest one, and has well-formed hunks.
func TestDiffRandom(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for n := 0; n < 2000; n++ {
		old := randomText(r, r.Intn(25), 4)
		new := randomText(r, r.Intn(25), 4)
		if r.Intn(3) == 0 {
			new = mutate(r, old, 4)
		}
		d := Diff("o", []byte(old), "n", []byte(new))
		if old == new {
			if d != nil {
				t.Fatalf("Diff of equal texts %q = %q, want nil", old, d)
			}
			continue
		}
		got, edits, err := apply(old, d)
		if err != nil {
			t.Fatalf("Diff(%q, %q):\n%s\ndoes not apply: %v", old, new, d, err)
		}
		if got != new {
			t.Fatalf("Diff(%q, %q):\n%s\napplies to %q", old, new, d, got)
		}
		if want := shortest(splitLines([]byte(old)), splitLines([]byte(new))); edits != want {
			t.Fatalf("Diff(%q, %q):\n%s\nhas %d changed lines, want %d", old, new, d, edits, want)
		}
	}
}

// TestDiffMatchesGNU compares the hunks of Diff with those of GNU diff -u on
// generated edits of texts of distinct lines, where the shortest alignment
// is unique, and on texts with repeated lines, where both must be shortest.
func TestDiffMatchesGNU(t *testing.T) {
	if out, err := exec.Command("diff", "--version").Output(); err != nil || !bytes.Contains(out, []byte("GNU diffutils")) {
		t.Skip("GNU diff not found")
	}
	dir := t.TempDir()
	r := rand.New(rand.NewSource(2))
	for n := 0; n < 60; n++ {
		var old, new string
		exact := n%2 == 0
		if exact {
			var b strings.Builder
			for i := range 40 + r.Intn(80) {
				fmt.Fprintf(&b, "line %d\n", i)
			}
			old = b.String()
			new = mutate(r, old, 1<<30)
		} else {
			old = randomText(r, 30+r.Intn(30), 5)
			new = mutate(r, old, 5)
		}
		if r.Intn(4) == 0 {
			new = strings.TrimSuffix(new, "\n")
		}
		po, pn := filepath.Join(dir, "old"), filepath.Join(dir, "new")
		if err := os.WriteFile(po, []byte(old), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pn, []byte(new), 0o666); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("diff", "-u", po, pn).Output()
		if err != nil && len(out) == 0 {
			t.Fatalf("diff -u: %v", err)
		}
		gnu := hunks(string(out))
		mine := hunks(string(Diff("old", []byte(old), "new", []byte(new))))
		if exact {
			if d := cmp.Diff(gnu, mine); d != "" {
				t.Errorf("case %d: hunks differ from diff -u (-gnu +mine):\n%s", n, d)
			}
			continue
		}
		_, ge, err1 := apply(old, []byte(gnu))
		_, me, err2 := apply(old, []byte(mine))
		if err1 != nil || err2 != nil || ge != me {
			t.Errorf("case %d: diff -u changes %d lines (%v), Diff %d (%v)", n, ge, err1, me, err2)
		}
	}
}

var gnuHeader = regexp.MustCompile(`(?m)^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@$`)

// hunks returns the hunks of a unified diff, from its first "@@" line, in
// one layout: the counts GNU diff leaves out when they are 1 written out,
// and hunks that touch (which gofmt -d prints, GNU diff joins) joined.
func hunks(d string) string {
	i := strings.Index(d, "@@")
	if i < 0 {
		return ""
	}
	type hunk struct {
		sx, nx, sy, ny int
		body           string
	}
	var hs []hunk
	heads := gnuHeader.FindAllStringSubmatchIndex(d[i:], -1)
	for k, h := range heads {
		num := func(g int) int {
			if h[2*g] < 0 {
				return 1
			}
			s := strings.TrimPrefix(d[i+h[2*g]:i+h[2*g+1]], ",")
			n, _ := strconv.Atoi(s)
			return n
		}
		end := len(d) - i
		if k+1 < len(heads) {
			end = heads[k+1][0]
		}
		c := hunk{num(1), num(2), num(3), num(4), d[i+h[1]+1 : i+end]}
		if n := len(hs); n > 0 && hs[n-1].sx+hs[n-1].nx == c.sx && c.nx > 0 {
			hs[n-1].nx += c.nx
			hs[n-1].ny += c.ny
			hs[n-1].body += c.body
			continue
		}
		hs = append(hs, c)
	}
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "@@ -%d,%d +%d,%d @@\n%s", h.sx, h.nx, h.sy, h.ny, h.body)
	}
	return b.String()
}

// randomText returns n lines drawn from k distinct ones, the last perhaps
// without a newline.
func randomText(r *rand.Rand, n, k int) string {
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, "%c\n", 'a'+r.Intn(k))
	}
	s := b.String()
	if n > 0 && r.Intn(5) == 0 {
		s = strings.TrimSuffix(s, "\n")
	}
	return s
}

// mutate returns t with a few lines deleted, inserted or replaced; new lines
// are drawn from k distinct ones, or are new to t when k > 26.
func mutate(r *rand.Rand, t string, k int) string {
	ls := splitLines([]byte(t))
	if n := len(ls); n > 0 {
		ls[n-1] = strings.TrimSuffix(ls[n-1], noNewline) + "\n"
	}
	fresh := 0
	line := func() string {
		fresh++
		if k > 26 {
			return fmt.Sprintf("new %d\n", fresh)
		}
		return fmt.Sprintf("%c\n", 'a'+r.Intn(k))
	}
	for range 1 + r.Intn(6) {
		at := r.Intn(len(ls) + 1)
		switch r.Intn(3) {
		case 0:
			if at < len(ls) {
				ls = append(ls[:at], ls[at+1+r.Intn(min(3, len(ls)-at)):]...)
			}
		case 1:
			ins := []string{line()}
			if r.Intn(2) == 0 {
				ins = append(ins, line())
			}
			ls = append(ls[:at], append(ins, ls[at:]...)...)
		default:
			if at < len(ls) {
				ls[at] = line()
			}
		}
	}
	return strings.Join(ls, "")
}

// shortest returns the least number of lines deleted and inserted to turn
// x into y, from a table of longest common subsequences.
func shortest(x, y []string) int {
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	return len(x) + len(y) - 2*lcs[0][0]
}

// apply applies the unified diff d (from its first hunk) to old and returns
// the result and the number of lines deleted and inserted. It checks the
// hunk headers against the hunk bodies and the lines of old.
func apply(old string, d []byte) (string, int, error) {
	x := splitLines([]byte(old))
	text := string(d)
	if i := strings.Index(text, "@@"); i >= 0 {
		text = text[i:]
	} else {
		text = ""
	}
	rest := strings.SplitAfter(text, "\n")
	count := func(s string) int {
		if s == "" {
			return 1
		}
		n, _ := strconv.Atoi(s[1:])
		return n
	}
	var out []string
	edits, next := 0, 0 // next: the index in x of the first line not yet used
	for k := 0; k < len(rest) && rest[k] != ""; {
		m := gnuHeader.FindStringSubmatch(strings.TrimSuffix(rest[k], "\n"))
		if m == nil {
			return "", 0, fmt.Errorf("bad hunk header %q", rest[k])
		}
		sx, _ := strconv.Atoi(m[1])
		nx, ny := count(m[2]), count(m[4])
		if nx > 0 {
			sx--
		}
		if sx < next || sx > len(x) {
			return "", 0, fmt.Errorf("hunk %q starts at line %d, after %d", m[0], sx, next)
		}
		out = append(out, x[next:sx]...)
		next = sx
		k++
		gx, gy := 0, 0
		for k < len(rest) && rest[k] != "" && !strings.HasPrefix(rest[k], "@@") {
			kind, l := rest[k][0], rest[k][1:]
			k++
			if k < len(rest) && strings.HasPrefix(rest[k], `\`) {
				l += rest[k]
				k++
			}
			if kind != '+' {
				if next >= len(x) || x[next] != l {
					return "", 0, fmt.Errorf("old line %d is not %q", next+1, l)
				}
				next++
				gx++
			}
			if kind != '-' {
				out = append(out, l)
				gy++
			}
			if kind != ' ' {
				edits++
			}
		}
		if gx != nx || gy != ny {
			return "", 0, fmt.Errorf("hunk %q has %d old and %d new lines", m[0], gx, gy)
		}
	}
	out = append(out, x[next:]...)
	return strings.TrimSuffix(strings.Join(out, ""), noNewline), edits, nil
}

// TestDiffLarge checks that large texts, similar and all different, give
// diffs that apply; memory and time are measured by BenchmarkDiff.
func TestDiffLarge(t *testing.T) {
	for _, tc := range largeCases() {
		t.Run(tc.name, func(t *testing.T) {
			d := Diff("o", tc.old, "n", tc.new)
			got, _, err := apply(string(tc.old), d)
			if err != nil || got != string(tc.new) {
				t.Fatalf("diff does not apply (%v)", err)
			}
		})
	}
}

type largeCase struct {
	name     string
	old, new []byte
}

// largeCases returns texts of 100,000 lines: with a few edits, all
// different, and of two distinct lines with many edits (many short snakes).
func largeCases() []largeCase {
	const n = 100000
	r := rand.New(rand.NewSource(3))
	var a, b, c, d bytes.Buffer
	for i := range n {
		fmt.Fprintf(&a, "line %d\n", i)
		if i%10000 == 5000 {
			fmt.Fprintf(&b, "changed %d\n", i)
		} else if i%10000 != 7000 {
			fmt.Fprintf(&b, "line %d\n", i)
		}
		fmt.Fprintf(&c, "other %d\n", i)
	}
	e := randomText(r, n/10, 2)
	for i := 0; i < n/10; i++ {
		fmt.Fprintf(&d, "%c\n", 'a'+r.Intn(2))
	}
	return []largeCase{
		{"few edits", a.Bytes(), b.Bytes()},
		{"all different", a.Bytes(), c.Bytes()},
		{"two lines, many edits", []byte(e), d.Bytes()},
	}
}

// BenchmarkDiff measures Diff on large texts; memory should grow with the
// number of lines, not with their product.
func BenchmarkDiff(b *testing.B) {
	for _, tc := range largeCases() {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Diff("o", tc.old, "n", tc.new)
			}
		})
	}
}

// FuzzDiff checks that Diff's output applies to old to give new, and is a
// shortest diff for small inputs.
func FuzzDiff(f *testing.F) {
	f.Add("a\nb\nc\n", "a\nc\nd")
	f.Add("", "x\n")
	f.Add("}\n\n\n\nm\n", "}\n\nm\n")
	f.Fuzz(func(t *testing.T, old, new string) {
		d := Diff("o", []byte(old), "n", []byte(new))
		if old == new {
			if d != nil {
				t.Fatalf("Diff of equal texts = %q", d)
			}
			return
		}
		got, edits, err := apply(old, d)
		if err != nil || got != new {
			t.Fatalf("Diff(%q, %q):\n%s\ndoes not apply: %q, %v", old, new, d, got, err)
		}
		x, y := splitLines([]byte(old)), splitLines([]byte(new))
		if len(x)*len(y) <= 1<<16 {
			if want := shortest(x, y); edits != want {
				t.Fatalf("Diff(%q, %q):\n%s\nhas %d changed lines, want %d", old, new, d, edits, want)
			}
		}
	})
}
