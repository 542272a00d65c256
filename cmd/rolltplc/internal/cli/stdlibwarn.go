package cli

import (
	"fmt"
	"strings"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/lang/diag"
)

// stdlibWarningsFlag is check's flag that prints the warnings about the
// bundled stdlib's own templates instead of counting them.
const stdlibWarningsFlag = "stdlib-warnings"

// printResultDiags prints the diagnostics of the compilation of paths
// (none: the whole stdlib) as [printDiags] does, except that when only
// the bundled stdlib's templates were compiled (build or check without
// PATH) and the format is text,
// the warnings about its files are counted in one line rather than
// printed, unless e.stdlibWarnings. They are ROLL's quirks, which the
// stdlib reproduces on purpose (a mapped bias no op converts, an MCA key
// the config class drops); printed on every build and bare check they
// read as a broken setup. A template of the user's own, even one whose
// warning points into a stdlib block it uses, is shown everything, and
// JSON always lists everything.
func printResultDiags(e *env, res *compiler.Result, src diag.Sources, paths []string, format string) {
	l := res.Diags
	hidden := 0
	if format == "text" && !e.stdlibWarnings && stdlibOnly(paths) {
		l, hidden = withoutLibWarnings(res)
	}
	printDiags(e, l, src, format)
	if hidden > 0 {
		how := "'rolltplc check --" + stdlibWarningsFlag + "' lists them"
		if e.cmd == "check" {
			how = "--" + stdlibWarningsFlag + " lists them"
		}
		fmt.Fprintf(e.stderr, "%s: %s about the bundled stdlib not shown (quirks of ROLL's own templates); %s\n", e.prefix(), plural(hidden, "warning"), how)
	}
}

// stdlibOnly reports whether paths name only the bundled stdlib's
// templates (no paths is the whole stdlib).
func stdlibOnly(paths []string) bool {
	for _, p := range paths {
		if !strings.HasPrefix(p, resolve.LibPrefix) {
			return false
		}
	}
	return true
}

// withoutLibWarnings returns res's diagnostics without the warnings in
// library files, and how many it left out.
func withoutLibWarnings(res *compiler.Result) (diag.List, int) {
	lib := map[string]bool{}
	if res.Info != nil {
		for _, f := range res.Info.Files {
			lib[f.Path] = f.Lib
		}
	}
	var out diag.List
	for _, d := range res.Diags {
		if d.Severity == diag.Warning && lib[d.Subject.Start.Filename] {
			continue
		}
		out = append(out, d)
	}
	return out, len(res.Diags) - len(out)
}
