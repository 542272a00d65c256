package langtest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// UpdateEnv is the environment variable that makes [Run] rewrite expected
// sections instead of failing.
const UpdateEnv = "ROLLTPL_UPDATE"

// Update reports whether golden sections are to be rewritten.
func Update() bool { return os.Getenv(UpdateEnv) == "1" }

// Case is one txtar file of a golden test.
type Case struct {
	// Name is the file's base name without ".txtar".
	Name string
	// Path is the file's path.
	Path    string
	Archive *Archive

	changed bool
}

// Section returns the data of section name; the test fails at once when the
// archive has no such section.
func (c *Case) Section(t testing.TB, name string) []byte {
	t.Helper()
	data, ok := c.Archive.Get(name)
	if !ok {
		t.Fatalf("%s: no section %q", c.Path, name)
	}
	return data
}

// Has reports whether the archive has section name.
func (c *Case) Has(name string) bool {
	_, ok := c.Archive.Get(name)
	return ok
}

// Check compares got with section name. On a mismatch it reports a diff, or
// under ROLLTPL_UPDATE=1 records got as the new expected text (written back
// when the case ends). got gets a final newline if it is not empty and lacks
// one, as a txtar section cannot hold anything else.
func (c *Case) Check(t testing.TB, name string, got []byte) {
	t.Helper()
	got = fixNL(got)
	want, ok := c.Archive.Get(name)
	if ok && bytes.Equal(want, got) {
		return
	}
	if Update() {
		c.Archive.Set(name, got)
		c.changed = true
		t.Logf("%s: updated section %q", c.Path, name)
		return
	}
	if !ok {
		t.Errorf("%s: no section %q; got:\n%s\n(run with %s=1 to add it)", c.Path, name, got, UpdateEnv)
		return
	}
	t.Errorf("%s: section %q mismatch (-want +got):\n%s\n(run with %s=1 to update)", c.Path, name, cmp.Diff(string(want), string(got)), UpdateEnv)
}

// Run calls fn, in a subtest named after the file, for every file matching
// pattern (a [filepath.Glob] pattern such as "testdata/*.txtar"). Sections
// changed by [Case.Check] under ROLLTPL_UPDATE=1 are written back to the file
// when fn returns. It fails when nothing matches.
func Run(t *testing.T, pattern string, fn func(t *testing.T, c *Case)) {
	t.Helper()
	paths, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no files match %s", pattern)
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".txtar")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			c := &Case{Name: name, Path: path, Archive: Parse(data)}
			defer func() {
				if !c.changed {
					return
				}
				if err := os.WriteFile(path, Format(c.Archive), 0o644); err != nil {
					t.Errorf("writing %s: %v", path, err)
				}
			}()
			fn(t, c)
		})
	}
}
