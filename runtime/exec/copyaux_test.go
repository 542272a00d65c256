package exec_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestCopiedLinkRelativeSource: a source folder given as a relative path
// (rolltplc convert --from hf) whose tokenizer file is a link to another
// file inside it converts and copies the file; the link check compares
// absolute paths, not a relative target with the absolute source folder.
func TestCopiedLinkRelativeSource(t *testing.T) {
	m := stdlibModel(t, "llama")
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthFor("llama", tensor.BF16).write(t, src, 1, 1)
	cfg := filepath.Join(src, "tokenizer_config.json")
	if err := os.Rename(cfg, filepath.Join(src, "tok.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tok.json", cfg); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	if _, err := exec.ConvertHFToMCA(context.Background(), m, "hf", "mca", exec.Options{}); err != nil {
		t.Fatalf("relative source with a link inside it: %v", err)
	}
	want, _ := os.ReadFile(filepath.Join(src, "tok.json"))
	got, err := os.ReadFile(filepath.Join(dir, "mca", "tokenizer_config.json"))
	if err != nil || string(got) != string(want) {
		t.Errorf("tokenizer_config.json copied as %q (%v); want %q", got, err, want)
	}
}
