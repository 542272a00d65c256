package cli

func runCheck(e *env, args []string) int {
	c := lookup("check")
	fs := flagSet(e, c)
	format := fs.String("diags", "text", "diagnostics format: text or json")
	hfConfig := fs.String("hf-config", "", "also check the templates against this HF config.json")
	checkpoint := fs.String("checkpoint", "", "plan the conversion of this checkpoint directory from its headers only")
	var layout layoutFlags // with --checkpoint: the layout convert would write
	layout.add(fs)
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	if !diagsFormat(e, *format) {
		return ExitUsage
	}
	if *checkpoint != "" {
		return checkCheckpoint(e, *checkpoint, fs.Args(), layout.layout(), *format)
	}
	if *hfConfig != "" {
		return checkHFConfig(e, *hfConfig, fs.Args(), *format)
	}
	if _, failed := compile(e, fs.Args(), *format); failed {
		return ExitError
	}
	return ExitOK
}
