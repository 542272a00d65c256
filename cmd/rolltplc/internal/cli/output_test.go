package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestConvertForceForeignFiles: convert --force onto a folder holding a
// file that is not a checkpoint's exits 1, names it, says --force (never
// "use force") and deletes nothing.
func TestConvertForceForeignFiles(t *testing.T) {
	dir := t.TempDir()
	hf, dst := filepath.Join(dir, "hf"), filepath.Join(dir, "dst")
	writeLlama(t, hf)
	os.MkdirAll(dst, 0o755)
	os.WriteFile(filepath.Join(dst, "notes.md"), []byte("mine"), 0o644)
	os.WriteFile(filepath.Join(dst, "config.json"), []byte("{}"), 0o644)
	code, _, stderr := run(t, "", "convert", "--quiet", "--from", hf, "--to", dst)
	if code != ExitError || !regexp.MustCompile(`is not empty \(config\.json, notes\.md\); pass --force`).MatchString(stderr) {
		t.Errorf("without --force: exit %d: %q", code, stderr)
	}
	code, _, stderr = run(t, "", "convert", "--quiet", "--force", "--from", hf, "--to", dst)
	if code != ExitError || !strings.Contains(stderr, "holds files that are not a checkpoint's: notes.md; --force replaces only") || strings.Contains(stderr, "use force") {
		t.Errorf("--force: exit %d: %q", code, stderr)
	}
	if es, _ := os.ReadDir(dst); len(es) != 2 {
		t.Errorf("the folder changed: %v", es)
	}
}
