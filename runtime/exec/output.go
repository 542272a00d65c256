package exec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/blockio"
)

// output is a conversion's destination: everything is written to a
// temporary directory beside it, renamed into place by commit, so that a
// failed or interrupted conversion leaves the destination as it was.
type output struct {
	dst, tmp  string
	force     bool
	committed bool
}

// checkDest refuses a destination that exists and is not an empty
// directory, unless force.
func checkDest(dst string, force bool) error {
	st, err := os.Stat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if force {
		return nil
	}
	if !st.IsDir() {
		return fmt.Errorf("destination %s exists and is not a directory (use force to replace it)", dst)
	}
	entries, err := os.ReadDir(dst)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("destination %s is not empty (use force to replace it)", dst)
	}
	return nil
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

func newOutput(dst string, force bool) (*output, error) {
	if err := checkDest(dst, force); err != nil {
		return nil, err
	}
	dst = filepath.Clean(dst)
	parent := filepath.Dir(dst)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dst)+".rolltpl-tmp-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &output{dst: dst, tmp: tmp, force: force}, nil
}

// path returns the temporary path of a file of the output.
func (o *output) path(elem ...string) string {
	return filepath.Join(append([]string{o.tmp}, elem...)...)
}

// commit renames the temporary directory to the destination; an existing
// destination (allowed by checkDest) is moved aside first and removed
// after.
func (o *output) commit() error {
	if err := checkDest(o.dst, o.force); err != nil {
		return err
	}
	var old string
	if st, err := os.Stat(o.dst); err == nil {
		if entries, _ := os.ReadDir(o.dst); st.IsDir() && len(entries) == 0 {
			if err := os.Remove(o.dst); err != nil {
				return err
			}
		} else {
			old = o.tmp + "-old"
			if err := os.Rename(o.dst, old); err != nil {
				return err
			}
		}
	}
	if err := os.Rename(o.tmp, o.dst); err != nil {
		if old != "" {
			os.Rename(old, o.dst)
		}
		return err
	}
	o.committed = true
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

// abort removes the temporary directory unless committed, and names
// files in *err by their place in the destination: the user chose the
// destination, while the temporary directory is gone once abort returns.
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
			target, err := filepath.EvalSymlinks(path)
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
