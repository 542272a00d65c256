package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBuildOutputFolder: build -o into a folder holding other files (a
// project, a git checkout) exits 1 naming them and changes nothing; into
// its own previous build it replaces it. On main the folder was deleted.
func TestBuildOutputFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "proj")
	os.MkdirAll(filepath.Join(dir, ".git"), 0o755)
	os.WriteFile(filepath.Join(dir, ".git", "HEAD"), []byte("ref: refs/heads/main\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "train.py"), []byte("print(1)\n"), 0o644)
	code, _, stderr := run(t, "", "build", "-o", dir, "testdata/good.rolltpl")
	if code != ExitError || !strings.Contains(stderr, "holds files that are not a previous build's: .git/, train.py;") {
		t.Errorf("exit %d: %q", code, stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "train.py")); err != nil || string(b) != "print(1)\n" {
		t.Errorf("the project lost train.py: %v", err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 2 {
		t.Errorf("the folder changed: %v", es)
	}
	out := filepath.Join(t.TempDir(), "pkg")
	for range 2 { // a build, then a rebuild over it
		if code, _, stderr := run(t, "", "build", "-o", out, "testdata/good.rolltpl"); code != ExitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, ".rolltpl-build"))
	if err != nil || !strings.Contains(string(b), "\nmy_model.py\n") {
		t.Errorf("marker: %q %v", b, err)
	}
}

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
