// Package outdir writes an output folder (a conversion's --to, a build's
// -o) so that a failed, canceled or killed writer leaves it as it was, and
// a writer never deletes a file it was not told it may replace:
//
//   - Everything is written into a hidden temporary folder first. A
//     destination that does not exist is written as a folder beside it
//     (.NAME+Prefix+OWNER), renamed to it by [Output.Commit]. An existing
//     folder (an empty mount point, a symbolic link to a folder, a
//     previous output) is written through a folder inside it
//     (Prefix+OWNER) whose entries Commit moves into it: the folder
//     itself, its mode, owner and group, and a symbolic link leading to
//     it are kept.
//   - The entries an existing folder already holds are shown to the
//     writer's recogniser ([Options.Accept]) before anything is written
//     and again at the commit; it refuses the folder when any is not its
//     own, and nothing is changed.
//   - OWNER (package tempname) records the host, pid and start time of
//     the writer: temporaries of a writer that was killed are removed by
//     the next one, with a notice; one of a writer that may still run
//     stops the next one, named. A writer killed while committing into an
//     existing folder left a journal naming the entries it moves in and
//     the folder it moved the previous output's entries aside into: when
//     every entry was moved in, the next writer keeps the new output
//     (rolls forward) and removes the previous one; otherwise it moves
//     the entries moved in back out and the previous output's entries
//     back in (rolls back), so the folder is as before that commit. The
//     folder never ends up holding parts of both.
//
// The package imports only the standard library and tempname, so that
// both the Python emitter (compiler/pyemit) and the runtime use it.
package outdir

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/tempname"
)

// Options describe the writer of an output folder.
type Options struct {
	// Prefix starts the names of the writer's temporary folders, before
	// the owner fields: ".rolltpl-tmp-" for a conversion.
	Prefix string
	// Run names the writer in notices and errors: "conversion", "build".
	Run string
	// Label starts the errors that name the folder: "destination ", or
	// "" for none.
	Label string
	// Accept is given an existing folder and its entries (less the
	// writer's own temporaries) and returns nil when the writer may
	// replace them all, or an error refusing the folder; it must not
	// change the folder. It is required.
	Accept func(dir string, entries []fs.DirEntry) error
	// Last names the entries moved into an existing folder last, in this
	// order, and moved out of it first, in reverse order: with them, an
	// output looks complete.
	Last []string
	// Sync makes the commit durable: before the output becomes visible
	// every regular file and folder in it is fsynced (files the writer
	// already synced cost nothing more; copied tokenizer files, indexes
	// and configs are covered whoever wrote them), the commit journal is
	// fsynced, and after the rename the destination and its parent are.
	Sync bool
	// Notice, when not nil, is told of the temporaries of killed writers
	// that were removed, or could not be.
	Notice func(string)
}

// journalName is the journal a commit into an existing folder writes in
// its temporary folder before moving any entry: the names of the entries
// it moves in, one a line, and a line asidePrefix+NAME naming the folder
// (inside the destination) it moves the previous output's entries into.
// No entry name holds a slash, so the aside line is never a name.
const journalName = ".rolltpl-moving"

// asidePrefix starts the journal line naming the aside folder.
const asidePrefix = "/aside "

// CommitPoint, when not nil, is called at each step of a commit into an
// existing folder: "journal" (written), "aside NAME" (an entry of the
// previous output moved aside), "in NAME" (an entry moved in), "removed
// aside" (the previous output removed); and of its recovery by the next
// writer: "recovered aside" (the previous output removed, rolling
// forward), "out NAME" (an entry moved back out), "restore NAME" (an
// entry of the previous output moved back in). Fault-injection tests
// stop or kill the writer there; it is nil otherwise.
var CommitPoint func(step string)

// reach tells CommitPoint (if set) that a commit reached step.
func reach(step string) {
	if CommitPoint != nil {
		CommitPoint(step)
	}
}

// maxNamed is how many names NameList names before counting the rest.
const maxNamed = 5

// NameList names the first few of names, comma-separated, and counts the
// rest ("a, b, c, d, e and 3 more"): the form refusals list entries in.
func NameList(names []string) string {
	if len(names) <= maxNamed {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:maxNamed], ", "), len(names)-maxNamed)
}

// Check checks that dst may be written (see the package documentation)
// without writing it: it removes the stale temporaries of killed writers
// beside and inside dst, refuses a dst that is not a folder (or a
// symbolic link to one), the live temporary of another writer inside it,
// and what opts.Accept refuses. It reports whether dst exists.
func Check(dst string, opts Options) (bool, error) {
	return check(filepath.Clean(dst), opts, "")
}

// check is Check ignoring the entry of dst named skip (the output's own
// temporary folder when committing).
func check(dst string, opts Options, skip string) (bool, error) {
	if err := RemoveStale(filepath.Dir(dst), "."+filepath.Base(dst)+opts.Prefix, opts.Run, opts.Notice); err != nil {
		return false, err
	}
	lst, err := os.Lstat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	st, err := os.Stat(dst)
	if lst.Mode()&fs.ModeSymlink != 0 && errors.Is(err, fs.ErrNotExist) {
		target, _ := os.Readlink(dst)
		return false, fmt.Errorf("%s%s is a symbolic link to %s, which does not exist: create that folder, or remove the link", opts.Label, dst, target)
	}
	if err != nil {
		return false, err
	}
	if !st.IsDir() {
		return false, fmt.Errorf("%s%s exists and is not a folder; it was left as it is", opts.Label, dst)
	}
	if err := removeStaleInside(dst, opts); err != nil {
		return false, err
	}
	entries, err := os.ReadDir(dst)
	if err != nil {
		return false, err
	}
	kept := entries[:0]
	for _, e := range entries {
		if e.Name() == skip {
			continue
		}
		if o, ok := tempname.Parse(e.Name(), opts.Prefix); ok {
			return false, fmt.Errorf("%s%s: %s is the temporary folder of another %s (%s) that may still be running; wait for it to end, or remove the folder if it does not run any more",
				opts.Label, dst, filepath.Join(dst, e.Name()), opts.Run, o)
		}
		kept = append(kept, e)
	}
	if err := opts.Accept(dst, kept); err != nil {
		return false, err
	}
	return true, nil
}

// RemoveStale removes the temporaries named prefix+owner fields in dir
// whose writer was killed, telling notice ("left by an interrupted "+run).
// Failing to remove one (another user's) is told too, not an error: it
// is not this writer's output. A folder that cannot be listed is an
// error.
func RemoveStale(dir, prefix, run string, notice func(string)) error {
	if notice == nil {
		notice = func(string) {}
	}
	removed, _, err := tempname.RemoveStale(dir, prefix)
	for _, f := range removed {
		notice(fmt.Sprintf("removed %s, left by an interrupted %s (%s)", f.Path, run, f.Owner))
	}
	var rerr *tempname.RemoveError
	if errors.As(err, &rerr) {
		for _, e := range rerr.Failed {
			notice(e.Error())
		}
		return nil
	}
	return err
}

// removeStaleInside removes the temporary folders of killed writers
// inside dst, telling opts.Notice. A writer killed while committing left
// a journal (see journalName); its commit is finished or undone first
// (recoverCommit), then its folders are removed.
func removeStaleInside(dst string, opts Options) error {
	notice := opts.Notice
	if notice == nil {
		notice = func(string) {}
	}
	stale, _, err := tempname.Scan(dst, opts.Prefix)
	if err != nil {
		return err
	}
	// The commits first: their aside folders hold the previous output,
	// which a roll back moves back in.
	handled := map[string]bool{}
	for _, f := range stale {
		b, err := os.ReadFile(filepath.Join(f.Path, journalName))
		if err != nil {
			continue
		}
		aside, err := recoverCommit(dst, f, b, opts, notice)
		if err != nil {
			return err
		}
		if aside != "" {
			handled[aside] = true
		}
	}
	for _, f := range stale {
		if handled[f.Path] {
			continue
		}
		if err := os.RemoveAll(f.Path); err != nil {
			notice(fmt.Sprintf("could not remove %s, left by %s which is no longer running: %v", f.Path, f.Owner, err))
			continue
		}
		notice(fmt.Sprintf("removed %s, left by an interrupted %s (%s)", f.Path, opts.Run, f.Owner))
	}
	return nil
}

// recoverCommit finishes or undoes the commit of a killed writer whose
// temporary folder f holds the journal b, and returns the path of its
// aside folder ("" if none), which it has then removed. Names in the
// journal holding a path separator or starting with ".rolltpl" (markers,
// temporaries) are never touched.
//
//   - Every entry was moved in (none is left in f): the output is
//     complete and stays; the previous output's entries (in the aside
//     folder) are removed.
//   - Otherwise the entries moved in are moved back into f, and the
//     previous output's entries back from the aside folder: the
//     destination is as before the commit. Each step is a rename that a
//     later recovery redoes from the journal if this one is killed too.
func recoverCommit(dst string, f tempname.Found, b []byte, opts Options, notice func(string)) (string, error) {
	var names []string
	aside := ""
	for _, line := range strings.Split(string(b), "\n") {
		if a, ok := strings.CutPrefix(line, asidePrefix); ok {
			if _, ok := tempname.Parse(a, opts.Prefix); ok && a == filepath.Base(a) {
				aside = filepath.Join(dst, a)
			}
			continue
		}
		if line == "" || line != filepath.Base(line) || strings.HasPrefix(line, ".rolltpl") {
			continue
		}
		names = append(names, line)
	}
	var moved []string
	unmoved := 0
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(f.Path, n)); err == nil {
			unmoved++
		} else {
			moved = append(moved, n)
		}
	}
	if unmoved == 0 && len(moved) > 0 {
		// Killed after its output was complete, while removing its
		// temporaries: the output stays.
		notice(fmt.Sprintf("kept the output in %s: the interrupted %s (%s) had moved all of it into place", dst, opts.Run, f.Owner))
		if _, err := os.Lstat(aside); aside != "" && err == nil {
			if err := os.RemoveAll(aside); err != nil {
				return aside, fmt.Errorf("removing %s, the previous output an interrupted %s (%s) replaced: %w", aside, opts.Run, f.Owner, err)
			}
			notice(fmt.Sprintf("removed %s, the previous output an interrupted %s (%s) replaced", aside, opts.Run, f.Owner))
			reach("recovered aside")
		}
		return aside, nil
	}
	// Roll back: the new entries out, last moved first...
	for i := len(moved) - 1; i >= 0; i-- {
		p := filepath.Join(dst, moved[i])
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := os.Rename(p, filepath.Join(f.Path, moved[i])); err != nil {
			return aside, fmt.Errorf("moving %s, moved into place by an interrupted %s (%s), back out: %w", p, opts.Run, f.Owner, err)
		}
		notice(fmt.Sprintf("removed %s, moved into place by an interrupted %s (%s) that did not finish", p, opts.Run, f.Owner))
		reach("out " + moved[i])
	}
	// ... then the previous output's back in.
	if aside != "" {
		entries, err := os.ReadDir(aside)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return aside, err
		}
		var back []string
		for _, e := range entries {
			to := filepath.Join(dst, e.Name())
			if _, err := os.Lstat(to); err == nil {
				return aside, fmt.Errorf("cannot restore %s, moved aside by an interrupted %s (%s): %s exists; move one of them away", filepath.Join(aside, e.Name()), opts.Run, f.Owner, to)
			}
			if err := os.Rename(filepath.Join(aside, e.Name()), to); err != nil {
				return aside, fmt.Errorf("restoring %s, moved aside by an interrupted %s (%s): %w", to, opts.Run, f.Owner, err)
			}
			back = append(back, e.Name())
			reach("restore " + e.Name())
		}
		if len(back) > 0 {
			notice(fmt.Sprintf("restored %s in %s, moved aside by an interrupted %s (%s) that did not finish", NameList(back), dst, opts.Run, f.Owner))
		}
		if opts.Sync {
			if err := SyncDir(dst); err != nil {
				return aside, err
			}
		}
		if err := os.Remove(aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return aside, err
		}
	}
	return aside, nil
}

// Output is an output folder being written: its files go into the
// temporary folder [Output.Dir] until [Output.Commit].
type Output struct {
	dst, tmp string
	// inside is set when tmp is a folder inside the existing dst.
	inside    bool
	committed bool
	opts      Options
}

// Create checks dst ([Check]) and creates the temporary folder of its
// output: beside dst (mode 0755 less the umask, as dst will have) when
// it does not exist, creating its parent folders; inside it (0700, only
// for this process) when it does.
func Create(dst string, opts Options) (*Output, error) {
	dst = filepath.Clean(dst)
	exists, err := check(dst, opts, "")
	if err != nil {
		return nil, err
	}
	dir, prefix, perm := dst, opts.Prefix, fs.FileMode(0o700)
	if !exists {
		dir, prefix, perm = filepath.Dir(dst), "."+filepath.Base(dst)+opts.Prefix, 0o755
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	tmp, err := tempname.Mkdir(dir, prefix, perm)
	if err != nil {
		return nil, err
	}
	return &Output{dst: dst, tmp: tmp, inside: exists, opts: opts}, nil
}

// InPlace returns an output written straight into the folder dst, with
// no temporary folder: Dir is dst, and Commit and Abort do nothing. It is
// for a writer whose own protocol keeps a partial output from looking
// complete (a multi-job conversion's jobs).
func InPlace(dst string) *Output {
	return &Output{dst: dst, tmp: dst, committed: true}
}

// Dir returns the temporary folder the output is written into.
func (o *Output) Dir() string { return o.tmp }

// Dest returns the destination folder.
func (o *Output) Dest() string { return o.dst }

// Path returns the temporary path of a file of the output.
func (o *Output) Path(elem ...string) string {
	return filepath.Join(append([]string{o.tmp}, elem...)...)
}

// Commit moves the output into place. A destination that did not exist
// is the temporary folder renamed (refused if something was created
// there meanwhile). Into an existing folder, the previous output's
// entries (checked again by Accept) are moved aside into another
// temporary folder, Options.Last first, then the new entries are moved
// in, Options.Last last, and the old ones are removed; a failure on the
// way moves everything back. A journal naming the entries moved in and
// the aside folder is written before any move, so that if the process is
// killed while moving, the next writer finishes the commit (when every
// entry was moved in) or undoes it (see the package documentation).
func (o *Output) Commit() error {
	if o.committed {
		return nil
	}
	if o.opts.Sync {
		if err := SyncTree(o.tmp); err != nil {
			return err
		}
	}
	if !o.inside {
		if _, err := os.Lstat(o.dst); err == nil {
			return fmt.Errorf("%s%s was created while the %s ran; it was left as it is", o.opts.Label, o.dst, o.opts.Run)
		}
		if err := os.Rename(o.tmp, o.dst); err != nil {
			return err
		}
		o.committed = true
		if o.opts.Sync {
			return SyncDir(filepath.Dir(o.dst))
		}
		return nil
	}
	if _, err := check(o.dst, o.opts, filepath.Base(o.tmp)); err != nil {
		return err
	}
	oldNames, err := o.list(o.dst, filepath.Base(o.tmp))
	if err != nil {
		return err
	}
	newNames, err := o.list(o.tmp, "")
	if err != nil {
		return err
	}
	var old string
	type move struct{ from, to string }
	var done []move
	undo := func() {
		for i := len(done) - 1; i >= 0; i-- {
			os.Rename(done[i].to, done[i].from)
		}
		if old != "" {
			os.Remove(old)
		}
		os.Remove(filepath.Join(o.tmp, journalName))
	}
	if len(oldNames) > 0 {
		if old, err = tempname.Mkdir(o.dst, o.opts.Prefix, 0o700); err != nil {
			return err
		}
	}
	// The journal before any move: a writer killed from here on is
	// rolled forward or back by the next one, never left half-moved.
	if err := writeJournal(o.tmp, newNames, old, o.opts.Sync); err != nil {
		undo()
		return err
	}
	reach("journal")
	// The last names first: a half-replaced output must not look
	// complete.
	for _, n := range o.lastFirst(oldNames) {
		m := move{filepath.Join(o.dst, n), filepath.Join(old, n)}
		if err := os.Rename(m.from, m.to); err != nil {
			undo()
			return err
		}
		done = append(done, m)
		reach("aside " + n)
	}
	for _, n := range newNames {
		m := move{filepath.Join(o.tmp, n), filepath.Join(o.dst, n)}
		if err := os.Rename(m.from, m.to); err != nil {
			undo()
			return err
		}
		done = append(done, m)
		reach("in " + n)
	}
	o.committed = true
	var err2 error
	if o.opts.Sync {
		err2 = SyncDir(o.dst)
	}
	if old != "" {
		os.RemoveAll(old)
		reach("removed aside")
	}
	os.RemoveAll(o.tmp) // the journal
	return err2
}

// SyncTree fsyncs every regular file and folder below root (root
// included), each folder after its entries: what an output written in
// place (a multi-job conversion's) does before it is marked complete, as
// Commit does with Options.Sync.
func SyncTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			dirs = append(dirs, path)
		case d.Type().IsRegular():
			return syncPath(path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syncPath(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

// Fsync is the fsync of output folders ((*os.File).Sync): tests replace
// it to record the files and folders made durable. It is not for
// concurrent use with a replacement.
var Fsync = (*os.File).Sync

// SyncDir fsyncs a folder, making the renames and removals in it
// durable.
func SyncDir(dir string) error { return syncPath(dir) }

// syncPath opens path read-only and fsyncs it.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = Fsync(f)
	if err != nil {
		err = fmt.Errorf("syncing %s: %w", path, err)
	}
	return errors.Join(err, f.Close())
}

// list returns the entries of dir but skip, the names of Options.Last
// last in their order, the others before them sorted.
func (o *Output) list(dir, skip string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Name() != skip {
			names = append(names, e.Name())
		}
	}
	last := o.opts.Last
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(slices.Index(last, a), slices.Index(last, b)), strings.Compare(a, b))
	})
	return names, nil
}

// lastFirst puts the Options.Last entries of names (ordered by list)
// first, in reverse order.
func (o *Output) lastFirst(names []string) []string {
	var first, rest []string
	for _, n := range names {
		if slices.Contains(o.opts.Last, n) {
			first = append([]string{n}, first...)
		} else {
			rest = append(rest, n)
		}
	}
	return append(first, rest...)
}

// writeJournal writes the journal of a commit in the temporary folder
// tmp: the names moved in, one a line, and the aside folder (if not "").
// With sync the journal and its entry in tmp are made durable before any
// move can depend on them.
func writeJournal(tmp string, names []string, aside string, sync bool) error {
	path := filepath.Join(tmp, journalName)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	text := strings.Join(names, "\n") + "\n"
	if aside != "" {
		text = asidePrefix + filepath.Base(aside) + "\n" + text
	}
	_, err = f.WriteString(text)
	if err == nil && sync {
		err = Fsync(f)
	}
	if err = errors.Join(err, f.Close()); err != nil || !sync {
		return err
	}
	return SyncDir(tmp)
}

// Abort removes the temporary folder unless the output was committed,
// and names files in *err by their place in the destination: the user
// chose the destination, while the temporary folder is gone once Abort
// returns. It is meant to be deferred.
func (o *Output) Abort(err *error) {
	if o.committed {
		return
	}
	os.RemoveAll(o.tmp)
	if *err != nil {
		in, dst := o.tmp+string(filepath.Separator), o.dst+string(filepath.Separator)
		if msg := (*err).Error(); strings.Contains(msg, in) {
			*err = &destError{msg: strings.ReplaceAll(msg, in, dst), err: *err}
		}
	}
}

// destError is an error whose message names the destination instead of
// the temporary folder; it unwraps to the original.
type destError struct {
	msg string
	err error
}

func (e *destError) Error() string { return e.msg }
func (e *destError) Unwrap() error { return e.err }
