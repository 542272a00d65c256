package cli

func runCheck(e *env, args []string) int {
	c := lookup("check")
	fs := flagSet(e, c)
	format := fs.String("diags", "text", "diagnostics format: text or json")
	hfConfig := fs.String("hf-config", "", "also check the templates against this HF config.json")
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	if !diagsFormat(e, *format) {
		return ExitUsage
	}
	if *hfConfig != "" {
		return checkHFConfig(e, *hfConfig, fs.Args(), *format)
	}
	if _, failed := compile(e, fs.Args(), *format); failed {
		return ExitError
	}
	return ExitOK
}
