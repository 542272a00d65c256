package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/rolltpl/rolltpl/cmd/rolltplc/internal/lsp"
	"github.com/rolltpl/rolltpl/stdlib"
)

// runLSP serves the Language Server Protocol on standard input and output
// until the client sends exit: 0 after a shutdown request, else 1. Logs go
// to standard error or --log-file, never to standard output.
func runLSP(e *env, args []string) int {
	c := lookup("lsp")
	fs := flagSet(e, c)
	logFile := fs.String("log-file", "", "append the server's log to this file instead of standard error")
	// Editors' generic clients often pass --stdio; stdio is the only
	// transport, so it is accepted and ignored.
	fs.Bool("stdio", true, "use standard input and output (the only transport)")
	_ = fs.MarkHidden("stdio")
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "rolltplc lsp: unexpected argument %q\n", fs.Arg(0))
		return ExitUsage
	}
	var logw io.Writer = e.stderr
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(e.stderr, "rolltplc lsp: %v\n", err)
			return ExitError
		}
		defer f.Close()
		logw = f
	}
	// The same schemas as `rolltplc check`: the stdlib's and the user's.
	srv := lsp.New(lsp.Options{Lib: stdlib.Templates(), SchemaLib: stdlib.Schemas(), Version: moduleVersion(), Log: logw})
	return srv.Serve(e.stdin, e.stdout)
}
