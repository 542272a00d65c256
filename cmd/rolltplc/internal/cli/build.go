package cli

import (
	"fmt"

	"github.com/rolltpl/rolltpl/compiler/pyemit"
)

func runBuild(e *env, args []string) int {
	c := lookup("build")
	fs := flagSet(e, c)
	out := fs.StringP("output", "o", "rolltpl_templates", "output folder (a Python package); an existing one must be empty or hold a previous build")
	format := fs.String("diags", "text", "diagnostics format: text or json")
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	if !diagsFormat(e, c.name, *format) {
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
	ctx, stop := signalContext()
	defer stop()
	if err := pyemit.WriteDir(ctx, *out, files, e.notice("build")); err != nil {
		fmt.Fprintf(e.stderr, "rolltplc build: %v\n", err)
		return ExitError
	}
	if *format != "json" {
		fmt.Fprintf(e.stderr, "wrote %d modules to %s\n", len(files), *out)
	}
	return ExitOK
}
