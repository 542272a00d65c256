package check_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler/check"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

// got is a diagnostic reduced to what the tests compare.
type got struct {
	Code, Summary, File string
	Line, Col           int
}

func reduce(l diag.List) []got {
	var out []got
	for _, d := range l {
		out = append(out, got{d.Code, d.Summary, d.Subject.Start.Filename, d.Subject.Start.Line, d.Subject.Start.Column})
	}
	return out
}

// TestParseHFConfig: config.json must be a JSON object naming its
// model_type; a syntax error is reported where it is.
func TestParseHFConfig(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		model     string
		want      []got
	}{
		{"ok", `{"model_type": "qwen2", "hidden_size": 8}`, "qwen2", nil},
		{"syntax", "{\n  \"model_type\": ,\n}", "", []got{{diag.HFConfigJSON, "config.json is not a JSON object", "c.json", 2, 18}}},
		{"not an object", `[1, 2]`, "", []got{{diag.HFConfigJSON, "config.json is not a JSON object", "c.json", 1, 1}}},
		{"no model_type", `{"hidden_size": 8}`, "", []got{{diag.HFConfigModelType, "config.json has no model_type", "c.json", 1, 1}}},
		{"model_type not a string", `{"model_type": 3}`, "", []got{{diag.HFConfigModelType, "config.json has no model_type", "c.json", 1, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, model, diags := check.ParseHFConfig("c.json", []byte(tc.src))
			if model != tc.model {
				t.Errorf("model_type %q, want %q", model, tc.model)
			}
			if (cfg != nil) != (tc.want == nil) {
				t.Errorf("cfg %v with diagnostics %v", cfg, diags)
			}
			if diff := cmp.Diff(tc.want, reduce(diags)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func span(file string, line int) token.Span {
	p := token.Pos{Filename: file, Line: line, Column: 1}
	return token.Span{Start: p, End: p}
}

// TestHFConfigTemplate: the stdlib's template is found by model type, a
// user's by name; none is an hf-config-model-type error, at config.json
// for the stdlib and at the user's first template for a mismatch.
func TestHFConfigTemplate(t *testing.T) {
	qwen := &ir.Template{Name: "qwen2", Span: span("q.rolltpl", 3)}
	llama := &ir.Template{Name: "llama", Span: span("l.rolltpl", 5)}
	prog := &ir.Program{Templates: []*ir.Template{llama, qwen}}
	for _, tc := range []struct {
		name    string
		fromLib bool
		model   string
		want    *ir.Template
		diags   []got
	}{
		{"stdlib", true, "qwen2", qwen, nil},
		{"stdlib none", true, "gpt2", nil, []got{{diag.HFConfigModelType, "No template for this model type", "c.json", 1, 1}}},
		{"user", false, "qwen2", qwen, nil},
		{"user mismatch", false, "gpt2", nil, []got{{diag.HFConfigModelType, "Model type mismatch", "l.rolltpl", 5, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, diags := check.HFConfigTemplate(prog, tc.fromLib, "c.json", []byte(`{"model_type": "x"}`), tc.model)
			if tmpl != tc.want {
				t.Errorf("template %v, want %v", tmpl, tc.want)
			}
			if diff := cmp.Diff(tc.diags, reduce(diags)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestHFConfigDiags: each problem the runtime finds becomes a diagnostic
// at its map entry with its code; a read failure is hf-config-json at the
// template.
func TestHFConfigDiags(t *testing.T) {
	tmpl := &ir.Template{Name: "qwen2", Span: span("q.rolltpl", 1)}
	e := func(line int) ir.ConfigEntry {
		return ir.ConfigEntry{HF: "k", MCA: "m", Span: span("q.rolltpl", line)}
	}
	probs := []ir.ConfigProblem{
		{Entry: e(4), Key: "hidden_size", Code: diag.HFConfigMissing, Msg: "missing"},
		{Entry: e(5), Key: "num_layers", Code: diag.HFConfigType, Value: `"x"`, Msg: "got string, want int"},
		{Entry: e(6), Key: "rope_theta", Code: diag.HFConfigRange, Value: "-1", Msg: "must be positive"},
	}
	want := []got{
		{diag.HFConfigMissing, "Mapped key missing from config.json", "q.rolltpl", 4, 1},
		{diag.HFConfigType, "Config value of the wrong type", "q.rolltpl", 5, 1},
		{diag.HFConfigRange, "Config value out of range", "q.rolltpl", 6, 1},
	}
	l := check.HFConfigDiags(tmpl, "c.json", probs, nil)
	if diff := cmp.Diff(want, reduce(l)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if d := l[1].Detail; d != `c.json: num_layers is "x": got string, want int.` {
		t.Errorf("detail %q", d)
	}
	l = check.HFConfigDiags(tmpl, "c.json", probs, errors.New("bad"))
	if diff := cmp.Diff([]got{{diag.HFConfigJSON, "config.json is not a JSON object", "q.rolltpl", 1, 1}}, reduce(l)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
