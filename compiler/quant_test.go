package compiler_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/stdlib"
)

// TestQuantLowering lowers quant sections to each template's scale
// rules: the stdlib default (fp8_block) for a template naming none, even
// without importing common; a template's own section, `use`s spliced in
// order with the section they came from; a section inherited through
// extends; a child's own section replacing its parent's.
func TestQuantLowering(t *testing.T) {
	src := `import "common"

quant custom {
    scale "{}.weight" -> "{}.wscale_inv"
}
template plain { layer_prefix = "model.layers." }
template fused {
    layer_prefix = "model.layers."
    quant {
        use fp8_fused_experts
        scale "{}.w" -> "{}.s"
    }
}
template child extends fused {}
template own extends fused { quant { use custom } }
`
	lone := "template lone { layer_prefix = \"model.layers.\" }\n"
	res := compiler.Compile([]string{"a.rolltpl", "b.rolltpl"}, compiler.Options{Lib: stdlib.Templates(),
		Overlay: map[string][]byte{"a.rolltpl": []byte(src), "b.rolltpl": []byte(lone)}})
	if res.Diags.HasErrors() {
		t.Fatal(res.Diags)
	}
	type rule struct{ Weight, Scale, Section string }
	type got struct {
		Rules   []rule
		Default bool
	}
	of := func(name string) got {
		tm := res.Program.Template(name)
		if tm == nil {
			t.Fatalf("no template %s", name)
		}
		g := got{Default: tm.QuantDefault}
		for _, r := range tm.Scales {
			g.Rules = append(g.Rules, rule{r.Weight, r.Scale, r.Section})
			if r.Span.Start.Line == 0 {
				t.Errorf("%s: rule %v has no span", name, r)
			}
		}
		return g
	}
	block := []rule{{"{}.weight", "{}.weight_scale_inv", "fp8_block"}}
	fused := []rule{
		{"{}.gate_up_proj", "{}.gate_up_proj_scales_inv", "fp8_fused_experts"},
		{"{}.down_proj", "{}.down_proj_scales_inv", "fp8_fused_experts"},
		{"{}.w", "{}.s", ""},
	}
	for name, want := range map[string]got{
		"plain": {block, true},
		"lone":  {block, true},
		"fused": {fused, false},
		"child": {fused, false},
		"own":   {[]rule{{"{}.weight", "{}.wscale_inv", "custom"}}, false},
	} {
		if diff := cmp.Diff(want, of(name)); diff != "" {
			t.Errorf("%s: scale rules (-want +got):\n%s", name, diff)
		}
	}
	var def []rule
	for _, r := range res.Program.DefaultScales {
		def = append(def, rule{r.Weight, r.Scale, r.Section})
	}
	if diff := cmp.Diff(block, def); diff != "" {
		t.Errorf("Program.DefaultScales (-want +got):\n%s", diff)
	}

	// Without a library there is no default: no rules.
	res = compiler.Compile([]string{"b.rolltpl"}, compiler.Options{Overlay: map[string][]byte{"b.rolltpl": []byte(lone)}})
	if tm := res.Program.Template("lone"); tm == nil || tm.Scales != nil || tm.QuantDefault || res.Program.DefaultScales != nil {
		t.Errorf("without a library: %+v", tm)
	}
}

// TestScaleNames checks the template's view of its rules: the scale a
// weight name gets, scale names (layer-relative as ops write them) and
// scale ops.
func TestScaleNames(t *testing.T) {
	tm := &ir.Template{LayerPrefix: "model.layers.", Scales: []ir.ScaleRule{
		{Weight: "{}.weight", Scale: "{}.weight_scale_inv"},
		{Weight: "{}.gate_up_proj", Scale: "{}.gate_up_proj_scales_inv"},
	}}
	if diff := cmp.Diff([]string{"model.layers.0.mlp.down_proj.weight_scale_inv"}, tm.ScaleFor("model.layers.0.mlp.down_proj.weight")); diff != "" {
		t.Error(diff)
	}
	if got := tm.ScaleFor("model.norm.bias"); got != nil {
		t.Errorf("ScaleFor(bias) = %v", got)
	}
	for name, want := range map[string]bool{
		".mlp.down_proj.weight_scale_inv":                    true,
		"model.layers.3.mlp.experts.gate_up_proj_scales_inv": true,
		".mlp.down_proj.weight":                              false,
		"lm_head.weight_scale_inv":                           true,
		"weight_scale_inv":                                   false,
	} {
		if got := tm.IsScaleName(name); got != want {
			t.Errorf("IsScaleName(%q) = %v, want %v", name, got, want)
		}
	}
	op := func(hf ...string) *ir.Op {
		o := &ir.Op{Kind: "rename"}
		for _, n := range hf {
			o.HF = append(o.HF, ir.Name{Value: n})
		}
		return o
	}
	if !tm.ScaleOp(op(".self_attn.q_a_proj.weight_scale_inv")) || tm.ScaleOp(op(".self_attn.q_a_proj.weight")) ||
		tm.ScaleOp(op(".a.weight_scale_inv", ".a.weight")) {
		t.Error("ScaleOp misclassifies")
	}
}
