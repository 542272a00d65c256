package cli

import (
	"fmt"
	"io/fs"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/check"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/stdlib"
)

// checkHFConfig checks templates against a real config.json: the template
// for the file's model_type must exist (or the one given must match), and
// every HF key the template maps must be present, or defaulted by the
// schema, with the right type. For a model type the stdlib has no schema
// for, a schema is inferred from the file.
func checkHFConfig(e *env, path string, paths []string, format string) int {
	src, err := exec.ReadConfigFile(path)
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc check: %v\n", err)
		return ExitError
	}
	cfg, modelType, more := check.ParseHFConfig(path, src)
	if more.HasErrors() {
		printDiags(e, more, diag.Sources{path: src}, format)
		return ExitError
	}
	// A schema inferred from the file covers model types neither the
	// stdlib nor the user's files declare a schema for.
	extra := schema.InferSet(modelType, cfg)
	if len(paths) == 0 {
		// Just the stdlib template for this model type.
		if _, err := fs.Stat(stdlib.Templates(), modelType+".rolltpl"); err == nil {
			paths = []string{resolve.LibPrefix + modelType + ".rolltpl"}
		}
	}
	res, _ := compileWith(e, paths, extra, nil)
	if res == nil {
		return ExitError
	}
	fromLib := len(paths) == 0 || strings.HasPrefix(paths[0], resolve.LibPrefix)
	tmpl, more := check.HFConfigTemplate(res.Program, fromLib, path, src, modelType)
	res.Diags.Extend(more)
	if tmpl != nil {
		probs, err := exec.HFConfigProblems(tmpl, src)
		res.Diags.Extend(check.HFConfigDiags(tmpl, path, probs, err))
	}
	srcs := res.Sources()
	srcs[path] = src
	printDiags(e, res.Diags, srcs, format)
	if res.Diags.HasErrors() {
		return ExitError
	}
	return ExitOK
}
