package cli

import (
	"github.com/spf13/pflag"

	"github.com/rolltpl/rolltpl/runtime/exec"
)

// runCheck checks templates (or the stdlib); --hf-config also checks them
// against a config.json, --checkpoint plans a checkpoint's conversion. The
// layout flags apply only to --checkpoint of an HF checkpoint (an MCA
// checkpoint's layout is the one its mca_config.json records), and
// --hf-config and --checkpoint are separate checks: a flag that does not
// apply is a usage error rather than silently ignored.
func runCheck(e *env, args []string) int {
	c := lookup("check")
	fs := flagSet(e, c)
	format := fs.String("diags", "text", "diagnostics format: text or json")
	hfConfig := fs.String("hf-config", "", "also check the templates against this HF config.json")
	checkpoint := fs.String("checkpoint", "", "plan the conversion of this checkpoint directory from its headers only")
	fs.BoolVar(&e.stdlibWarnings, stdlibWarningsFlag, false, "list the warnings about the bundled stdlib's own templates (quirks of ROLL's), which are otherwise counted in one line")
	var layout layoutFlags // with --checkpoint: the layout convert would write
	layout.add(fs)
	noMTP := fs.Bool("no-mtp", false, "with --checkpoint: plan the conversion as convert --no-mtp does (MTP weights left out)")
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	if !diagsFormat(e, c.name, *format) {
		return ExitUsage
	}
	switch {
	case *checkpoint == "":
		if code, ok := notApplicable(e, c.name, fs, "applies only with --checkpoint (the layout of the conversion to plan)", append(layoutFlagNames(), "no-mtp")...); !ok {
			return code
		}
	case *hfConfig != "":
		return usageError(e, c.name, "--hf-config and --checkpoint are separate checks; run check once for each")
	case exec.IsMCA(*checkpoint):
		if code, ok := notApplicable(e, c.name, fs, "does not apply to an MCA checkpoint: its layout is the one "+exec.MCAConfigName+" records", layoutFlagNames()...); !ok {
			return code
		}
	}
	if *checkpoint != "" || *hfConfig != "" || !stdlibOnly(fs.Args()) {
		if code, ok := notApplicable(e, c.name, fs, "applies only to a check of the stdlib's own templates (no PATH of yours, no --hf-config or --checkpoint)", stdlibWarningsFlag); !ok {
			return code
		}
	}
	if *checkpoint != "" {
		return checkCheckpoint(e, *checkpoint, fs.Args(), layout.layout(), *noMTP, *format)
	}
	if *hfConfig != "" {
		return checkHFConfig(e, *hfConfig, fs.Args(), *format)
	}
	if _, failed := compile(e, fs.Args(), *format); failed {
		return ExitError
	}
	return ExitOK
}

// layoutFlagNames returns the names of the layout flags ([layoutFlags]).
func layoutFlagNames() []string {
	fs := pflag.NewFlagSet("layout", pflag.ContinueOnError)
	var l layoutFlags
	l.add(fs)
	var names []string
	fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	return names
}

// templateHint says how the user of command cmd names the template to
// use: check takes it as its PATH argument, convert and verify as
// --template.
func templateHint(cmd string) string {
	if cmd == "check" {
		return "give the template's file or folder as PATH"
	}
	return "pass --template"
}

// modelTypeHint says how the user of command cmd picks one template of
// several: check has no --model-type (the checkpoint names its model
// type), so its PATH must hold just the one.
func modelTypeHint(cmd string) string {
	if cmd == "check" {
		return "give a file or folder holding only the checkpoint's template as PATH"
	}
	return "pass --model-type to choose one"
}
