package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/format"
	"github.com/rolltpl/rolltpl/lang/srcfile"
)

// stdinName names standard input in diagnostics and in -l output.
const stdinName = "<stdin>"

// runFmt formats files like gofmt: with no PATH it filters standard input to
// standard output; -l lists the files whose formatting differs, -w rewrites
// them, and with neither the formatted text is printed. Exit code 1 when a
// file has syntax errors or cannot be read or written.
func runFmt(e *env, args []string) int {
	c := lookup("fmt")
	fs := flagSet(e, c)
	list := fs.BoolP("list", "l", false, "list files whose formatting differs from rolltplc fmt's")
	write := fs.BoolP("write", "w", false, "write the result to the file instead of standard output")
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	paths := fs.Args()
	if len(paths) == 0 {
		if *write {
			fmt.Fprintln(e.stderr, "rolltplc fmt: cannot use -w with standard input")
			return ExitUsage
		}
		src, err := io.ReadAll(e.stdin)
		if err != nil {
			fmt.Fprintf(e.stderr, "rolltplc fmt: reading standard input: %v\n", err)
			return ExitError
		}
		if !fmtOne(e, stdinName, src, *list, false) {
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
			if !fmtOne(e, file, src, *list, *write) {
				failed = true
			}
		}
	}
	if failed {
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

// fmtOne formats one file's source and reports whether that went well.
func fmtOne(e *env, name string, src []byte, list, write bool) bool {
	out, err := format.Source(name, src)
	if err != nil {
		var se *format.SyntaxError
		if errors.As(err, &se) {
			printDiags(e, se.Diags.Dedup(), diag.Sources{name: src}, "text")
		} else {
			fmt.Fprintf(e.stderr, "rolltplc fmt: %v\n", err)
		}
		return false
	}
	changed := !bytes.Equal(src, out)
	if list && changed {
		fmt.Fprintln(e.stdout, name)
	}
	if write && changed {
		if err := writeFile(name, out); err != nil {
			fmt.Fprintf(e.stderr, "rolltplc fmt: %v\n", err)
			return false
		}
	}
	if !list && !write {
		_, _ = e.stdout.Write(out)
	}
	return true
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
