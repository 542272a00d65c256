// Package cli implements the rolltplc subcommands. Each subcommand lives in
// its own file with its own pflag flag set; [Run] dispatches and returns the
// process exit code: 0 ok, 1 diagnostics or a failed operation, 2 usage.
package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/stdlib"
)

// Version is the rolltplc version. Empty (the default) means the main
// module's version from the binary's build information ([debug.ReadBuildInfo]),
// as `go install` and `go build` record it; a release build may set it
// with -ldflags "-X .../cli.Version=v1.2.3".
var Version = ""

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// cmd is the name of the command being run, for messages.
	cmd string
	// flagsOnly makes [parse] record the command's flag set in flags and
	// stop, without parsing or running anything: how `help CMD` gets a
	// command's flags.
	flagsOnly bool
	flags     *pflag.FlagSet
	// stdlibWarnings prints the warnings about the bundled stdlib's own
	// templates rather than counting them (check --stdlib-warnings).
	stdlibWarnings bool
}

// prefix is how messages of the running command begin: "rolltplc CMD".
func (e *env) prefix() string {
	if e.cmd == "" {
		return "rolltplc"
	}
	return "rolltplc " + e.cmd
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
		{"dequantize", "write an FP8 block-quantized HF checkpoint as a BF16 one (drop-in for fp8_cast_bf16.py)", "rolltplc dequantize --from HF_FP8 --to DIR [--dtype bf16|f16|f32] [--template PATH] [--quiet] [--force]", runDequantize},
		{"verify", "check an HF checkpoint survives conversion: HF -> MCA -> HF, every tensor compared", "rolltplc verify [--template PATH|--model-type T] [--tp N --pp N --ep N ...] [--quiet] DIR", runVerify},
		{"fmt", "format .rolltpl files canonically", "rolltplc fmt [-l] [-w] [-d] [--check] [PATH...]  (no PATH: stdin to stdout)", runFmt},
		{"lsp", "run the language server for editors (LSP over stdio)", "rolltplc lsp [--log-file FILE]", runLSP},
		{"schema", "infer a config schema from a config.json", "rolltplc schema infer [--name NAME] CONFIG.json  (- for stdin)", runSchema},
		{"version", "print the version", "rolltplc version", runVersion},
		{"help", "show help for a command", "rolltplc help [COMMAND]", runHelp},
	}
}

// Run runs rolltplc with args (without the program name). A command that
// ends in a usage error (exit 2) has printed one line naming the problem;
// Run adds where to read the command's usage.
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
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "rolltplc: unknown command %q%s\nsee 'rolltplc help'\n", args[0], didYouMean(args[0]))
		return ExitUsage
	}
	e.cmd = c.name
	code = c.run(e, args[1:])
	if code == ExitUsage {
		if c.name == "help" {
			fmt.Fprintln(stderr, "see 'rolltplc help'")
		} else {
			fmt.Fprintf(stderr, "see 'rolltplc help %s'\n", c.name)
		}
	}
	return code
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "rolltplc compiles, checks and formats .rolltpl conversion templates for ROLL.")
	fmt.Fprintln(w, "\nUsage:\n  rolltplc COMMAND [flags] [args]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'rolltplc help COMMAND' for a command's flags.")
}

// didYouMean returns "; did you mean X?" for the command X closest to a
// mistyped name, or "".
func didYouMean(name string) string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	if s := vocab.Suggest(name, names); s != "" {
		return fmt.Sprintf("; did you mean %q?", s)
	}
	return ""
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// runHelp prints the command list, or one command's summary, usage line
// and flags.
func runHelp(e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stdout)
		return ExitOK
	}
	if len(args) > 1 {
		fmt.Fprintln(e.stderr, "rolltplc help: one command at a time")
		return ExitUsage
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(e.stderr, "rolltplc help: unknown command %q%s\n", args[0], didYouMean(args[0]))
		return ExitUsage
	}
	var fs *pflag.FlagSet
	if c.name != "help" && c.name != "version" {
		fe := &env{stdin: e.stdin, stdout: io.Discard, stderr: io.Discard, flagsOnly: true}
		c.run(fe, nil)
		fs = fe.flags
	}
	printHelp(e.stdout, c, fs)
	return ExitOK
}

// printHelp prints command c's summary, usage line and the flags of fs
// (nil: none).
func printHelp(w io.Writer, c *command, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "%s: %s\n\nUsage: %s\n", c.name, c.summary, c.usage)
	if fs != nil && fs.HasAvailableFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", flagUsages(fs, c.usage))
	}
}

// flagUsages lists the flags of fs, one a line, as gofmt and go vet show
// them: a boolean flag is shown bare (`--force`, set by its presence; pflag
// would show `--force[=true|false]`), another with its value's name
// (`--tp N`: as the command's usage line names it, else N for a number,
// else the type), and a non-zero default at the end.
func flagUsages(fs *pflag.FlagSet, usageLine string) string {
	names := map[string]string{}
	for _, m := range flagValueName.FindAllStringSubmatch(usageLine, -1) {
		names[m[1]] = m[2]
	}
	type row struct{ head, help string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		head := "      --" + f.Name
		if f.Shorthand != "" {
			head = "  -" + f.Shorthand + ", --" + f.Name
		}
		name, help := pflag.UnquoteUsage(f)
		switch {
		case names["--"+f.Name] != "":
			name = names["--"+f.Name]
		case f.Shorthand != "" && names["-"+f.Shorthand] != "":
			name = names["-"+f.Shorthand]
		case name == "int":
			name = "N"
		}
		if f.Value.Type() != "bool" && name != "" {
			head += " " + name
		}
		switch f.Value.Type() {
		case "bool":
			if f.DefValue == "true" {
				help += " (default true; --" + f.Name + "=false turns it off)"
			}
		case "string":
			if f.DefValue != "" {
				help += fmt.Sprintf(" (default %q)", f.DefValue)
			}
		default:
			if f.DefValue != "0" && f.DefValue != "" && f.DefValue != "[]" {
				help += " (default " + f.DefValue + ")"
			}
		}
		rows = append(rows, row{head, help})
		width = max(width, len(head))
	})
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s   %s\n", width, r.head, r.help)
	}
	return b.String()
}

// flagValueName finds `--flag VALUE` and `-f VALUE` in a usage line.
var flagValueName = regexp.MustCompile(`(--?[a-z][a-z0-9-]*)[ =]((?:[A-Z][A-Z0-9_.]*|[a-z]+(?:\|[a-z]+)+))\b`)

// flagSet returns an empty flag set for command c. It prints nothing by
// itself: [parse] reports errors in one line and prints help for -h.
func flagSet(e *env, c *command) *pflag.FlagSet {
	fs := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses the command's flags; it returns false and the exit code
// when parsing failed (a usage error, printed in one line), help was
// asked for (printed to stdout, exit 0), or only the flag set was wanted
// (e.flagsOnly).
func parse(e *env, name string, fs *pflag.FlagSet, args []string) (bool, int) {
	if e.flagsOnly {
		e.flags = fs
		return false, ExitOK
	}
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			printHelp(e.stdout, lookup(name), fs)
			return false, ExitOK
		}
		fmt.Fprintf(e.stderr, "rolltplc %s: %v\n", name, err)
		return false, ExitUsage
	}
	return true, 0
}

// convertFlagsApply rejects the convert flags that do not apply to the
// direction: the layout flags to MCA -> HF (the layout is the one the
// source's mca_config.json records), --max-shard-size to HF -> MCA (rank
// files are not sharded by size).
func convertFlagsApply(e *env, fs *pflag.FlagSet, from string, isMCA bool) (int, bool) {
	if isMCA {
		if code, ok := notApplicable(e, "convert", fs, "applies to HF -> MCA only", "dequantize"); !ok {
			return code, ok
		}
		return notApplicable(e, "convert", fs, "does not apply to MCA -> HF: the layout is the one "+filepath.Join(from, exec.MCAConfigName)+" records", layoutFlagNames()...)
	}
	if code, ok := notApplicable(e, "convert", fs, "applies to MCA -> HF only", "quantize", "scales"); !ok {
		return code, ok
	}
	return notApplicable(e, "convert", fs, "applies to MCA -> HF only (HF -> MCA writes one file a rank)", "max-shard-size")
}

// usageError prints a usage error of command cmd in one line and returns
// its exit code ([Run] adds where to read the command's usage).
func usageError(e *env, cmd, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "rolltplc %s: %s\n", cmd, fmt.Sprintf(format, args...))
	return ExitUsage
}

// notApplicable returns a usage error naming the first of the flags
// names that was set on the command line, saying why it does not apply
// (why completes "--tp: ..."); ok is true when none was set.
func notApplicable(e *env, cmd string, fs *pflag.FlagSet, why string, names ...string) (code int, ok bool) {
	for _, n := range names {
		if fs.Changed(n) {
			fmt.Fprintf(e.stderr, "rolltplc %s: --%s %s\n", cmd, n, why)
			return ExitUsage, false
		}
	}
	return 0, true
}

// runVersion prints the version and what the binary was built from: the
// main module's path and version, the VCS revision, its time and whether
// the work tree was modified (vcs.* settings, recorded by go build in a
// repository), and the Go version and platform. Missing build information
// (a test binary) prints "(devel)" and "unknown".
func runVersion(e *env, args []string) int {
	if len(args) > 0 {
		fmt.Fprintln(e.stderr, "rolltplc version: takes no arguments")
		return ExitUsage
	}
	info, _ := debug.ReadBuildInfo()
	_, _ = io.WriteString(e.stdout, versionText(info))
	return ExitOK
}

// versionOr returns [Version] when set, else ver (a module version from
// build information), else "(devel)".
func versionOr(ver string) string {
	if Version != "" {
		return Version
	}
	if ver == "" {
		return "(devel)"
	}
	return ver
}

// moduleVersion returns the version rolltplc reports (the first line of
// `rolltplc version`), e.g. to the language server's clients.
func moduleVersion() string {
	ver := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		ver = info.Main.Version
	}
	return versionOr(ver)
}

// versionText formats the build information info (nil when there is none).
func versionText(info *debug.BuildInfo) string {
	mod, ver := "github.com/rolltpl/rolltpl", ""
	settings := map[string]string{}
	goVer := runtime.Version()
	if info != nil {
		if info.Main.Path != "" {
			mod = info.Main.Path
		}
		ver = info.Main.Version
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
		if info.GoVersion != "" {
			goVer = info.GoVersion
		}
	}
	ver = versionOr(ver)
	rev := settings["vcs.revision"]
	if rev == "" {
		rev = "unknown"
	} else {
		if t := settings["vcs.time"]; t != "" {
			rev += " " + t
		}
		if settings["vcs.modified"] == "true" {
			rev += " (modified)"
		}
	}
	return fmt.Sprintf("rolltplc %s\nmodule   %s\nrevision %s\ngo       %s %s/%s\n", ver, mod, rev, goVer, runtime.GOOS, runtime.GOARCH)
}

// diagsFormat validates the --diags of command cmd.
func diagsFormat(e *env, cmd, v string) bool {
	if v != "text" && v != "json" {
		fmt.Fprintf(e.stderr, "rolltplc %s: --diags must be text or json, not %q\n", cmd, v)
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
		printResultDiags(e, res, res.Sources(), paths, format)
	}
	return res, failed
}

// compileWith compiles paths (or the stdlib) against the stdlib schemas
// and the schemas the files declare, with extra (e.g. a schema inferred
// from a config.json) for names neither declares, adding extra
// diagnostics; it prints nothing.
func compileWith(e *env, paths []string, extra *schema.Set, more diag.List) (*compiler.Result, bool) {
	files, err := expandPaths(paths)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", e.prefix(), err)
		return nil, true
	}
	res := compiler.Compile(files, compiler.Options{Lib: stdlib.Templates(), SchemaLib: compiler.LoadSchemaLibrary(stdlib.Schemas()), Schemas: extra, Backend: pyemit.Check, DropSyntax: true})
	res.Diags = append(res.Diags, more...)
	return res, res.Diags.HasErrors()
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
