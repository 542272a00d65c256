//go:build unix

package exec_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/outdir"
	"github.com/rolltpl/rolltpl/runtime/tempname"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// convertPair writes a small qwen3 HF checkpoint and its one-job MCA
// conversion (the reference outputs) in dir.
func convertPair(t *testing.T, dir string) (m *exec.Model, hf, mca string) {
	t.Helper()
	m = stdlibModel(t, "qwen3")
	hf, mca = filepath.Join(dir, "hf"), filepath.Join(dir, "mca")
	synthFor("qwen3", tensor.BF16).write(t, hf, 2, 5)
	if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	return m, hf, mca
}

// TestForceRefusesForeignFiles: --force onto a folder holding anything
// that is not a checkpoint's own file (notes, a git checkout, a training
// run's logs, a file among the rank files, a symbolic link) is refused,
// the error names the files (the first few, then a count), and nothing in
// the folder changes. On main these were all deleted.
func TestForceRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	m, hf, mca := convertPair(t, dir)
	for _, c := range []struct {
		name  string
		setup func(dst string)
		want  string
	}{
		{"notes", func(dst string) { writeFileAll(t, filepath.Join(dst, "notes.txt"), []byte("mine")) }, `: notes\.txt; --force replaces only`},
		{"git", func(dst string) {
			writeFileAll(t, filepath.Join(dst, ".git", "HEAD"), []byte("ref: refs/heads/main"))
			writeFileAll(t, filepath.Join(dst, "config.json"), []byte("{}"))
		}, `: \.git/; --force`},
		{"run", func(dst string) {
			copyTree(t, mca, dst)
			writeFileAll(t, filepath.Join(dst, "iter_0000001", "mp_rank_00", "optimizer_state.log"), []byte("x"))
			writeFileAll(t, filepath.Join(dst, "iter_0000002", "mp_rank_00", "model_optim_rng.pt"), []byte("x"))
			writeFileAll(t, filepath.Join(dst, "runs", "events.out"), []byte("x"))
		}, `: iter_0000001/mp_rank_00/optimizer_state\.log, iter_0000002/, runs/; --force`},
		{"symlink", func(dst string) {
			os.MkdirAll(dst, 0o755)
			os.Symlink("/etc", filepath.Join(dst, "etc"))
		}, `: etc; --force`},
		{"many", func(dst string) {
			for i := range 8 {
				writeFileAll(t, filepath.Join(dst, fmt.Sprintf("note%d.md", i)), nil)
			}
		}, `: note0\.md, note1\.md, note2\.md, note3\.md, note4\.md and 3 more; --force`},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, way := range []string{"HF to MCA", "MCA to HF"} {
				dst := filepath.Join(t.TempDir(), "out")
				c.setup(dst)
				before := snapshot(t, dst)
				var err error
				if way == "HF to MCA" {
					_, err = exec.ConvertHFToMCA(context.Background(), m, hf, dst, exec.Options{Force: true})
				} else {
					_, err = exec.ConvertMCAToHF(context.Background(), m, mca, dst, exec.Options{Force: true})
				}
				if err == nil || !regexp.MustCompile(c.want).MatchString(err.Error()) {
					t.Errorf("%s: error does not match %q:\n%v", way, c.want, err)
				}
				if after := snapshot(t, dst); !slices.Equal(before, after) {
					t.Errorf("%s: the destination changed:\nbefore %v\nafter  %v", way, before, after)
				}
				if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), ".*rolltpl-tmp*")); len(left) > 0 {
					t.Errorf("%s: temporaries left: %v", way, left)
				}
			}
		})
	}
}

// TestForceReplacesCheckpoint: --force onto a previous conversion's
// output (with more HF shards than the new one, a copied README, a
// stale rank-file temporary) replaces it: the result is exactly the
// fresh conversion.
func TestForceReplacesCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m, hf, mca := convertPair(t, dir)
	writeFileAll(t, filepath.Join(hf, "README.md"), []byte("# model"))
	writeFileAll(t, filepath.Join(mca, "README.md"), []byte("# model"))
	back := filepath.Join(dir, "back")
	if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	// HF → MCA onto an old HF checkpoint holding more shards.
	dst := filepath.Join(dir, "dst")
	if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, dst, exec.Options{MaxShardSize: 4096}); err != nil {
		t.Fatal(err)
	}
	writeFileAll(t, filepath.Join(dst, "README.md"), []byte("# old"))
	if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, dst, exec.Options{Force: true}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, back, dst)
	// MCA over HF, then HF over MCA.
	if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, dst, exec.Options{Force: true}); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "fresh")
	if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, fresh, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, fresh, dst)
}

// TestExistingDestination: an existing --to folder is written through,
// never replaced: its mode and group stay, a symbolic link to a folder
// stays a link with the checkpoint in its target, and a mount point (a
// file system of its own, TestMountPoint) receives the checkpoint. On
// main the folder was replaced by a 0755 one, the link by a folder, and a
// mount point failed at the final rename.
func TestExistingDestination(t *testing.T) {
	dir := t.TempDir()
	m, hf, mca := convertPair(t, dir)
	t.Run("mode and group", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "out")
		os.Mkdir(dst, 0o700)
		if err := os.Chmod(dst, 0o2750); err != nil {
			t.Fatal(err)
		}
		gid := os.Getgid()
		if os.Geteuid() == 0 {
			gid = 4242
			if err := os.Chown(dst, -1, gid); err != nil {
				t.Fatal(err)
			}
		}
		before, _ := os.Stat(dst)
		if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, dst, exec.Options{}); err != nil {
			t.Fatal(err)
		}
		after, err := os.Stat(dst)
		if err != nil {
			t.Fatal(err)
		}
		if after.Mode() != before.Mode() || !os.SameFile(before, after) {
			t.Errorf("destination replaced: mode %v, was %v; same folder: %v", after.Mode(), before.Mode(), os.SameFile(before, after))
		}
		if g := int(after.Sys().(*syscall.Stat_t).Gid); g != gid {
			t.Errorf("group %d, was %d", g, gid)
		}
		compareTrees(t, mca, dst)
	})
	t.Run("symlink", func(t *testing.T) {
		d := t.TempDir()
		target, link := filepath.Join(d, "target"), filepath.Join(d, "link")
		os.Mkdir(target, 0o755)
		os.Symlink(target, link)
		if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, link, exec.Options{}); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the link was replaced: %v %v", st.Mode(), err)
		}
		compareTrees(t, mca, target)
		// With --force, the checkpoint in the target is replaced, through
		// the link.
		if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, link, exec.Options{Force: true}); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the link was replaced by --force: %v", err)
		}
		if !exec.IsMCA(mca) || exec.IsMCA(target) {
			t.Errorf("the target does not hold the HF checkpoint")
		}
		// A link to nothing is refused.
		dangling := filepath.Join(d, "dangling")
		os.Symlink(filepath.Join(d, "nowhere"), dangling)
		if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, dangling, exec.Options{}); err == nil || !strings.Contains(err.Error(), "which does not exist") {
			t.Errorf("dangling link: %v", err)
		}
	})
}

// TestStaleTemporaries: temporaries left by a killed conversion (beside a
// --to that does not exist, inside an existing one) are removed by the
// next run and reported; the temporary of a conversion that may still run
// (another host's) stops it, named.
func TestStaleTemporaries(t *testing.T) {
	dir := t.TempDir()
	m, hf, mca := convertPair(t, dir)
	cmd := osexec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	self := tempname.Self()
	dead := fmt.Sprintf("%s-%d-%d-1", self.Host, cmd.Process.Pid, self.Start)
	other := fmt.Sprintf("%s-%d-%d-1", "node-b", os.Getpid(), self.Start)

	d := t.TempDir()
	dst := filepath.Join(d, "out")
	beside := filepath.Join(d, ".out.rolltpl-tmp-"+dead)
	writeFileAll(t, filepath.Join(beside, "iter_0000001", "mp_rank_00", "model_optim_rng.pt"), make([]byte, 1000))
	unrelated := filepath.Join(d, ".out.rolltpl-tmp-12345") // not named by this version: left alone
	writeFileAll(t, unrelated, nil)
	var notes []string
	notice := func(s string) { notes = append(notes, s) }
	if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, dst, exec.Options{Notice: notice}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(beside); err == nil {
		t.Errorf("stale temporary %s left", beside)
	}
	if _, err := os.Stat(unrelated); err != nil {
		t.Errorf("unrelated file removed")
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "removed "+beside+", left by an interrupted conversion (pid ") {
		t.Errorf("notices: %q", notes)
	}
	compareTrees(t, mca, dst)

	// Inside an existing destination.
	empty := filepath.Join(d, "empty")
	inside := filepath.Join(empty, ".rolltpl-tmp-"+dead)
	writeFileAll(t, filepath.Join(inside, "model-00001-of-00001.safetensors"), make([]byte, 1000))
	notes = nil
	if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, empty, exec.Options{Notice: notice}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(inside); err == nil || len(notes) != 1 {
		t.Errorf("stale temporary inside the destination: %v; notices %q", err, notes)
	}
	// A conversion killed while moving its entries into an existing
	// folder: its journal names them, and those already moved are
	// removed with its temporary folder, so the rerun needs no --force.
	moving := filepath.Join(d, "moving")
	tmpIn := filepath.Join(moving, ".rolltpl-tmp-"+dead)
	writeFileAll(t, filepath.Join(tmpIn, ".rolltpl-moving"), []byte("iter_0000001\nmca_config.json\nlatest_checkpointed_iteration.txt\n"))
	writeFileAll(t, filepath.Join(tmpIn, "latest_checkpointed_iteration.txt"), []byte("1")) // not moved yet
	writeFileAll(t, filepath.Join(moving, "iter_0000001", "mp_rank_00", "model_optim_rng.pt"), []byte("partial"))
	writeFileAll(t, filepath.Join(moving, "mca_config.json"), []byte("{}"))
	notes = nil
	if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, moving, exec.Options{Notice: notice}); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 3 || !strings.Contains(strings.Join(notes, "\n"), "removed "+filepath.Join(moving, "iter_0000001")+", moved into place by an interrupted conversion") {
		t.Errorf("notices: %q", notes)
	}
	compareTrees(t, mca, moving)
	// Another host's temporary may belong to a running conversion.
	busy := filepath.Join(d, "busy")
	live := filepath.Join(busy, ".rolltpl-tmp-"+other)
	os.MkdirAll(live, 0o700)
	_, err := exec.ConvertHFToMCA(context.Background(), m, hf, busy, exec.Options{})
	if err == nil || !strings.Contains(err.Error(), live+" is the temporary folder of another conversion (pid ") {
		t.Errorf("live temporary: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live temporary was removed")
	}
}

// copyTree copies the files of src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	for rel, b := range readTree(t, src) {
		writeFileAll(t, filepath.Join(dst, rel), b)
	}
}

// writeFileAll writes a file, creating its folder.
func writeFileAll(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
}

// TestVerifyTemporaries: Verify removes the temporary folder a killed
// Verify left in its TempDir (reporting it) and leaves a folder kept with
// Keep by an earlier run, and its own is gone afterwards.
func TestVerifyTemporaries(t *testing.T) {
	m := stdlibModel(t, "qwen3")
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthFor("qwen3", tensor.BF16).write(t, src, 1, 7)
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	rep, err := exec.Verify(context.Background(), m, src, exec.VerifyOptions{TempDir: tmp, Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	cmd := osexec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	self := tempname.Self()
	stale := filepath.Join(tmp, fmt.Sprintf("rolltpl-verify-%s-%d-%d-1", self.Host, cmd.Process.Pid, self.Start))
	writeFileAll(t, filepath.Join(stale, "mca", "mca_config.json"), []byte("{}"))
	var notes []string
	if _, err := exec.Verify(context.Background(), m, src, exec.VerifyOptions{TempDir: tmp, Notice: func(s string) { notes = append(notes, s) }}); err != nil {
		t.Fatal(err)
	}
	es, _ := os.ReadDir(tmp)
	if len(es) != 1 || filepath.Join(tmp, es[0].Name()) != rep.Dir {
		t.Errorf("left in the temporary folder: %v; want only the kept %s", es, rep.Dir)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "removed "+stale) {
		t.Errorf("notices: %q", notes)
	}
}

// TestSyncEverything: with Sync, every file and folder of an output is
// fsynced before the conversion returns, whoever wrote it (rank files,
// shards, the index, configs, copied tokenizer files), for a conversion
// committed through a temporary folder (both directions) and for a
// multi-job conversion's finalize, which syncs the rank jobs' files too
// and then the tracker and, last, the folder holding it.
func TestSyncEverything(t *testing.T) {
	var synced []string
	saved := outdir.Fsync
	outdir.Fsync = func(f *os.File) error { synced = append(synced, f.Name()); return nil }
	t.Cleanup(func() { outdir.Fsync = saved })
	dir := t.TempDir()
	m := stdlibModel(t, "llama")
	src, mca, hf, jobs := filepath.Join(dir, "hf"), filepath.Join(dir, "mca"), filepath.Join(dir, "back"), filepath.Join(dir, "jobs")
	synthFor("llama", tensor.BF16).write(t, src, 2, 3)
	if err := os.WriteFile(filepath.Join(src, "tokenizer.json"), []byte(`{"version": "1.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// rel names the synced paths relative to the output folder, a
	// temporary folder's name dropped.
	rel := func(out string) map[string]bool {
		got := map[string]bool{}
		for _, p := range synced {
			r, err := filepath.Rel(out, p)
			if err != nil || strings.HasPrefix(r, "..") {
				// the temporary folder beside out, or its parent
				r, err = filepath.Rel(filepath.Dir(out), p)
				if err != nil {
					t.Fatal(err)
				}
				if i := strings.Index(r, ".rolltpl-tmp-"); i >= 0 {
					k := strings.IndexByte(r[i:], '/')
					if k < 0 {
						r = "."
					} else {
						r = r[i+k+1:]
					}
				} else if r == "." {
					r = ".."
				}
			}
			got[r] = true
			// written through NAME.tmp renamed to NAME, the folder
			// fsynced after
			got[strings.TrimSuffix(r, ".tmp")] = true
		}
		return got
	}
	// want lists the files and folders of out.
	want := func(out string) []string {
		var all []string
		filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
			r, _ := filepath.Rel(out, p)
			all = append(all, r)
			return err
		})
		return all
	}
	for _, tc := range []struct {
		name string
		run  func() (string, error)
	}{
		{"HF to MCA", func() (string, error) {
			_, err := exec.ConvertHFToMCA(ctx, m, src, mca, exec.Options{Sync: true, Layout: exec.Layout{TP: 2}})
			return mca, err
		}},
		{"MCA to HF", func() (string, error) {
			_, err := exec.ConvertMCAToHF(ctx, m, mca, hf, exec.Options{Sync: true, MaxShardSize: 4 << 10})
			return hf, err
		}},
		{"finalize", func() (string, error) {
			l := exec.Layout{TP: 2}
			if _, err := exec.ConvertHFToMCA(ctx, m, src, jobs, exec.Options{Layout: l, Ranks: []int{0, 1}}); err != nil {
				return jobs, err
			}
			synced = nil
			_, err := exec.ConvertHFToMCA(ctx, m, src, jobs, exec.Options{Sync: true, Layout: l, Finalize: true})
			return jobs, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synced = nil
			out, err := tc.run()
			if err != nil {
				t.Fatal(err)
			}
			got := rel(out)
			var missing []string
			for _, r := range want(out) {
				if !got[r] {
					missing = append(missing, r)
				}
			}
			if len(missing) > 0 {
				t.Errorf("not fsynced: %q (fsynced %q)", missing, synced)
			}
			if tc.name == "finalize" {
				last := synced[len(synced)-2:]
				if w := []string{filepath.Join(jobs, exec.TrackerName+".tmp"), jobs}; !slices.Equal(last, w) {
					t.Errorf("last fsynced %q, want %q", last, w)
				}
			} else if !got[".."] {
				t.Errorf("the folder holding %s was not fsynced after the rename (fsynced %q)", out, synced)
			}
		})
	}
}
