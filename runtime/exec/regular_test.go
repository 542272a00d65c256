//go:build unix

package exec_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// withTimeout fails the test when f has not returned in 30 s (a read of
// a FIFO blocks forever).
func withTimeout(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("blocked")
	}
	return nil
}

// TestSourceFIFOs: a weight file, index, rank file or tokenizer file
// that is a FIFO is refused (or, for the files copied along, skipped) at
// once, never read.
func TestSourceFIFOs(t *testing.T) {
	m := stdlibModel(t, "llama")
	for _, tc := range []struct {
		name, file, want string
		shards           int
	}{
		{"single safetensors", "model.safetensors", "model.safetensors: a named pipe (FIFO), not a regular file", 1},
		{"index", "model.safetensors.index.json", "model.safetensors.index.json: a named pipe (FIFO)", 2},
		{"shard", "model-00002-of-00002.safetensors", `"model-00002-of-00002.safetensors" is not a regular file`, 2},
		{"tokenizer file (skipped)", "tokenizer_config.json", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "hf")
			synthFor("llama", tensor.BF16).write(t, src, tc.shards, 1)
			p := filepath.Join(src, tc.file)
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Skip("mkfifo:", err)
			}
			dst := filepath.Join(dir, "mca")
			err := withTimeout(t, func() error {
				_, err := exec.ConvertHFToMCA(context.Background(), m, src, dst, exec.Options{})
				return err
			})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(filepath.Join(dst, tc.file)); !os.IsNotExist(err) {
					t.Errorf("the FIFO was copied: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("rank file", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "hf")
		synthFor("llama", tensor.BF16).write(t, src, 1, 1)
		mca := filepath.Join(dir, "mca")
		if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{}); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(mca, "iter_0000001", "mp_rank_00", exec.MCACheckpointPT)
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Skip("mkfifo:", err)
		}
		err := withTimeout(t, func() error {
			_, err := exec.ConvertMCAToHF(context.Background(), m, mca, filepath.Join(dir, "back"), exec.Options{})
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "model_optim_rng.pt: a named pipe (FIFO)") {
			t.Errorf("error %v", err)
		}
	})
}

// TestCopiedFiles: a source file linked out of the source folder is
// refused, naming the link and its target; a Hugging Face cache snapshot
// (files linked into ../../blobs) converts; copies keep no wider mode
// than their source.
func TestCopiedFiles(t *testing.T) {
	m := stdlibModel(t, "llama")
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	writeFile(t, secret, []byte("password"))
	os.Chmod(secret, 0o600)

	src := filepath.Join(dir, "hf")
	synthFor("llama", tensor.BF16).write(t, src, 1, 1)
	os.Remove(filepath.Join(src, "tokenizer_config.json"))
	if err := os.Symlink(secret, filepath.Join(src, "tokenizer_config.json")); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "mca")
	_, err := exec.ConvertHFToMCA(context.Background(), m, src, dst, exec.Options{})
	if err == nil || !strings.Contains(err.Error(), "tokenizer_config.json is a symbolic link to "+secret+", outside the source folder") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("destination written: %v", err)
	}

	// A cache snapshot: every file a link into the model's blobs/.
	repo := filepath.Join(dir, "hub", "models--org--tiny")
	snap := filepath.Join(repo, "snapshots", "0123abcd")
	blobs := filepath.Join(repo, "blobs")
	for _, d := range []string{snap, blobs} {
		os.MkdirAll(d, 0o755)
	}
	plain := filepath.Join(dir, "plain")
	synthFor("llama", tensor.BF16).write(t, plain, 1, 1)
	os.Chmod(filepath.Join(plain, "tokenizer_config.json"), 0o640)
	entries, _ := os.ReadDir(plain)
	for i, e := range entries {
		blob := filepath.Join(blobs, strings.Repeat("ab", 4)+string(rune('a'+i)))
		if err := os.Rename(filepath.Join(plain, e.Name()), blob); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..", "..", "blobs", filepath.Base(blob)), filepath.Join(snap, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	dst = filepath.Join(dir, "mca-snap")
	res, err := exec.ConvertHFToMCA(context.Background(), m, snap, dst, exec.Options{})
	if err != nil {
		t.Fatalf("cache snapshot: %v", err)
	}
	if len(res.Copied) != 2 {
		t.Errorf("copied %v", res.Copied)
	}
	st, err := os.Stat(filepath.Join(dst, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("tokenizer_config.json copied with mode %v, source 0640", perm)
	}
}
