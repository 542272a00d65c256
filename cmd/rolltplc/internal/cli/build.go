package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/rolltpl/rolltpl/compiler/pyemit"
)

func runBuild(e *env, args []string) int {
	c := lookup("build")
	fs := flagSet(e, c)
	out := fs.StringP("output", "o", "rolltpl_templates", "output directory (a Python package)")
	format := fs.String("diags", "text", "diagnostics format: text or json")
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	if !diagsFormat(e, *format) {
		return ExitUsage
	}
	res, failed := compile(e, fs.Args(), *format)
	if failed {
		return ExitError
	}
	files, err := pyemit.Emit(res.Program)
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc build: %v\n", err)
		return ExitError
	}
	if err := writeFiles(*out, files); err != nil {
		fmt.Fprintf(e.stderr, "rolltplc build: %v\n", err)
		return ExitError
	}
	if *format != "json" {
		fmt.Fprintf(e.stderr, "wrote %d modules to %s\n", len(files), *out)
	}
	return ExitOK
}

// writeFiles writes files into dir through a temporary directory renamed
// over it, so a failed build leaves the previous output intact.
func writeFiles(dir string, files []pyemit.File) error {
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".rolltplc-build-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(tmp, f.Name), f.Content, 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		old := tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return err
		}
		defer os.RemoveAll(old)
	}
	return os.Rename(tmp, dir)
}
