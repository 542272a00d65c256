//go:build unix

package outdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/runtime/tempname"
)

// tree lists a folder: relative paths, with the content of files ("/"
// after folders, "-> target" for links).
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := fs.WalkDir(os.DirFS(dir), ".", func(rel string, d fs.DirEntry, err error) error {
		p := filepath.Join(dir, rel)
		switch {
		case err != nil || rel == ".":
		case d.IsDir():
			out[rel+"/"] = ""
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "-> " + target
		default:
			b, _ := os.ReadFile(p)
			out[rel] = string(b)
		}
		return err
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// put writes a file holding content, creating its folder.
func put(t *testing.T, path, content string) {
	t.Helper()
	if err := errors.Join(os.MkdirAll(filepath.Dir(path), 0o755), os.WriteFile(path, []byte(content), 0o644)); err != nil {
		t.Fatal(err)
	}
}

// testOptions accept a folder whose entries are all named old*, out* or
// ".done" (the "last" entry), and collect notices.
func testOptions(notes *[]string) Options {
	return Options{
		Prefix: ".x-tmp-",
		Run:    "test run",
		Label:  "output ",
		Accept: func(dir string, entries []fs.DirEntry) error {
			var bad []string
			for _, e := range entries {
				if n := e.Name(); !strings.HasPrefix(n, "old") && !strings.HasPrefix(n, "out") && n != ".done" {
					bad = append(bad, n)
				}
			}
			if len(bad) > 0 {
				return fmt.Errorf("%s holds %s", dir, NameList(bad))
			}
			return nil
		},
		Last:   []string{".done"},
		Notice: func(s string) { *notes = append(*notes, s) },
	}
}

// write creates an output of dst holding out.txt, out/ and .done, and
// commits it.
func write(dst string, opts Options) (err error) {
	o, err := stage(dst, opts)
	if err != nil {
		return err
	}
	defer o.Abort(&err)
	return o.Commit()
}

// stage creates an output of dst holding out.txt, out/ and .done, not
// committed.
func stage(dst string, opts Options) (*Output, error) {
	o, err := Create(dst, opts)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{"out.txt", filepath.Join("out", "a"), ".done"} {
		err := errors.Join(os.MkdirAll(filepath.Dir(o.Path(f)), 0o755), os.WriteFile(o.Path(f), []byte("new "+f), 0o644))
		if err != nil {
			o.Abort(&err)
			return nil, err
		}
	}
	return o, nil
}

var wantNew = map[string]string{"out.txt": "new out.txt", "out/": "", "out/a": "new out/a", ".done": "new .done"}

// TestCommit: a missing destination (its parents too), an empty folder
// and a previous output the recogniser accepts receive the output, which
// replaces the previous one's entries; an existing folder is written
// through (same folder, mode and group; a symbolic link to it stays a
// link), and no temporary is left.
func TestCommit(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, dst string) string // returns the folder receiving the output
	}{
		{"missing", func(t *testing.T, dst string) string { return dst }},
		{"missing parents", func(t *testing.T, dst string) string { return dst }},
		{"empty", func(t *testing.T, dst string) string { os.Mkdir(dst, 0o755); return dst }},
		{"previous output", func(t *testing.T, dst string) string {
			put(t, filepath.Join(dst, "old.txt"), "old")
			put(t, filepath.Join(dst, "out", "b"), "old b")
			put(t, filepath.Join(dst, ".done"), "old .done")
			return dst
		}},
		{"mode and group", func(t *testing.T, dst string) string {
			os.Mkdir(dst, 0o700)
			if err := os.Chmod(dst, 0o2750); err != nil {
				t.Fatal(err)
			}
			if os.Geteuid() == 0 {
				if err := os.Chown(dst, -1, 4242); err != nil {
					t.Fatal(err)
				}
			}
			return dst
		}},
		{"symbolic link", func(t *testing.T, dst string) string {
			target := dst + "-target"
			os.Mkdir(target, 0o750)
			put(t, filepath.Join(target, "old.txt"), "old")
			os.Symlink(target, dst)
			return target
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "dst")
			if c.name == "missing parents" {
				dst = filepath.Join(parent, "a", "b", "dst")
			}
			folder := c.setup(t, dst)
			before, _ := os.Lstat(dst)
			beforeFolder, _ := os.Stat(folder)
			var notes []string
			if err := write(dst, testOptions(&notes)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantNew, tree(t, folder)); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			after, _ := os.Lstat(dst)
			afterFolder, _ := os.Stat(folder)
			if before != nil {
				if before.Mode() != after.Mode() || !os.SameFile(beforeFolder, afterFolder) || beforeFolder.Mode() != afterFolder.Mode() {
					t.Errorf("replaced: %v (folder %v), was %v (folder %v)", after.Mode(), afterFolder.Mode(), before.Mode(), beforeFolder.Mode())
				}
				if g, wg := afterFolder.Sys().(*syscall.Stat_t).Gid, beforeFolder.Sys().(*syscall.Stat_t).Gid; g != wg {
					t.Errorf("group %d, was %d", g, wg)
				}
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), ".*x-tmp-*")); len(left) > 0 {
				t.Errorf("temporaries left: %v", left)
			}
			if len(notes) > 0 {
				t.Errorf("notices: %q", notes)
			}
		})
	}
}

// TestRefuse: what the recogniser refuses, a file, a link to nothing and
// another writer's temporary that may still be in use stop the writer
// before anything is written, naming them; the folder is unchanged.
func TestRefuse(t *testing.T) {
	other := fmt.Sprintf(".x-tmp-node-b-%d-1-1", os.Getpid())
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, dst string)
		want  string // DST stands for the destination
	}{
		{"foreign", func(t *testing.T, dst string) {
			put(t, filepath.Join(dst, "old.txt"), "old")
			for i := range 7 {
				put(t, filepath.Join(dst, fmt.Sprintf("f%d", i)), "")
			}
		}, "DST holds f0, f1, f2, f3, f4 and 2 more"},
		{"file", func(t *testing.T, dst string) { put(t, dst, "x") }, "output DST exists and is not a folder; it was left as it is"},
		{"dangling link", func(t *testing.T, dst string) { os.Symlink(dst+"-nowhere", dst) },
			"output DST is a symbolic link to DST-nowhere, which does not exist: create that folder, or remove the link"},
		{"live temporary", func(t *testing.T, dst string) { os.MkdirAll(filepath.Join(dst, other), 0o700) },
			"output DST: DST/" + other + " is the temporary folder of another test run (pid "},
	} {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "dst")
			c.setup(t, dst)
			before := tree(t, parent)
			var notes []string
			err := write(dst, testOptions(&notes))
			if want := strings.ReplaceAll(c.want, "DST", dst); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v, want %q", err, want)
			}
			if diff := cmp.Diff(before, tree(t, parent)); diff != "" {
				t.Errorf("changed (-before +after):\n%s", diff)
			}
		})
	}
}

// deadOwner returns owner fields of a process that has exited.
func deadOwner(t *testing.T) string {
	t.Helper()
	cmd := osexec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	self := tempname.Self()
	return fmt.Sprintf("%s-%d-%d-1", self.Host, cmd.Process.Pid, self.Start)
}

// TestStale: the temporaries of a killed writer beside a missing
// destination and inside an existing one are removed and told, named by
// Run; one of another prefix is left. A writer killed while moving its
// entries into the folder left a journal: the entries it lists that were
// moved are removed with its temporary, so the folder is as before (the
// rerun is not refused for them); entries it lists that are not there
// and the writer's own marker-like names are left alone. A writer killed
// after moving every entry leaves a complete output, which stays.
func TestStale(t *testing.T) {
	dead := deadOwner(t)
	parent := t.TempDir()
	dst := filepath.Join(parent, "dst")
	beside := filepath.Join(parent, ".dst.x-tmp-"+dead)
	put(t, filepath.Join(beside, "out.txt"), "partial")
	unrelated := filepath.Join(parent, ".dst.y-tmp-"+dead)
	put(t, unrelated, "")
	var notes []string
	if err := write(dst, testOptions(&notes)); err != nil {
		t.Fatal(err)
	}
	want := []string{"removed " + beside + ", left by an interrupted test run (pid "}
	if len(notes) != 1 || !strings.HasPrefix(notes[0], want[0]) {
		t.Errorf("notices %q, want %q", notes, want)
	}
	if _, err := os.Stat(unrelated); err != nil {
		t.Errorf("another prefix's temporary was removed: %v", err)
	}

	// Killed while moving into an existing folder: out.txt and out/ were
	// moved, .done was not; mine.txt (foreign) is not the writer's.
	moving := filepath.Join(parent, "moving")
	tmp := filepath.Join(moving, ".x-tmp-"+dead)
	put(t, filepath.Join(tmp, journalName), "out.txt\nout\n.done\n../mine.txt\n")
	put(t, filepath.Join(tmp, ".done"), "new .done")
	put(t, filepath.Join(moving, "out.txt"), "moved")
	put(t, filepath.Join(moving, "out", "a"), "moved")
	notes = nil
	if _, err := Check(moving, testOptions(&notes)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{}, tree(t, moving)); diff != "" {
		t.Errorf("after recovery (-want +got):\n%s", diff)
	}
	wantNotes := []string{
		"removed " + filepath.Join(moving, "out") + ", moved into place by an interrupted test run (pid ",
		"removed " + filepath.Join(moving, "out.txt") + ", moved into place by an interrupted test run (pid ",
		"removed " + tmp + ", left by an interrupted test run (pid ",
	}
	if len(notes) != len(wantNotes) {
		t.Fatalf("notices %q, want %q", notes, wantNotes)
	}
	for i, w := range wantNotes {
		if !strings.HasPrefix(notes[i], w) {
			t.Errorf("notice %q, want %q", notes[i], w)
		}
	}

	// Killed after the last entry was moved in, before its temporary
	// folder (holding only the journal) was removed: the output is
	// complete and stays.
	done := filepath.Join(parent, "done")
	tmp = filepath.Join(done, ".x-tmp-"+dead)
	put(t, filepath.Join(tmp, journalName), "out.txt\nout\n.done\n")
	for n, v := range map[string]string{"out.txt": "new out.txt", "out/a": "new out/a", ".done": "new .done"} {
		put(t, filepath.Join(done, n), v)
	}
	notes = nil
	if _, err := Check(done, testOptions(&notes)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantNew, tree(t, done)); diff != "" {
		t.Errorf("after recovery of a finished commit (-want +got):\n%s", diff)
	}
	if len(notes) != 2 || !strings.HasPrefix(notes[0], "kept the output in "+done) || !strings.HasPrefix(notes[1], "removed "+tmp) {
		t.Errorf("notices %q", notes)
	}
}

// TestOrder: the Last entries are moved in last, in their order, and
// moved out first, in reverse.
func TestOrder(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b", "z.last", "a", "a.last"} {
		put(t, filepath.Join(dir, n), "")
	}
	o := &Output{opts: Options{Last: []string{"a.last", "z.last"}}}
	in, err := o.list(dir, "b")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a", "a.last", "z.last"}, in); diff != "" {
		t.Errorf("moved in (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"z.last", "a.last", "a"}, o.lastFirst(in)); diff != "" {
		t.Errorf("moved out (-want +got):\n%s", diff)
	}
}

// TestAbort: an output not committed is removed, and an error naming a
// file in the temporary folder names it in the destination; a folder
// created at the destination meanwhile is not replaced; an in-place
// output is written straight into its folder.
func TestAbort(t *testing.T) {
	parent := t.TempDir()
	dst := filepath.Join(parent, "dst")
	var notes []string
	o, err := Create(dst, testOptions(&notes))
	if err != nil {
		t.Fatal(err)
	}
	err = fmt.Errorf("writing %s: %w", o.Path("out", "a"), fs.ErrPermission)
	o.Abort(&err)
	if want := "writing " + filepath.Join(dst, "out", "a") + ": permission denied"; err.Error() != want || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("error %q, want %q wrapping fs.ErrPermission", err, want)
	}
	if es, _ := os.ReadDir(parent); len(es) != 0 {
		t.Errorf("left: %v", es)
	}

	o, err = Create(dst, testOptions(&notes))
	if err != nil {
		t.Fatal(err)
	}
	put(t, filepath.Join(dst, "mine"), "")
	if err := o.Commit(); err == nil || err.Error() != "output "+dst+" was created while the test run ran; it was left as it is" {
		t.Errorf("created meanwhile: %v", err)
	}
	o.Abort(&err)
	if diff := cmp.Diff(map[string]string{"dst/": "", "dst/mine": ""}, tree(t, parent)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	in := InPlace(dst)
	if in.Dir() != dst || in.Dest() != dst || in.Path("x") != filepath.Join(dst, "x") || in.Commit() != nil {
		t.Errorf("in place: %q %q %q", in.Dir(), in.Dest(), in.Path("x"))
	}
	in.Abort(&err)
	if _, err := os.Stat(filepath.Join(dst, "mine")); err != nil {
		t.Errorf("in-place abort removed the folder's files: %v", err)
	}
}

// TestSyncCommit: with Sync, every file and folder of the output is
// fsynced before it becomes visible (whoever wrote it), and the folder
// the entries were renamed into after; without Sync nothing is.
func TestSyncCommit(t *testing.T) {
	var synced []string
	saved := Fsync
	Fsync = func(f *os.File) error { synced = append(synced, f.Name()); return nil }
	t.Cleanup(func() { Fsync = saved })
	rel := func(root string) []string {
		var out []string
		for _, p := range synced {
			r, err := filepath.Rel(root, p)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(filepath.ToSlash(r), "/")
			for i, p := range parts {
				if strings.Contains(p, "-tmp-") { // the temporary folder
					parts[i] = "TMP"
				}
			}
			out = append(out, strings.Join(parts, "/"))
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		exists bool
		sync   bool
		want   []string
	}{
		{"new folder", false, true, []string{"TMP/.done", "TMP/out/a", "TMP/out.txt", "TMP/out", "TMP", "."}},
		// The output, then the journal and its folder entry before any
		// move, then the folder the entries were moved into.
		{"existing folder", true, true, []string{"dst/TMP/.done", "dst/TMP/out/a", "dst/TMP/out.txt", "dst/TMP/out", "dst/TMP", "dst/TMP/.rolltpl-moving", "dst/TMP", "dst"}},
		{"no sync", true, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synced = nil
			root := t.TempDir()
			dst := filepath.Join(root, "dst")
			if tc.exists {
				if err := os.Mkdir(dst, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			var notes []string
			opts := testOptions(&notes)
			opts.Sync = tc.sync
			if err := write(dst, opts); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, rel(root)); diff != "" {
				t.Errorf("fsynced (-want +got):\n%s", diff)
			}
		})
	}
}

// crashed is the panic value a test's CommitPoint stops a commit with.
type crashed struct{}

// stopAt runs f, stopping it (as a kill would: no cleanup runs) when it
// reaches the commit or recovery step; it reports whether it did.
func stopAt(step string, f func()) (stopped bool) {
	CommitPoint = func(s string) {
		if s == step {
			panic(crashed{})
		}
	}
	defer func() {
		CommitPoint = nil
		if r := recover(); r != nil {
			if r != (crashed{}) {
				panic(r)
			}
			stopped = true
		}
	}()
	f()
	return false
}

// orphan makes the temporaries of this process in dir look left by the
// exited process whose owner fields are dead (as deadOwner gives them),
// as if this process had been killed: it renames them and the aside
// folder its journals name.
func orphan(t *testing.T, dir, prefix, dead string) {
	t.Helper()
	dead = strings.TrimSuffix(dead, "-1")
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	renamed := map[string]string{}
	for _, e := range es {
		o, ok := tempname.Parse(e.Name(), prefix)
		if !ok || o != tempname.Self() {
			continue
		}
		to := prefix + dead + e.Name()[strings.LastIndexByte(e.Name(), '-'):]
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
		renamed[e.Name()] = to
	}
	for _, to := range renamed {
		j := filepath.Join(dir, to, journalName)
		b, err := os.ReadFile(j)
		if err != nil {
			continue
		}
		for from, to := range renamed {
			b = []byte(strings.ReplaceAll(string(b), asidePrefix+from+"\n", asidePrefix+to+"\n"))
		}
		if err := os.WriteFile(j, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCommitCrashPoints kills (in effect) a commit into a folder holding
// a previous output at every step: after the journal, after each entry
// moved aside, after each entry moved in, after the previous output was
// removed. The next writer's check recovers the folder to exactly the
// previous output when the commit had not moved every new entry in, and
// to exactly the new output once it had (rolled forward, the previous
// output removed); no temporary is left, and a rerun then writes the new
// output.
func TestCommitCrashPoints(t *testing.T) {
	dead := deadOwner(t)
	wantOld := map[string]string{"old.txt": "old", "out/": "", "out/b": "old b", ".done": "old .done"}
	previous := func(t *testing.T, dst string) {
		for n, v := range wantOld {
			if !strings.HasSuffix(n, "/") {
				put(t, filepath.Join(dst, n), v)
			}
		}
	}
	var steps []string
	CommitPoint = func(step string) { steps = append(steps, step) }
	t.Cleanup(func() { CommitPoint = nil })
	dst := filepath.Join(t.TempDir(), "dst")
	previous(t, dst)
	var notes []string
	if err := write(dst, testOptions(&notes)); err != nil {
		t.Fatal(err)
	}
	wantSteps := []string{"journal", "aside .done", "aside old.txt", "aside out", "in out", "in out.txt", "in .done", "removed aside"}
	if diff := cmp.Diff(wantSteps, steps); diff != "" {
		t.Fatalf("commit steps (-want +got):\n%s", diff)
	}
	for k, step := range steps {
		t.Run(step, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "dst")
			previous(t, dst)
			o, err := stage(dst, testOptions(&notes))
			if err != nil {
				t.Fatal(err)
			}
			if !stopAt(step, func() { o.Commit() }) { // no Abort: a killed writer runs no cleanup
				t.Fatal("the commit was not stopped")
			}
			orphan(t, dst, ".x-tmp-", dead)
			want, what := wantOld, "the previous output"
			if k >= slices.Index(steps, "in .done") {
				want, what = wantNew, "the new output"
			}
			// The recovery is killed at each of its own steps in turn,
			// then run again.
			killed := tree(t, parent)
			var rsteps []string
			CommitPoint = func(s string) { rsteps = append(rsteps, s) }
			var notes []string
			if _, err := Check(dst, testOptions(&notes)); err != nil {
				t.Fatal(err)
			}
			CommitPoint = nil
			t.Logf("recovery steps: %q", rsteps)
			if diff := cmp.Diff(want, tree(t, dst)); diff != "" {
				t.Errorf("recovered (-%s +got):\n%s\nnotices %q", what, diff, notes)
			}
			for _, rs := range rsteps {
				restore(t, parent, killed)
				if !stopAt(rs, func() { Check(dst, testOptions(&notes)) }) {
					t.Fatalf("recovery not stopped at %q", rs)
				}
				if _, err := Check(dst, testOptions(&notes)); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, tree(t, dst)); diff != "" {
					t.Errorf("recovery killed at %q, then run again (-%s +got):\n%s", rs, what, diff)
				}
			}
			if err := write(dst, testOptions(&notes)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantNew, tree(t, dst)); diff != "" {
				t.Errorf("rerun (-want +got):\n%s", diff)
			}
		})
	}
}

// restore makes dir hold exactly snap (a tree of it) again.
func restore(t *testing.T, dir string, snap map[string]string) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	for rel, content := range snap {
		p := filepath.Join(dir, rel)
		if strings.HasSuffix(rel, "/") {
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		put(t, p, content)
	}
}
