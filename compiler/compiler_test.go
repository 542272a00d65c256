package compiler_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/stdlib"
)

var errorComment = regexp.MustCompile(`#\s*ERROR\s+("(?:[^"\\]|\\.)*")`)

// TestErrorCorpus compiles each testdata/errors file and checks that the
// diagnostics are exactly the `# ERROR "code: substring"` comments: one
// diagnostic per comment, on the comment's line, whose code matches and
// whose summary or detail contains the substring.
func TestErrorCorpus(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "errors", "*.rolltpl"))
	if len(files) == 0 {
		t.Fatal("no test files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			type want struct {
				code, text string
				matched    bool
			}
			wants := map[int][]*want{}
			for i, line := range strings.Split(string(src), "\n") {
				for _, m := range errorComment.FindAllStringSubmatch(line, -1) {
					s, err := strconv.Unquote(m[1])
					if err != nil {
						t.Fatalf("line %d: bad ERROR comment: %v", i+1, err)
					}
					code, text, _ := strings.Cut(s, ":")
					wants[i+1] = append(wants[i+1], &want{code: code, text: strings.TrimSpace(text)})
				}
			}
			res := compiler.Compile([]string{file}, compiler.Options{Lib: stdlib.Templates()})
			for _, d := range res.Diags {
				line := d.Subject.Start.Line
				found := false
				for _, w := range wants[line] {
					if !w.matched && w.code == d.Code && strings.Contains(d.Summary+": "+d.Detail, w.text) {
						w.matched, found = true, true
						break
					}
				}
				if !found {
					t.Errorf("%s: unexpected diagnostic", d.Error())
				}
				if d.Subject.End.Offset < d.Subject.Start.Offset || d.Subject.End.Offset > len(src) {
					t.Errorf("%s: range %v outside the file", d.Error(), d.Subject)
				}
			}
			for line, ws := range wants {
				for _, w := range ws {
					if !w.matched {
						t.Errorf("%s:%d: missing diagnostic %s: %q", file, line, w.code, w.text)
					}
				}
			}
		})
	}
}

// TestStdlibCompilesClean compiles the whole stdlib with no diagnostics.
func TestStdlibCompilesClean(t *testing.T) {
	paths, err := compiler.LibPaths(stdlib.Templates())
	if err != nil {
		t.Fatal(err)
	}
	res := compiler.Compile(paths, compiler.Options{Lib: stdlib.Templates()})
	for _, d := range res.Diags {
		t.Errorf("%s", d.Error())
	}
	if got := len(res.Program.Templates); got != 11 {
		t.Errorf("stdlib has %d templates, want 11", got)
	}
}
