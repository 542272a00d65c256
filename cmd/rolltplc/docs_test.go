package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// mdCitation finds a Markdown document cited in Markdown: as code
// (`lang/spec.md`) or as a relative link target ([spec](lang/spec.md)).
var mdCitation = regexp.MustCompile("`([^`\\s]+\\.md)`|\\]\\(([^)\\s:]+\\.md)(?:#[^)]*)?\\)")

// TestDocsCiteRepoFiles: every Markdown document of the repository cites
// only Markdown documents that are in the repository (relative to the
// repository's root or to the citing file), so a reader of a clone can
// follow each one; a document elsewhere is cited by its URL.
func TestDocsCiteRepoFiles(t *testing.T) {
	root := filepath.Join("..", "..")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".md") {
			return nil
		}
		n++
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(text), "\n") {
			for _, m := range mdCitation.FindAllStringSubmatch(line, -1) {
				cited := m[1] + m[2]
				if !docFileExists(filepath.Join(root, cited)) && !docFileExists(filepath.Join(filepath.Dir(path), cited)) {
					rel, _ := filepath.Rel(root, path)
					t.Errorf("%s:%d cites %s, which is not in the repository", rel, i+1, cited)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("found %d Markdown files below %s", n, root)
	}
}

func docFileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
