package exec

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/blockio"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tempname"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// output is a conversion's destination. Everything is written to a
// temporary folder and moved into place by commit, so that a failed or
// interrupted conversion leaves the destination as it was:
//
//   - a destination that does not exist is written as a hidden folder
//     beside it (.NAME.rolltpl-tmp-OWNER), renamed to it when complete;
//   - an existing folder (an empty mount point, a symbolic link to a
//     folder, a previous output replaced with force) is written through a
//     hidden folder inside it (.rolltpl-tmp-OWNER) whose entries are moved
//     into it when complete: the folder itself, its mode, owner and group,
//     and a symbolic link leading to it are kept.
//
// OWNER (internal/tempname) records the host, pid and start time of the
// process, so that a later run removes the temporaries of a process that
// was killed (see removeStale) and leaves those of a running one.
type output struct {
	dst, tmp string
	// inside is set when tmp is a folder inside the existing dst.
	inside    bool
	src       string
	force     bool
	sync      bool
	committed bool
	notice    func(string)
}

// tmpMarker is the part of the name of every temporary folder of an
// output (before the owner fields).
const tmpMarker = ".rolltpl-tmp-"

// maxNamed is how many unknown files a refusal names before counting the
// rest.
const maxNamed = 5

// checkDest checks that the conversion may write dst. A destination that
// does not exist, or is an empty folder (or a symbolic link to one), may
// be written. A folder that holds files may be written with force only,
// and only when every entry is a checkpoint's own file (see ownFiles):
// anything else is refused, naming it, and nothing is changed. A
// destination that is not a folder is refused. Stale temporaries of
// killed conversions inside dst or beside it are removed first and
// reported to notice. It reports whether dst exists.
func checkDest(src, dst string, force bool, notice func(string)) (bool, error) {
	return checkDestExcept(src, dst, force, notice, "")
}

// checkDestExcept is checkDest ignoring the entry of dst named skip (the
// output's own temporary folder when committing).
func checkDestExcept(src, dst string, force bool, notice func(string), skip string) (bool, error) {
	dst = filepath.Clean(dst)
	if err := removeStale(filepath.Dir(dst), "."+filepath.Base(dst)+tmpMarker, notice); err != nil {
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
		return false, fmt.Errorf("destination %s is a symbolic link to %s, which does not exist: create that folder, or remove the link", dst, target)
	}
	if err != nil {
		return false, err
	}
	if !st.IsDir() {
		return false, fmt.Errorf("destination %s exists and is not a folder; it was left as it is", dst)
	}
	if err := removeStaleInside(dst, notice); err != nil {
		return false, err
	}
	entries, err := os.ReadDir(dst)
	if err != nil {
		return false, err
	}
	var names []string
	for _, e := range entries {
		if e.Name() == skip {
			continue
		}
		if o, ok := tempname.Parse(e.Name(), tmpMarker); ok {
			return false, fmt.Errorf("destination %s: %s is the temporary folder of another conversion (%s) that may still be running; wait for it to end, or remove the folder if it does not run any more", dst, filepath.Join(dst, e.Name()), o)
		}
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		return true, nil
	}
	if !force {
		return false, fmt.Errorf("destination %s is not empty (%s); pass --force to replace the checkpoint in it", dst, nameList(names))
	}
	unknown, err := foreignFiles(src, dst, skip)
	if err != nil {
		return false, err
	}
	if len(unknown) > 0 {
		return false, fmt.Errorf("destination %s holds files that are not a checkpoint's: %s; --force replaces only a checkpoint's own files "+
			"(weights, configs, tokenizer and processor files, the files the source has), so nothing was changed: move them away or choose another destination",
			dst, nameList(unknown))
	}
	return true, nil
}

// nameList names the first few of names and counts the rest.
func nameList(names []string) string {
	if len(names) <= maxNamed {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:maxNamed], ", "), len(names)-maxNamed)
}

// removeStale removes the temporaries named prefix+owner fields in dir
// whose writer was killed, telling notice. Failing to remove one (another
// user's) is told too, not an error: it is not this conversion's output.
// A folder that cannot be listed is an error.
func removeStale(dir, prefix string, notice func(string)) error {
	if notice == nil {
		notice = func(string) {}
	}
	removed, _, err := tempname.RemoveStale(dir, prefix)
	for _, f := range removed {
		notice(fmt.Sprintf("removed %s, left by an interrupted conversion (%s)", f.Path, f.Owner))
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

// movingName is the journal a commit into an existing destination writes
// in its temporary folder before moving the entries into place: their
// names, one a line.
const movingName = ".rolltpl-moving"

// removeStaleInside removes the temporary folders of killed conversions
// inside dst, telling notice. A conversion killed while moving its
// entries into dst left its journal (movingName): the entries it lists
// that were moved already are a partial output and are removed too, so
// that dst is as before the interrupted commit (less the previous
// checkpoint it was replacing).
func removeStaleInside(dst string, notice func(string)) error {
	if notice == nil {
		notice = func(string) {}
	}
	stale, _, err := tempname.Scan(dst, tmpMarker)
	if err != nil {
		return err
	}
	for _, f := range stale {
		if b, err := os.ReadFile(filepath.Join(f.Path, movingName)); err == nil {
			for _, n := range strings.Split(string(b), "\n") {
				if n == "" || n != filepath.Base(n) || strings.HasPrefix(n, ".rolltpl") {
					continue
				}
				if _, err := os.Lstat(filepath.Join(f.Path, n)); err == nil {
					continue // not moved yet
				}
				p := filepath.Join(dst, n)
				if _, err := os.Lstat(p); err != nil {
					continue
				}
				if err := os.RemoveAll(p); err != nil {
					return fmt.Errorf("removing %s, moved into place by an interrupted conversion (%s): %w", p, f.Owner, err)
				}
				notice(fmt.Sprintf("removed %s, moved into place by an interrupted conversion (%s) that did not finish", p, f.Owner))
			}
		}
		if err := os.RemoveAll(f.Path); err != nil {
			notice(fmt.Sprintf("could not remove %s, left by %s which is no longer running: %v", f.Path, f.Owner, err))
			continue
		}
		notice(fmt.Sprintf("removed %s, left by an interrupted conversion (%s)", f.Path, f.Owner))
	}
	return nil
}

// removeStaleWriters removes the temporary files of torch.save writers of
// path that were killed on this host (a rank job's model_optim_rng.pt.tmp-*
// left by SIGKILL, a crash or a lost node's requeue on the same host),
// and of the run stamp beside it (stampPath), telling notice. Those of a
// writer that may still run are left: a
// finalize job refuses while they exist.
func removeStaleWriters(path string, notice func(string)) error {
	var errs []error
	for _, p := range []string{path, stampPath(path)} {
		removed, err := torchsave.RemoveStaleTemps(p)
		for _, t := range removed {
			if notice != nil {
				notice(fmt.Sprintf("removed %s, left by an interrupted conversion (%s)", t.Path, t.Owner))
			}
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Top-level files of a checkpoint that --force replaces: the weights and
// configs of both formats, and tokenizer, processor and remote-code files
// (which the conversion copies from its source). Any file the source has
// at its top level is recognised too, since the conversion copies it.
var (
	ownNames = map[string]bool{
		HFConfigName: true, MCAConfigName: true, TrackerName: true, "generation_config.json": true,
		safetensors.IndexFileName: true, "pytorch_model.bin.index.json": true,
		"tokenizer.json": true, "tokenizer_config.json": true, "special_tokens_map.json": true,
		"added_tokens.json": true, "vocab.json": true, "vocab.txt": true, "merges.txt": true,
		"tokenizer.model": true, "spiece.model": true, "sentencepiece.bpe.model": true,
		"preprocessor_config.json": true, "processor_config.json": true, "video_preprocessor_config.json": true,
		"chat_template.json": true, "chat_template.jinja": true,
	}
	ownPatterns = []*regexp.Regexp{
		regexp.MustCompile(`^.+\.safetensors$`),
		regexp.MustCompile(`^.+\.safetensors\.index\.json$`),
		regexp.MustCompile(`^pytorch_model.*\.bin$`),
		regexp.MustCompile(`^.+\.tiktoken$`),
		regexp.MustCompile(`^(configuration|modeling|tokenization|processing|image_processing|video_processing|feature_extraction)_.+\.py$`),
		// temporaries of small files written through a temporary name
		regexp.MustCompile(`^(` + regexp.QuoteMeta(MCAConfigName) + `|` + regexp.QuoteMeta(TrackerName) + `)\.tmp$`),
	}
	iterDirRE = regexp.MustCompile(`^iter_0000001$`)
)

// ownTop reports whether a top-level regular file named name is a
// checkpoint's own.
func ownTop(name string, srcNames map[string]bool) bool {
	if ownNames[name] || srcNames[name] {
		return true
	}
	for _, re := range ownPatterns {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// foreignFiles returns the entries of dst (relative paths) that are not a
// checkpoint's own, so that --force may not replace them:
//
//   - top-level regular files: see ownNames and ownPatterns, plus the
//     names of the source's top-level files;
//   - the iter_0000001 folder conversions write (a training run's other
//     iterations are not a conversion's), holding only mp_rank_* folders,
//     which hold only regular files named model_optim_rng* (the rank
//     file, its writers' temporaries) or starting with ".rolltpl" or
//     "rolltpl";
//   - the conversion's temporaries (handled by checkDest).
//
// Anything else (other folders such as .git, symbolic links, notes, a
// training run's other files) is foreign. Entries named skip are ignored.
func foreignFiles(src, dst, skip string) ([]string, error) {
	srcNames := map[string]bool{}
	if src != "" {
		if entries, err := os.ReadDir(src); err == nil {
			for _, e := range entries {
				if e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0 {
					srcNames[e.Name()] = true
				}
			}
		}
	}
	entries, err := os.ReadDir(dst)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == skip:
		case e.Type().IsRegular() && ownTop(name, srcNames):
		case e.IsDir() && iterDirRE.MatchString(name):
			bad, err := foreignInIter(filepath.Join(dst, name), name)
			if err != nil {
				return nil, err
			}
			out = append(out, bad...)
		default:
			if e.IsDir() {
				name += string(filepath.Separator)
			}
			out = append(out, name)
		}
	}
	return out, nil
}

// foreignInIter returns the foreign entries of an iter_0000001 folder.
func foreignInIter(dir, rel string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		r := filepath.Join(rel, e.Name())
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "mp_rank_") {
			out = append(out, r)
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			n := f.Name()
			if f.Type().IsRegular() && (strings.HasPrefix(n, "model_optim_rng") || strings.HasPrefix(n, ".rolltpl") || strings.HasPrefix(n, "rolltpl")) {
				continue
			}
			out = append(out, filepath.Join(r, n))
		}
	}
	return out, nil
}

// checkPaths refuses a destination that is the source or contains it:
// replacing it would delete the input.
func checkPaths(src, dst string) error {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return filepath.Clean(p)
		}
		if r, err := filepath.EvalSymlinks(a); err == nil {
			return r
		}
		return a
	}
	s, d := abs(src), abs(dst)
	if s == d || strings.HasPrefix(s, d+string(filepath.Separator)) {
		return fmt.Errorf("destination %s is or contains the source %s", dst, src)
	}
	return nil
}

// newOutput checks dst (checkDest) and creates the temporary folder of
// the output: beside dst when it does not exist, inside it when it does.
func newOutput(src, dst string, opts Options) (*output, error) {
	dst = filepath.Clean(dst)
	exists, err := checkDest(src, dst, opts.Force, opts.Notice)
	if err != nil {
		return nil, err
	}
	o := &output{dst: dst, src: src, force: opts.Force, sync: opts.Sync, inside: exists, notice: opts.Notice}
	dir, prefix := dst, tmpMarker
	if !exists {
		dir, prefix = filepath.Dir(dst), "."+filepath.Base(dst)+tmpMarker
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	// A folder beside dst becomes dst: the mode of a new folder. One
	// inside it is only for this process.
	perm := fs.FileMode(0o700)
	if !exists {
		perm = 0o755
	}
	if o.tmp, err = mkdirOwned(dir, prefix, perm); err != nil {
		return nil, err
	}
	return o, nil
}

// mkdirOwned creates a new folder in dir named prefix+owner fields
// (perm less the umask) and returns its path.
func mkdirOwned(dir, prefix string, perm fs.FileMode) (string, error) {
	for try := 0; ; try++ {
		p := filepath.Join(dir, tempname.New(prefix))
		err := os.Mkdir(p, perm)
		if errors.Is(err, fs.ErrExist) && try < 100 {
			continue
		}
		if err != nil {
			return "", err
		}
		return p, nil
	}
}

// path returns the temporary path of a file of the output.
func (o *output) path(elem ...string) string {
	return filepath.Join(append([]string{o.tmp}, elem...)...)
}

// lastNames are the entries moved into an existing destination last (and
// moved out of it first): with them, a checkpoint looks complete.
var lastNames = []string{safetensors.IndexFileName, HFConfigName, MCAConfigName, TrackerName}

// commit moves the output into place. A destination that did not exist
// is the temporary folder renamed. Into an existing folder, the previous
// checkpoint's entries (checked again: with force, all a checkpoint's
// own) are moved aside into another temporary folder, the tracker and
// index first, then the new entries are moved in, the tracker and index
// last, and the old ones are removed; a failure on the way moves
// everything back. The names being moved in are written to a journal
// first, so that if the process is killed while moving, the next run
// removes the entries it had moved (removeStaleInside).
func (o *output) commit() error {
	if !o.inside {
		if _, err := os.Lstat(o.dst); err == nil {
			return fmt.Errorf("destination %s was created while the conversion ran; it was left as it is", o.dst)
		}
		if err := os.Rename(o.tmp, o.dst); err != nil {
			return err
		}
		o.committed = true
		return nil
	}
	if _, err := checkDestExcept(o.src, o.dst, o.force, o.notice, filepath.Base(o.tmp)); err != nil {
		return err
	}
	order := func(names []string) []string {
		slices.SortFunc(names, func(a, b string) int {
			return cmp.Or(cmp.Compare(slices.Index(lastNames, a), slices.Index(lastNames, b)), strings.Compare(a, b))
		})
		return names
	}
	list := func(dir string, skip ...string) ([]string, error) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, e := range entries {
			if !slices.Contains(skip, e.Name()) {
				names = append(names, e.Name())
			}
		}
		return names, nil
	}
	oldNames, err := list(o.dst, filepath.Base(o.tmp))
	if err != nil {
		return err
	}
	newNames, err := list(o.tmp)
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
	}
	if len(oldNames) > 0 {
		if old, err = mkdirOwned(o.dst, tmpMarker, 0o700); err != nil {
			return err
		}
		// Tracker and index first: a half-replaced checkpoint must not
		// look complete.
		for _, n := range reverseLast(order(oldNames)) {
			m := move{filepath.Join(o.dst, n), filepath.Join(old, n)}
			if err := os.Rename(m.from, m.to); err != nil {
				undo()
				return err
			}
			done = append(done, m)
		}
	}
	// The journal: if this process is killed while moving, the next run
	// removes what was moved (removeStaleInside).
	if err := writeFileSync(filepath.Join(o.tmp, movingName), []byte(strings.Join(newNames, "\n")+"\n"), o.sync); err != nil {
		undo()
		return err
	}
	for _, n := range order(newNames) {
		m := move{filepath.Join(o.tmp, n), filepath.Join(o.dst, n)}
		if err := os.Rename(m.from, m.to); err != nil {
			undo()
			return err
		}
		done = append(done, m)
	}
	o.committed = true
	os.RemoveAll(o.tmp) // the journal
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

// reverseLast puts the lastNames entries of ordered names first, in
// reverse order (the tracker first).
func reverseLast(names []string) []string {
	var first, rest []string
	for _, n := range names {
		if slices.Contains(lastNames, n) {
			first = append([]string{n}, first...)
		} else {
			rest = append(rest, n)
		}
	}
	return append(first, rest...)
}

// abort removes the temporary folder unless committed, and names files
// in *err by their place in the destination: the user chose the
// destination, while the temporary folder is gone once abort returns.
func (o *output) abort(err *error) {
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
// the temporary directory; it unwraps to the original.
type destError struct {
	msg string
	err error
}

func (e *destError) Error() string { return e.msg }
func (e *destError) Unwrap() error { return e.err }

// copyAux copies the top-level regular files of src that skip does not
// exclude (tokenizer, processor and remote-code files, READMEs) to dst.
// Directories, FIFOs, devices and sockets are not copied. A symbolic link
// is followed only when its target lies inside the source folder or, for
// a Hugging Face cache snapshot (…/models--org--name/snapshots/<rev>),
// inside the cache folder of that model (the parent of snapshots/, where
// the blobs/ the snapshot links to are); a link out of it (say
// tokenizer_config.json -> /etc/shadow) is an error naming the link and
// its target, and nothing is written. A copy keeps the permission bits of
// its source, never more than rw-rw-rw- (the umask narrows them further).
// It returns the names copied.
func copyAux(src, dst string, skip func(name string) bool) ([]string, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	root, err := linkRoot(src)
	if err != nil {
		return nil, err
	}
	var copied []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || skip(name) {
			continue
		}
		path := filepath.Join(src, name)
		if e.Type()&fs.ModeSymlink != 0 {
			// Resolved from the absolute path, as root is: a relative
			// source folder would otherwise give a relative target that
			// is never within root.
			abs, err := filepath.Abs(path)
			if err != nil {
				return copied, err
			}
			target, err := filepath.EvalSymlinks(abs)
			if err != nil {
				continue // a dangling link: nothing to copy
			}
			if !within(root, target) {
				return copied, fmt.Errorf("%s is a symbolic link to %s, outside the source folder %s; refusing to copy it (replace the link by the file or remove it)", path, target, root)
			}
		}
		st, err := os.Stat(path)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		if err := copyFile(path, filepath.Join(dst, name)); err != nil {
			return copied, err
		}
		copied = append(copied, name)
	}
	slices.Sort(copied)
	return copied, nil
}

// linkRoot returns the folder symbolic links in src may point into: src
// itself (symbolic links resolved), or for a Hugging Face cache snapshot
// src = <cache>/models--org--name/snapshots/<rev>, the model's cache
// folder <cache>/models--org--name.
func linkRoot(src string) (string, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	snapshots := filepath.Dir(abs)
	if filepath.Base(snapshots) == "snapshots" {
		if _, err := os.Stat(filepath.Join(filepath.Dir(snapshots), "blobs")); err == nil {
			return filepath.Dir(snapshots), nil
		}
	}
	return abs, nil
}

// within reports whether path (absolute, links resolved) is root or below
// it.
func within(root, path string) bool {
	return path == root || strings.HasPrefix(path, root+string(filepath.Separator))
}

// copyFile copies the regular file src to the new file dst with the
// permission bits of src (at most 0o666).
func copyFile(src, dst string) error {
	in, err := blockio.OpenRegular(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	perm := st.Mode().Perm() & 0o666
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return out.Close()
}

// writeFileSync writes a small file, fsyncing it when sync is set.
func writeFileSync(path string, data []byte, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
