package stdlib_test

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/stdlib"
)

// structural matches lines that carry no content of their own: braces and
// section openers.
var structural = regexp.MustCompile(`^(\}|\{|\{\}|(config|mca|weights|parallel)\s*\{|import\s+"[a-z0-9_]+")$`)

// TestNoRepeatedBlocks enforces that shared parts of the stdlib are written
// once: no run of three or more content lines (after normalising spaces and
// dropping comments) appears twice, within a file or across files.
func TestNoRepeatedBlocks(t *testing.T) {
	const window = 3
	type loc struct {
		file string
		line int
	}
	type line struct {
		text string
		loc  loc
	}
	seen := map[string]loc{}
	lib := stdlib.Templates()
	entries, _ := fs.ReadDir(lib, ".")
	for _, e := range entries {
		src, err := fs.ReadFile(lib, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		// Runs of content lines, split at structural lines so that a window
		// never spans two sections.
		var runs [][]line
		var cur []line
		for i, l := range strings.Split(string(src), "\n") {
			if j := strings.Index(l, "#"); j >= 0 {
				l = l[:j]
			}
			l = strings.Join(strings.Fields(l), " ")
			if l == "" {
				continue
			}
			if structural.MatchString(l) {
				runs, cur = append(runs, cur), nil
				continue
			}
			cur = append(cur, line{l, loc{e.Name(), i + 1}})
		}
		runs = append(runs, cur)
		for _, lines := range runs {
			for i := 0; i+window <= len(lines); i++ {
				var parts []string
				for _, l := range lines[i : i+window] {
					parts = append(parts, l.text)
				}
				key := strings.Join(parts, "\n")
				if prev, ok := seen[key]; ok && prev != lines[i].loc {
					t.Errorf("%s:%d repeats %s:%d; declare the block once and `use` it:\n%s",
						lines[i].loc.file, lines[i].loc.line, prev.file, prev.line, key)
					continue
				}
				seen[key] = lines[i].loc
			}
		}
	}
	if len(seen) == 0 {
		t.Fatal("no stdlib lines read")
	}
}
