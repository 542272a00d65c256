package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rolltpl/rolltpl/cmd/rolltplc/internal/lsp"
	"github.com/rolltpl/rolltpl/compiler/check"
	"github.com/rolltpl/rolltpl/compiler/schema"
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
	// The same schemas as `rolltplc check`; problems in the stdlib's own
	// schemas are the build's concern, not the editor's.
	schemas, _ := stdlibSchemas()
	srv := lsp.New(lsp.Options{Lib: stdlib.Templates(), Schemas: schemas, Version: moduleVersion(), Log: logw, KeyDocs: schemaKeyDocs(schemas)})
	return srv.Serve(e.stdin, e.stdout)
}

// schemaKeyDocs documents config keys from the schemas: type, default and
// the field's doc comment. HF keys are looked up in the schema of the
// template's model type (dotted paths descend into nested configs), MCA keys
// in the MCA schema.
func schemaKeyDocs(set *schema.Set) lsp.KeyDocs {
	return func(modelType, side, key string) (string, bool) {
		var f *schema.Field
		switch side {
		case "mca":
			f = set.Schema(check.MCASchema).Field(key)
		case "hf":
			if root := set.Schema(modelType); root != nil {
				f, _, _ = set.Resolve(root, strings.Split(key, "."))
			}
		}
		if f == nil {
			return "", false
		}
		doc := fmt.Sprintf("`%s: %s`", f.Name, f.Type)
		if f.Default != "" {
			doc = fmt.Sprintf("`%s: %s = %s`", f.Name, f.Type, f.Default)
		}
		if f.Doc != "" {
			doc += "\n\n" + f.Doc
		}
		return doc, true
	}
}
