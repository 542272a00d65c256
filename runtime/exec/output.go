package exec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/rolltpl/rolltpl/lang/srcfile"
	"github.com/rolltpl/rolltpl/runtime/outdir"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// output is a conversion's destination (package outdir): written into a
// temporary folder, beside the destination when it does not exist
// (.NAME.rolltpl-tmp-OWNER), inside it when it does (.rolltpl-tmp-OWNER),
// and moved into place by Commit, so that a failed or interrupted
// conversion leaves the destination as it was. An existing folder (an
// empty mount point, a symbolic link to a folder, a previous output
// replaced with force) is kept, with its mode, owner and group.
type output = outdir.Output

// tmpMarker is the part of the name of every temporary folder of an
// output (before the owner fields).
const tmpMarker = ".rolltpl-tmp-"

// lastNames are the entries moved into an existing destination last (and
// moved out of it first): with them, a checkpoint looks complete.
var lastNames = []string{safetensors.IndexFileName, HFConfigName, MCAConfigName, TrackerName}

// destOptions are the outdir options of a conversion from src: its
// recogniser is acceptDest.
func destOptions(src string, force, sync bool, notice func(string)) outdir.Options {
	return outdir.Options{
		Prefix: tmpMarker,
		Run:    "conversion",
		Label:  "destination ",
		Accept: func(dst string, entries []fs.DirEntry) error { return acceptDest(src, dst, entries, force) },
		Last:   lastNames,
		Sync:   sync,
		Notice: notice,
	}
}

// checkDest checks that the conversion may write dst (outdir.Check). A
// destination that does not exist, or is an empty folder (or a symbolic
// link to one), may be written. A folder that holds files may be written
// with force only, and only when every entry is a checkpoint's own file
// (see foreignFiles): anything else is refused, naming it, and nothing is
// changed. A destination that is not a folder is refused. Stale
// temporaries of killed conversions inside dst or beside it are removed
// first and reported to notice. It reports whether dst exists.
func checkDest(src, dst string, force bool, notice func(string)) (bool, error) {
	return outdir.Check(dst, destOptions(src, force, false, notice))
}

// acceptDest accepts the entries of an existing destination dst: none,
// or with force a checkpoint's own files only.
func acceptDest(src, dst string, entries []fs.DirEntry, force bool) error {
	if len(entries) == 0 {
		return nil
	}
	if !force {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return fmt.Errorf("destination %s is not empty (%s); pass --force to replace the checkpoint in it", dst, outdir.NameList(names))
	}
	unknown, err := foreignFiles(src, dst, entries)
	if err != nil {
		return err
	}
	if len(unknown) > 0 {
		return fmt.Errorf("destination %s holds files that are not a checkpoint's: %s; --force replaces only a checkpoint's own files "+
			"(weights, configs, tokenizer and processor files, the files the source has), so nothing was changed: move them away or choose another destination",
			dst, outdir.NameList(unknown))
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
		FP8SidecarName: true,
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

// foreignFiles returns those of the entries of dst (relative paths) that
// are not a checkpoint's own, so that --force may not replace them:
//
//   - top-level regular files: see ownNames and ownPatterns, plus the
//     names of the source's top-level files;
//   - the iter_0000001 folder conversions write (a training run's other
//     iterations are not a conversion's), holding only mp_rank_* folders,
//     which hold only regular files named model_optim_rng* (the rank
//     file, its writers' temporaries) or starting with ".rolltpl" or
//     "rolltpl";
//   - the conversion's temporaries (handled by package outdir).
//
// Anything else (other folders such as .git, symbolic links, notes, a
// training run's other files) is foreign.
func foreignFiles(src, dst string, entries []fs.DirEntry) ([]string, error) {
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
	var out []string
	for _, e := range entries {
		name := e.Name()
		switch {
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
	return outdir.Create(dst, destOptions(src, opts.Force, opts.Sync, opts.Notice))
}

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
	in, st, err := srcfile.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
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

// writeFileSync writes a small file, fsyncing it (outdir.Fsync) when sync
// is set.
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
		if err := outdir.Fsync(f); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
