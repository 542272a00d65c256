// Package cli implements the rolltplc subcommands. Each subcommand lives in
// its own file with its own pflag flag set; [Run] dispatches and returns the
// process exit code: 0 ok, 1 diagnostics or a failed operation, 2 usage.
package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/stdlib"
)

// Version is the rolltplc version, set at build time with -ldflags.
var Version = "0.1.0-dev"

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

type command struct {
	name    string
	summary string
	usage   string
	run     func(e *env, args []string) int
}

var commands []*command

func init() {
	commands = []*command{
		{"build", "compile templates to Python modules ROLL imports", "rolltplc build [-o DIR] [--diags=text|json] [PATH...]", runBuild},
		{"check", "check templates and report diagnostics", "rolltplc check [--diags=text|json] [--hf-config FILE] [--checkpoint DIR [--tp N --pp N --ep N]] [PATH...]", runCheck},
		{"convert", "convert a checkpoint HF <-> MCA (direction from mca_config.json)", "rolltplc convert --from DIR --to DIR [--template PATH|--model-type T] [--to-hf] [--quiet] [--force]", runConvert},
		{"verify", "check an HF checkpoint survives conversion: HF -> MCA -> HF, every tensor compared", "rolltplc verify [--template PATH|--model-type T] [--tp N --pp N --ep N ...] [--quiet] DIR", runVerify},
		{"fmt", "format .rolltpl files canonically", "rolltplc fmt [-l] [-w] [PATH...]  (no PATH: stdin to stdout)", runFmt},
		{"lsp", "run the language server for editors (LSP over stdio)", "rolltplc lsp [--log-file FILE]", runLSP},
		{"schema", "infer a config schema from a config.json", "rolltplc schema infer [--name NAME] CONFIG.json  (- for stdin)", runSchema},
		{"version", "print the version", "rolltplc version", runVersion},
		{"help", "show help for a command", "rolltplc help [COMMAND]", runHelp},
	}
}

// Run runs rolltplc with args (without the program name).
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "rolltplc: internal error: %v\n", r)
			code = ExitError
		}
	}()
	if len(args) == 0 {
		usage(stderr)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "--help":
		usage(stdout)
		return ExitOK
	case "-v", "--version":
		return runVersion(e, nil)
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(e, args[1:])
		}
	}
	fmt.Fprintf(stderr, "rolltplc: unknown command %q\n\n", args[0])
	usage(stderr)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "rolltplc compiles, checks and formats .rolltpl conversion templates for ROLL.")
	fmt.Fprintln(w, "\nUsage:\n  rolltplc COMMAND [flags] [args]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'rolltplc help COMMAND' for a command's flags.")
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func runHelp(e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stdout)
		return ExitOK
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(e.stderr, "rolltplc help: unknown command %q\n", args[0])
		return ExitUsage
	}
	fs := flagSet(e, c)
	fmt.Fprintf(e.stdout, "%s: %s\n\nUsage: %s\n", c.name, c.summary, c.usage)
	if c.name != "help" && c.name != "version" {
		c.run(&env{stdin: e.stdin, stdout: io.Discard, stderr: io.Discard}, []string{"--help-flags-only"})
		_ = fs
	}
	if fl := flagsUsage[c.name]; fl != "" {
		fmt.Fprintf(e.stdout, "\nFlags:\n%s", fl)
	}
	return ExitOK
}

// flagsUsage holds each command's flag help, filled when its flag set is
// built.
var flagsUsage = map[string]string{}

func flagSet(e *env, c *command) *pflag.FlagSet {
	fs := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: %s\n\nFlags:\n%s", c.usage, fs.FlagUsages())
	}
	return fs
}

// parse parses flags, recording their help; it returns false and the exit
// code when parsing failed or only help was wanted.
func parse(e *env, name string, fs *pflag.FlagSet, args []string) (bool, int) {
	flagsUsage[name] = fs.FlagUsages()
	if len(args) == 1 && args[0] == "--help-flags-only" {
		return false, ExitOK
	}
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return false, ExitOK
		}
		fmt.Fprintf(e.stderr, "rolltplc %s: %v\n", name, err)
		fs.Usage()
		return false, ExitUsage
	}
	return true, 0
}

func runVersion(e *env, args []string) int {
	fmt.Fprintf(e.stdout, "rolltplc %s\n", Version)
	return ExitOK
}

// diagsFlag validates --diags.
func diagsFormat(e *env, v string) bool {
	if v != "text" && v != "json" {
		fmt.Fprintf(e.stderr, "rolltplc: --diags must be text or json, not %q\n", v)
		return false
	}
	return true
}

// expandPaths turns files and folders into .rolltpl file paths; no paths
// means the whole stdlib.
func expandPaths(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return compiler.LibPaths(stdlib.Templates())
	}
	var out []string
	for _, p := range paths {
		if strings.HasPrefix(p, resolve.LibPrefix) {
			out = append(out, p)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(path, ".rolltpl") {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// compile compiles paths (or the stdlib) and prints diagnostics; it returns
// the result and whether there were errors.
func compile(e *env, paths []string, format string) (*compiler.Result, bool) {
	res, failed := compileWith(e, paths, nil, nil)
	if res != nil {
		printDiags(e, res.Diags, res.Sources(), format)
	}
	return res, failed
}

// compileWith compiles paths (or the stdlib) against the stdlib schemas
// plus extra (e.g. a schema inferred from a config.json), adding extra
// diagnostics; it prints nothing.
func compileWith(e *env, paths []string, extra *schema.Set, more diag.List) (*compiler.Result, bool) {
	files, err := expandPaths(paths)
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc: %v\n", err)
		return nil, true
	}
	set, sdiags := stdlibSchemas()
	if extra != nil {
		for n, sc := range extra.Schemas {
			if set.Schema(n) == nil {
				set.Schemas[n] = sc
			}
		}
	}
	res := compiler.Compile(files, compiler.Options{Lib: stdlib.Templates(), Schemas: set, Backend: pyemit.Check, DropSyntax: true})
	res.Diags = append(append(sdiags, res.Diags...), more...)
	return res, res.Diags.HasErrors()
}

// stdlibSchemas loads the stdlib's config schemas (a fresh copy each call,
// so callers may add to it).
func stdlibSchemas() (*schema.Set, diag.List) {
	return schema.LoadFS(stdlib.Schemas(), "stdlib/schema/")
}

func printDiags(e *env, l diag.List, src diag.Sources, format string) {
	cwd, _ := os.Getwd()
	p := &diag.Printer{Sources: src, Cwd: cwd, MaxPerFile: diag.DefaultMaxPerFile}
	if format == "json" {
		_ = p.JSON(e.stdout, l)
		return
	}
	_ = p.Text(e.stderr, l)
}
