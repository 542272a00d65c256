package diag

import (
	"bytes"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/lang/token"
)

// lineDiags returns a source of n lines and one warning on each line.
func lineDiags(n int) ([]byte, List) {
	src := []byte(strings.Repeat("x = 1\n", n))
	f := token.NewFile("f.rolltpl", src)
	var l List
	for i := 0; i < n; i++ {
		l.Add(Warningf(f.Span(6*i, 6*i+1), "w", "W", "detail %d", i))
	}
	return src, l
}

// TestTextLinear: printing diagnostics as text builds each file's line
// table once, so the memory it allocates grows linearly with the file and
// the diagnostics (it was rebuilt per diagnostic: 10.7 s for 6 426 on a
// 1 MB file). At 4 times the lines and diagnostics the allocation must
// stay within 8 times (quadratic: 16).
func TestTextLinear(t *testing.T) {
	alloc := func(n int) uint64 {
		src, l := lineDiags(n)
		p := &Printer{Sources: Sources{"f.rolltpl": src}}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := p.Text(io.Discard, l); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := alloc(2000), alloc(8000)
	if large > 8*small {
		t.Errorf("text for 8000 diagnostics on 8000 lines allocated %d bytes, %.1f times the %d for 2000 (linear: 4)", large, float64(large)/float64(small), small)
	}
}

// TestTextCap: with MaxPerFile, at most that many diagnostics of each
// severity are printed per file, then one line per file counts the rest;
// other files and other severities are unaffected.
func TestTextCap(t *testing.T) {
	src, l := lineDiags(7)
	f := token.NewFile("f.rolltpl", src)
	l.Add(Errorf(f.Span(0, 1), "e", "E", "error 1"))
	l.Add(Errorf(f.Span(6, 7), "e", "E", "error 2"))
	l.Add(Errorf(f.Span(12, 13), "e", "E", "error 3"))
	g := token.NewFile("g.rolltpl", []byte("y\n"))
	l.Add(Warningf(g.Span(0, 1), "w", "W", "other file"))
	l.Sort()
	var b bytes.Buffer
	p := &Printer{MaxPerFile: 2}
	if err := p.Text(&b, l); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if !strings.HasPrefix(line, "  ") {
			got = append(got, line)
		}
	}
	want := []string{
		"f.rolltpl:1:1: error: E [e]",
		"f.rolltpl:1:1: warning: W [w]",
		"f.rolltpl:2:1: error: E [e]",
		"f.rolltpl:2:1: warning: W [w]",
		"g.rolltpl:1:1: warning: W [w]",
		"f.rolltpl: 1 more error and 5 more warnings not shown (--diags json lists them all)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("capped text mismatch (-want +got):\n%s", diff)
	}
	b.Reset()
	p.MaxPerFile = 0
	_ = p.Text(&b, l)
	if n := strings.Count(b.String(), ": warning: ") + strings.Count(b.String(), ": error: "); n != len(l) {
		t.Errorf("uncapped text printed %d diagnostics, want %d", n, len(l))
	}
	if js := p.ToJSON(l); len(js) != len(l) {
		t.Errorf("JSON has %d diagnostics, want %d", len(js), len(l))
	}
}

// BenchmarkText1MB prints, uncapped, one diagnostic on each of 6 426 lines
// of a 1 MB file (the shape of issue 14's report: 10.7 s before the line
// table was built once per file).
func BenchmarkText1MB(b *testing.B) {
	const n = 6426
	line := strings.Repeat("x", (1<<20)/n-1) + "\n"
	src := []byte(strings.Repeat(line, n))
	f := token.NewFile("f.rolltpl", src)
	var l List
	for i := 0; i < n; i++ {
		l.Add(Warningf(f.Span(len(line)*i, len(line)*i+1), "w", "W", "detail %d", i))
	}
	p := &Printer{Sources: Sources{"f.rolltpl": src}}
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if err := p.Text(io.Discard, l); err != nil {
			b.Fatal(err)
		}
	}
}
