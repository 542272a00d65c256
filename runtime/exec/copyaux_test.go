package exec_test

import (
	"context"
	"fmt"
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

// TestCopiedLinkRelativeSnapshot: a Hugging Face cache snapshot given as
// a relative path (--from hub/models--org--m/snapshots/REV), whose files
// link into ../../blobs, converts: on main its tokenizer file was refused
// as a link out of the source folder (a regression from the release
// before, which copied it).
func TestCopiedLinkRelativeSnapshot(t *testing.T) {
	m := stdlibModel(t, "llama")
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	synthFor("llama", tensor.BF16).write(t, plain, 1, 1)
	repo := filepath.Join(dir, "hub", "models--org--tiny")
	snap := filepath.Join(repo, "snapshots", "0123abcd")
	for _, d := range []string{snap, filepath.Join(repo, "blobs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(plain)
	for i, e := range entries {
		blob := fmt.Sprintf("blob%02d", i)
		if err := os.Rename(filepath.Join(plain, e.Name()), filepath.Join(repo, "blobs", blob)); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..", "..", "blobs", blob), filepath.Join(snap, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	res, err := exec.ConvertHFToMCA(context.Background(), m, filepath.Join("hub", "models--org--tiny", "snapshots", "0123abcd"), "mca", exec.Options{})
	if err != nil {
		t.Fatalf("relative cache snapshot: %v", err)
	}
	if len(res.Copied) == 0 {
		t.Errorf("no file copied along")
	}
}
