package check

import (
	"bytes"
	"encoding/json"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

// Templates against a real config.json (`rolltplc check --hf-config`):
// the hf-config-* diagnostics of lang/spec.md §11. The values are checked
// by the runtime, with the checks convert runs (exec.HFConfigProblems);
// these functions turn what it finds, and what selects the template, into
// diagnostics.

// ParseHFConfig decodes the text of the config.json at path (numbers kept
// as json.Number) and returns its values and model_type. The file must be
// a JSON object naming its model_type (hf-config-json,
// hf-config-model-type); diags holds the error when it is not, with cfg
// nil.
func ParseHFConfig(path string, src []byte) (cfg map[string]any, modelType string, diags diag.List) {
	tf := token.NewFile(path, src)
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	if err := dec.Decode(&cfg); err != nil {
		off := 0
		if se, ok := err.(*json.SyntaxError); ok {
			off = int(se.Offset)
		}
		diags.Add(diag.Errorf(tf.Span(off, off), diag.HFConfigJSON, "config.json is not a JSON object", "%v", err))
		return nil, "", diags
	}
	modelType, _ = cfg["model_type"].(string)
	if modelType == "" {
		diags.Add(diag.Errorf(tf.Span(0, 0), diag.HFConfigModelType, "config.json has no model_type",
			"A Hugging Face config.json names its model_type; the template is chosen by it."))
		return nil, "", diags
	}
	return cfg, modelType, diags
}

// HFConfigTemplate returns the template of prog that converts the model
// type of the config.json at path: the stdlib's template of that name
// when fromLib (the template was loaded for the model type), else the
// user's template of that name. With none it returns nil and an
// hf-config-model-type error: at the start of config.json for the
// stdlib, at the user's first template otherwise (a mismatch).
func HFConfigTemplate(prog *ir.Program, fromLib bool, path string, src []byte, modelType string) (*ir.Template, diag.List) {
	var diags diag.List
	if fromLib {
		t := prog.Template(modelType)
		if t == nil {
			tf := token.NewFile(path, src)
			diags.Add(diag.Errorf(tf.Span(0, 0), diag.HFConfigModelType, "No template for this model type",
				"The stdlib has no template for model_type %q; pass the template's path.", modelType))
		}
		return t, diags
	}
	var tmpl *ir.Template
	for _, t := range prog.Templates {
		if t.Name == modelType {
			tmpl = t
		}
	}
	if tmpl == nil && len(prog.Templates) > 0 {
		t := prog.Templates[0]
		diags.Add(diag.Errorf(t.Span, diag.HFConfigModelType, "Model type mismatch",
			"%s has model_type %q but the template converts %q.", path, modelType, t.Name))
	}
	return tmpl, diags
}

// HFConfigDiags reports the problems the runtime found checking each
// config key t maps against the config.json at path
// (exec.HFConfigProblems), at the map entry concerned; err is its
// failure to read the file as a JSON object (hf-config-json, at t).
func HFConfigDiags(t *ir.Template, path string, probs []ir.ConfigProblem, err error) diag.List {
	var out diag.List
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
