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

// TestFullDiskEveryFile converts onto a disk on which the first output
// files fit and a later one does not (two rank files at tp=2, several HF
// shards): the full disk is reported before any tensor byte is written,
// naming the file that did not fit, and nothing is left. On main each file
// was reserved when opened, so the first files were written first.
func TestFullDiskEveryFile(t *testing.T) {
	dir := t.TempDir()
	m, hf, mca := convertPair(t, dir)
	var size int64
	for _, b := range readTree(t, mca) {
		size += int64(len(b))
	}
	for _, c := range []struct {
		name string
		run  func(dst string, progress func(rexec.Progress)) error
		want string
	}{
		{"HF to MCA tp=2", func(dst string, progress func(rexec.Progress)) error {
			_, err := rexec.ConvertHFToMCA(context.Background(), m, hf, dst, rexec.Options{Layout: rexec.Layout{TP: 2}, Progress: progress})
			return err
		}, `out/iter_0000001/mp_rank_01/model_optim_rng\.pt: reserving [0-9.]+ KiB for the output: no space left on device \([0-9.]+ (B|KiB) free\); the 2 rank files of the output need [0-9.]+ KiB in all`},
		{"MCA to HF 4 shards", func(dst string, progress func(rexec.Progress)) error {
			_, err := rexec.ConvertMCAToHF(context.Background(), m, mca, dst, rexec.Options{MaxShardSize: size / 4, Progress: progress})
			return err
		}, `writing \S+/out/model-0000[2-9]-of-0000[4-9]\.safetensors: reserving [0-9.]+ KiB for the output: no space left on device \([0-9.]+ (B|KiB) free\); the [4-9] shards of the output need [0-9.]+ KiB in all`},
	} {
		t.Run(c.name, func(t *testing.T) {
			disk := smallDisk(t, size*6/10)
			var written int64
			err := c.run(filepath.Join(disk, "out"), func(p rexec.Progress) { written = max(written, p.Bytes) })
			if err == nil || !regexp.MustCompile(c.want).MatchString(err.Error()) {
				t.Fatalf("error does not match %q:\n%v", c.want, err)
			}
			if written != 0 {
				t.Errorf("%d tensor bytes written before the full disk was reported", written)
			}
			if left, _ := os.ReadDir(disk); len(left) != 0 {
				t.Errorf("left on the disk: %v", left)
			}
		})
	}
}
