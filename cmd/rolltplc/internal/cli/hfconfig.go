package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
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
	tf := token.NewFile(path, src)
	var more diag.List
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	var cfg map[string]any
	if err := dec.Decode(&cfg); err != nil {
		off := 0
		if se, ok := err.(*json.SyntaxError); ok {
			off = int(se.Offset)
		}
		more.Add(diag.Errorf(tf.Span(off, off), diag.HFConfigJSON, "config.json is not a JSON object", "%v", err))
		printDiags(e, more, diag.Sources{path: src}, format)
		return ExitError
	}
	modelType, _ := cfg["model_type"].(string)
	if modelType == "" {
		more.Add(diag.Errorf(tf.Span(0, 0), diag.HFConfigModelType, "config.json has no model_type",
			"A Hugging Face config.json names its model_type; the template is chosen by it."))
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
	var tmpl *ir.Template
	if len(paths) == 0 || strings.HasPrefix(paths[0], resolve.LibPrefix) {
		tmpl = res.Program.Template(modelType)
		if tmpl == nil {
			res.Diags.Add(diag.Errorf(tf.Span(0, 0), diag.HFConfigModelType, "No template for this model type",
				"The stdlib has no template for model_type %q; pass the template's path.", modelType))
		}
	} else {
		for _, t := range res.Program.Templates {
			if t.Name == modelType {
				tmpl = t
			}
		}
		if tmpl == nil && len(res.Program.Templates) > 0 {
			t := res.Program.Templates[0]
			res.Diags.Add(diag.Errorf(t.Span, diag.HFConfigModelType, "Model type mismatch",
				"%s has model_type %q but the template converts %q.", path, modelType, t.Name))
		}
	}
	if tmpl != nil {
		res.Diags.Extend(hfConfigDiags(tmpl, src, path))
	}
	srcs := res.Sources()
	srcs[path] = src
	printDiags(e, res.Diags, srcs, format)
	if res.Diags.HasErrors() {
		return ExitError
	}
	return ExitOK
}

// hfConfigDiags checks each mapped key of t against the config.json
// text with the checks convert runs ([exec.HFConfigProblems]).
func hfConfigDiags(t *ir.Template, src []byte, path string) diag.List {
	var out diag.List
	probs, err := exec.HFConfigProblems(t, src)
	if err != nil {
		out.Add(diag.Errorf(t.Span, diag.HFConfigJSON, "config.json is not a JSON object", "%s: %v", path, err))
		return out
	}
	for _, p := range probs {
		switch p.Code {
		case diag.HFConfigMissing:
			out.Add(diag.Errorf(p.Entry.Span, p.Code, "Mapped key missing from config.json",
				"%s has no %s and the schema gives it no default; ROLL would skip it and leave MCA %s at Megatron's default.", path, p.Key, p.Entry.MCA))
		case diag.HFConfigRange:
			out.Add(diag.Errorf(p.Entry.Span, p.Code, "Config value out of range",
				"%s: %s is %s: %s.", path, p.Key, p.Value, p.Msg))
		default:
			out.Add(diag.Errorf(p.Entry.Span, p.Code, "Config value of the wrong type",
				"%s: %s is %s: %s.", path, p.Key, p.Value, p.Msg))
		}
	}
	return out
}
