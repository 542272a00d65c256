package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"

	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/runtime/exec"
)

// schemaNameRE matches the names a schema may have.
var schemaNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// runSchema runs `rolltplc schema SUBCOMMAND`. The one subcommand, infer,
// prints the schema inferred from a config.json ("-": standard input),
// named after its model_type unless --name says otherwise.
func runSchema(e *env, args []string) int {
	c := lookup("schema")
	fs := flagSet(e, c)
	name := fs.String("name", "", "schema name (default: the config's model_type)")
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprintf(e.stderr, "rolltplc schema: missing subcommand (infer)\n")
		return ExitUsage
	}
	if rest[0] != "infer" {
		fmt.Fprintf(e.stderr, "rolltplc schema: unknown subcommand %q (the one subcommand is infer)\n", rest[0])
		return ExitUsage
	}
	if len(rest) != 2 {
		fmt.Fprintf(e.stderr, "rolltplc schema infer: want one CONFIG.json\n")
		return ExitUsage
	}
	if *name != "" && !schemaNameRE.MatchString(*name) {
		fmt.Fprintf(e.stderr, "rolltplc schema infer: --name %q is not a name (letters, digits, _)\n", *name)
		return ExitUsage
	}
	file := rest[1]
	var (
		src []byte
		err error
	)
	if file == "-" {
		file = stdinName
		src, err = io.ReadAll(e.stdin)
	} else {
		src, err = exec.ReadConfigFile(file)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc schema infer: %v\n", err)
		return ExitError
	}
	cfg, err := decodeInferConfig(src)
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc schema infer: %s: %v\n", file, err)
		return ExitError
	}
	n := *name
	if n == "" {
		mt, _ := cfg["model_type"].(string)
		if !schemaNameRE.MatchString(mt) {
			fmt.Fprintf(e.stderr, "rolltplc schema infer: %s: no usable model_type (%q); give the schema a name with --name\n", file, mt)
			return ExitError
		}
		n = mt
	}
	_, _ = io.WriteString(e.stdout, schema.Infer(n, cfg))
	return ExitOK
}

// decodeInferConfig decodes a config.json object, keeping numbers as
// json.Number so that 1 and 1.0 stay apart.
func decodeInferConfig(src []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %v", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("not JSON: data after the top-level value")
	}
	cfg, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a JSON object")
	}
	return cfg, nil
}
