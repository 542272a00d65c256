package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rolltpl/rolltpl/cmd/rolltplc/internal/diff"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/format"
	"github.com/rolltpl/rolltpl/lang/srcfile"
)

// stdinName names standard input in diagnostics and in -l output.
const stdinName = "<stdin>"

// fmtMode is what fmt does with each file.
type fmtMode struct {
	// list prints the names of files whose formatting differs (-l).
	list bool
	// write rewrites them (-w).
	write bool
	// diff prints a unified diff of the changes, as gofmt -d (-d).
	diff bool
	// check makes a file that would change an exit code 1 (--check).
	check bool
}

// runFmt formats files like gofmt: with no PATH it filters standard input to
// standard output; -l lists the files whose formatting differs, -w rewrites
// them, -d prints the changes as unified diffs, and with none of these the
// formatted text is printed. --check prints nothing but the names of the
// files that would change (their diffs with -d) and makes that exit code 1,
// for CI. Exit code 1 too when a file has syntax errors or cannot be read
// or written.
func runFmt(e *env, args []string) int {
	c := lookup("fmt")
	fs := flagSet(e, c)
	var m fmtMode
	fs.BoolVarP(&m.list, "list", "l", false, "list files whose formatting differs from rolltplc fmt's")
	fs.BoolVarP(&m.write, "write", "w", false, "write the result to the file instead of standard output")
	fs.BoolVarP(&m.diff, "diff", "d", false, "print the changes as unified diffs (as gofmt -d) instead of the formatted text")
	fs.BoolVar(&m.check, "check", false, "change nothing, list the files that would change (with -d: their diffs), exit 1 if any would")
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	if m.check && m.write {
		fmt.Fprintln(e.stderr, "rolltplc fmt: --check changes nothing; -w does not apply")
		return ExitUsage
	}
	if m.check && !m.diff {
		m.list = true
	}
	paths := fs.Args()
	changed := false
	if len(paths) == 0 {
		if m.write {
			fmt.Fprintln(e.stderr, "rolltplc fmt: cannot use -w with standard input")
			return ExitUsage
		}
		src, err := io.ReadAll(e.stdin)
		if err != nil {
			fmt.Fprintf(e.stderr, "rolltplc fmt: reading standard input: %v\n", err)
			return ExitError
		}
		ch, ok := fmtOne(e, stdinName, src, m)
		if !ok || (m.check && ch) {
			return ExitError
		}
		return ExitOK
	}
	failed := false
	for _, p := range paths {
		files, err := fmtPaths(p)
		if err != nil {
			fmt.Fprintf(e.stderr, "rolltplc fmt: %v\n", err)
			failed = true
		}
		for _, file := range files {
			src, err := srcfile.ReadFile(file)
			if err != nil {
				fmt.Fprintf(e.stderr, "rolltplc fmt: %v\n", err)
				failed = true
				continue
			}
			ch, ok := fmtOne(e, file, src, m)
			failed = failed || !ok
			changed = changed || ch
		}
	}
	if failed || (m.check && changed) {
		return ExitError
	}
	return ExitOK
}

// fmtPaths returns path itself when it is a file, or the .rolltpl files
// below it, sorted, when it is a directory.
func fmtPaths(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	return expandPaths([]string{path})
}

// fmtOne formats one file's source as m says; it reports whether the
// formatting differs from src and whether all went well.
func fmtOne(e *env, name string, src []byte, m fmtMode) (changed, ok bool) {
	out, err := format.Source(name, src)
	if err != nil {
		var se *format.SyntaxError
		if errors.As(err, &se) {
			printDiags(e, se.Diags.Dedup(), diag.Sources{name: src}, "text")
		} else {
			fmt.Fprintf(e.stderr, "rolltplc fmt: %v\n", err)
		}
		return false, false
	}
	changed = !bytes.Equal(src, out)
	if m.list && changed {
		fmt.Fprintln(e.stdout, name)
	}
	if m.diff && changed {
		newName := filepath.ToSlash(name)
		_, _ = e.stdout.Write(diff.Diff(newName+".orig", src, newName, out))
	}
	if m.write && changed {
		if err := writeFile(name, out); err != nil {
			fmt.Fprintf(e.stderr, "rolltplc fmt: %v\n", err)
			return changed, false
		}
	}
	if !m.list && !m.write && !m.diff {
		_, _ = e.stdout.Write(out)
	}
	return changed, true
}

// writeFile replaces the file name with data through a temporary file in the
// same folder, renamed over it, keeping its permissions. A symbolic link
// is written through: the file it points to is replaced and the link stays.
func writeFile(name string, data []byte) (err error) {
	if name, err = filepath.EvalSymlinks(name); err != nil {
		return err
	}
	st, err := os.Stat(name)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".fmt-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(st.Mode().Perm()); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
