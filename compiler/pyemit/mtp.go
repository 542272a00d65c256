package pyemit

import (
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
)

// Multi-token-prediction layers (lang/spec.md §4). ROLL's deepseek_v3 and
// glm4_moe templates rename MTP weights to mtp.layers.<i>.transformer_layer.*,
// which ROLL's own DistConverter cannot classify (it inserts
// .mtp_model_layer itself and finds no parallel class for
// ".transformer_layer.<name>"). A built template with MTP layers instead
// uses a subclass of its template class (mtp_template in the support
// module) that converts an MTP layer as decoder layer num_layers+i of the
// same template and names the result as megatron-core (>= 0.16) does:
// mtp.layers.<i>.mtp_model_layer.<name> for the transformer layer,
// mtp.layers.<i>.<name> for enorm, hnorm, eh_proj and final_layernorm
// (ROLL's add_mca_mtp_layer_prefix), exactly as the Go runtime does.

// hasMTP reports whether a template of p has MTP layers.
func hasMTP(p *ir.Program) bool {
	for _, t := range p.Templates {
		if t.MTP != nil {
			return true
		}
	}
	return false
}

// mtpFirstLayerDef is the Python function computing mtp_first_layer from
// the HF and MCA configs, or "" for a template without one. A module with
// a generated template class imports _rt_field from the support module;
// any other defines it when the expression needs it.
func mtpFirstLayerDef(t *ir.Template, generated bool) string {
	if t.MTP == nil || t.MTP.FirstLayer == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n")
	expr := t.MTP.FirstLayer.Python(ir.DefaultPyNames)
	if strings.Contains(expr, "_rt_field(") && !generated {
		b.WriteString(ir.PythonPrelude)
		b.WriteString("\n\n")
	}
	b.WriteString("def _mtp_first_layer(hf_config, mca_config):\n")
	b.WriteString("    \"\"\"mtp_first_layer: the HF layer index of the first MTP layer.\"\"\"\n")
	b.WriteString("    return " + expr + "\n\n\n")
	return b.String()
}

// mtpClass wraps a template class for a template with MTP layers.
func mtpClass(t *ir.Template, base node) node {
	if t.MTP.FirstLayer != nil {
		return call("mtp_template", arg("", base), arg("first_layer", atom("_mtp_first_layer")))
	}
	return call("mtp_template", arg("", base), arg("hf_prefix", str(t.MTP.HFPrefix)))
}

// withMTPClass wraps the template_class argument of register_template
// (ROLL's Template when there is none) in mtp_template.
func withMTPClass(t *ir.Template, args []node) []node {
	for i, a := range args {
		if p, ok := a.(*pair); ok && p.key == "template_class" {
			args[i] = arg("template_class", mtpClass(t, p.val))
			return args
		}
	}
	return append(args, arg("template_class", mtpClass(t, atom("Template"))))
}
