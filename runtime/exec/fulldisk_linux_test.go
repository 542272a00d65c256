//go:build linux

package exec_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	rexec "github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// smallDisk mounts a tmpfs of size bytes on a new directory (root only;
// the test is skipped elsewhere) and unmounts it at the end of the test.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

// TestFullDisk converts onto a disk too small for the output, both ways:
// the error names the file that did not fit and the bytes it needed, and
// nothing is left on the disk.
func TestFullDisk(t *testing.T) {
	m := stdlibModel(t, "qwen3")
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthFor("qwen3", tensor.BF16).write(t, src, 1, 5)
	mca := filepath.Join(dir, "mca")
	if _, err := rexec.ConvertHFToMCA(context.Background(), m, src, mca, rexec.Options{}); err != nil {
		t.Fatal(err)
	}
	var size int64
	entries, _ := os.ReadDir(src)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			size += fi.Size()
		}
	}
	disk := smallDisk(t, size/2)
	for _, c := range []struct {
		name string
		run  func(dst string) error
		want string
	}{
		{"HF to MCA", func(dst string) error {
			_, err := rexec.ConvertHFToMCA(context.Background(), m, src, dst, rexec.Options{})
			return err
		}, `out/iter_0000001/mp_rank_00/model_optim_rng\.pt: reserving [0-9.]+ KiB for the output: no space left on device \([0-9.]+ (B|KiB) free\)`},
		{"MCA to HF", func(dst string) error {
			_, err := rexec.ConvertMCAToHF(context.Background(), m, mca, dst, rexec.Options{})
			return err
		}, `writing \S+/out/model-00001-of-00001\.safetensors: reserving [0-9.]+ KiB for the output: no space left on device \([0-9.]+ (B|KiB) free\)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.run(filepath.Join(disk, "out"))
			if err == nil || !regexp.MustCompile(c.want).MatchString(err.Error()) {
				t.Fatalf("error does not match %q:\n%v", c.want, err)
			}
			if left, _ := os.ReadDir(disk); len(left) != 0 {
				t.Errorf("left on the disk: %v", left)
			}
		})
	}
}

// TestMountPoint converts into an empty mount point (a Docker or
// Kubernetes volume): the checkpoint is written on that file system,
// through a temporary folder inside it. On main the output was written to
// the parent's file system and the final rename failed.
func TestMountPoint(t *testing.T) {
	dir := t.TempDir()
	m, hf, mca := convertPair(t, dir)
	disk := smallDisk(t, 64<<20)
	if _, err := rexec.ConvertHFToMCA(context.Background(), m, hf, disk, rexec.Options{}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, mca, disk)
}
