package parser

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// checkCacheAgrees parses before with c, then after with c and without a
// cache, and requires identical trees (positions included) and diagnostics.
func checkCacheAgrees(t *testing.T, c *Cache, before, after []byte) {
	t.Helper()
	c.ParseFile("f.rolltpl", before)
	got, gotDiags := c.ParseFile("f.rolltpl", after)
	want, wantDiags := ParseFile("f.rolltpl", after)
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("cached parse differs from a fresh parse of:\n%s", after)
	}
	if diff := cmp.Diff(wantDiags, gotDiags); diff != "" {
		t.Fatalf("diagnostics differ (-fresh +cached):\n%s", diff)
	}
}

// TestCacheEdits edits every stdlib file at many places and checks that the
// cache reuses declarations without changing the result.
func TestCacheEdits(t *testing.T) {
	files, _ := filepath.Glob("../../stdlib/templates/*.rolltpl")
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		c := NewCache()
		for _, at := range []int{0, len(src) / 7, len(src) / 3, len(src) / 2, len(src) - 1} {
			for _, ins := range []string{"x", "\n", "}", "# c\n", "\"", "template t {}\n"} {
				edited := append(append(append([]byte{}, src[:at]...), ins...), src[at:]...)
				checkCacheAgrees(t, c, src, edited)
				checkCacheAgrees(t, c, edited, src)
			}
		}
	}
}

// FuzzCache checks the cache against fresh parses for arbitrary edits.
func FuzzCache(f *testing.F) {
	src, _ := os.ReadFile("../../stdlib/templates/common.rolltpl")
	f.Add(src, 100, "x")
	f.Add([]byte("template a {}\ntemplate b { weights { rename \"a\" -> \"b\" } }\n"), 14, "\n\n")
	f.Fuzz(func(t *testing.T, src []byte, at int, ins string) {
		if at < 0 || at > len(src) {
			return
		}
		edited := append(append(append([]byte{}, src[:at]...), ins...), src[at:]...)
		checkCacheAgrees(t, NewCache(), src, edited)
	})
}

// TestScanMatchesLexer checks the hand-written scanner's comments against
// participle's lexer on the stdlib.
func TestScanMatchesLexer(t *testing.T) {
	files, _ := filepath.Glob("../../stdlib/*/*.rolltpl")
	for _, file := range files {
		src, _ := os.ReadFile(file)
		toks, err := fileParser.Lex(file, bytesReader(src))
		if err != nil {
			t.Fatal(err)
		}
		var want []span
		for _, tk := range toks {
			if tk.Type == Lexer.Symbols()["Comment"] {
				end := tk.Pos.Offset + len(tk.Value)
				for end > tk.Pos.Offset && (src[end-1] == ' ' || src[end-1] == '\t' || src[end-1] == '\r') {
					end--
				}
				want = append(want, span{tk.Pos.Offset, end})
			}
		}
		if diff := cmp.Diff(want, scan(src).comments, cmp.AllowUnexported(span{})); diff != "" {
			t.Errorf("%s: comments differ (-lexer +scan):\n%s", file, diff)
		}
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
