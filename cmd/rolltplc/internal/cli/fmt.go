package cli

import "fmt"

func runFmt(e *env, args []string) int {
	fmt.Fprintln(e.stderr, "rolltplc fmt: not yet")
	return ExitError
}
