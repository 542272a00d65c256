package compiler_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/stdlib"
)

var errorComment = regexp.MustCompile(`(ERROR|WARNING)\s+("(?:[^"\\]|\\.)*")`)

// TestErrorCorpus compiles each testdata/errors file against the stdlib
// schemas and checks that the diagnostics are exactly the `# ERROR "code:
// substring"` and `# WARNING "code: substring"` comments: one diagnostic per
// expectation, on its line, with that severity and code, whose summary or
// detail contains the substring.
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
				severity   diag.Severity
				code, text string
				matched    bool
			}
			wants := map[int][]*want{}
			for i, line := range strings.Split(string(src), "\n") {
				_, comment, ok := strings.Cut(line, "#")
				if !ok {
					continue
				}
				for _, m := range errorComment.FindAllStringSubmatch(comment, -1) {
					sev := diag.Error
					if m[1] == "WARNING" {
						sev = diag.Warning
					}
					s, err := strconv.Unquote(m[2])
					if err != nil {
						t.Fatalf("line %d: bad ERROR comment: %v", i+1, err)
					}
					code, text, _ := strings.Cut(s, ":")
					wants[i+1] = append(wants[i+1], &want{severity: sev, code: code, text: strings.TrimSpace(text)})
				}
			}
			res := compiler.Compile([]string{file}, compiler.Options{Lib: stdlib.Templates(), SchemaLib: stdSchemas()})
			for _, d := range res.Diags {
				if d.Code == "no-schema" && !strings.Contains(string(src), "no-schema") {
					continue // made-up model types
				}
				line := d.Subject.Start.Line
				found := false
				for _, w := range wants[line] {
					if !w.matched && w.severity == d.Severity && w.code == d.Code && strings.Contains(d.Summary+": "+d.Detail, w.text) {
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

// knownROLLQuirks are the warning codes the stdlib may produce: ROLL's own
// registrations keep these mistakes, and the checker reports them.
var knownROLLQuirks = map[string]bool{"missing-bias-op": true, "hf-key-absent": true, "mca-key-ignored": true, "scale-op": true}

// TestStdlibCompilesClean compiles the whole stdlib, checked against the
// stdlib schemas: no errors, and only warnings about ROLL's known quirks.
func TestStdlibCompilesClean(t *testing.T) {
	paths, err := compiler.LibPaths(stdlib.Templates())
	if err != nil {
		t.Fatal(err)
	}
	res := compiler.Compile(paths, compiler.Options{Lib: stdlib.Templates(), SchemaLib: stdSchemas()})
	for _, d := range res.Diags {
		if d.Severity == diag.Error || !knownROLLQuirks[d.Code] {
			t.Errorf("%s", d.Error())
		} else {
			t.Logf("%s", d.Error())
		}
	}
	if got := len(res.Program.Templates); got != 18 {
		t.Errorf("stdlib has %d templates, want 18", got)
	}
}
