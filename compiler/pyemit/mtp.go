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

// supportMTP is the support module's mtp_template.
const supportMTP = `

def mtp_template(base, first_layer=None, hf_prefix=None):
    """A subclass of the Template class base that converts multi-token-
    prediction (MTP) layers as megatron-core (>= 0.16) names them.

    HF keeps MTP layer i as layer first_layer(hf_config, mca_config) + i
    under hf_layer_prefix, or (hf_prefix) its transformer layer under
    hf_prefix + "layers.<i>." and the MTP block's own weights directly under
    hf_prefix (one MTP layer). Either way the layer is converted by the
    template's ops as decoder layer num_layers + i, and the MCA names become
    mtp.layers.<i>.mtp_model_layer.<name> and mtp.layers.<i>.<name> for the
    block's enorm, hnorm, eh_proj and final_layernorm.
    """
    import json
    import types

    def cu():
        # ROLL's naming helpers, imported when converting (not on import).
        from mcore_adapter.models.converter import convert_utils

        return convert_utils

    block = (".enorm.", ".hnorm.", ".eh_proj.", ".final_layernorm.")

    class MTPTemplate(base):
        def _mtp_first(self):
            # hf reads the HF config the MCA config records, as the Go
            # runtime does.
            mc = self.mca_config
            hf = json.loads(getattr(mc, "hf_config_json", None) or "{}")
            return first_layer(types.SimpleNamespace(**hf), mc)

        def _mtp_hf_to_canonical(self, name):
            """The name of an HF MTP weight as one of layer num_layers + i, or None."""
            n = self.mca_config.num_layers
            if first_layer is not None:
                first = self._mtp_first()
                layer = cu().get_layer_index(name, self.hf_layer_prefix)
                if layer is None or layer < first:
                    return None
                rest = name[len(self.hf_layer_prefix) + len(str(layer)) :]
                return self.hf_layer_prefix + str(n + layer - first) + rest
            if not name.startswith(hf_prefix):
                return None
            layers = hf_prefix + "layers."
            i = cu().get_layer_index(name, layers)
            if i is not None:
                rest = name[len(layers) + len(str(i)) :]
            else:
                i, rest = 0, "." + name[len(hf_prefix) :]
            return self.hf_layer_prefix + str(n + i) + rest

        def _mtp_mca_name(self, name):
            """An MCA name of layer num_layers + i as megatron-core names MTP layer i."""
            n = self.mca_config.num_layers
            layer = cu().get_mca_layer_index(name)
            if layer is None or layer < n or name.startswith("mtp."):
                return name
            pure, expert = cu().remove_mca_weight_prefix(name), cu().get_mca_moe_index(name)
            return cu().add_mca_mtp_layer_prefix(pure, layer - n, expert)

        def _mtp_hf_name(self, name, mtp_block):
            """The HF name of a canonical name of layer num_layers + i."""
            n = self.mca_config.num_layers
            layer = cu().get_layer_index(name, self.hf_layer_prefix)
            if layer is None or layer < n:
                return name
            i = layer - n
            rest = name[len(self.hf_layer_prefix) + len(str(layer)) :]
            if first_layer is not None:
                return self.hf_layer_prefix + str(self._mtp_first() + i) + rest
            if mtp_block:
                return hf_prefix + rest[1:]
            return hf_prefix + "layers." + str(i) + rest

        def add_hf_weight(self, name, weight):
            canonical = self._mtp_hf_to_canonical(name)
            if canonical is None:
                return super().add_hf_weight(name, weight)
            res = super().add_hf_weight(canonical, weight)
            if res is None:
                return None
            return {self._mtp_mca_name(k): v for k, v in res.items()}

        def add_mca_weight(self, name, weight, **kwargs):
            if not name.startswith("mtp.layers."):
                return super().add_mca_weight(name, weight, **kwargs)
            pure = cu().remove_mca_weight_prefix(name)
            layer = self.mca_config.num_layers + cu().get_mca_layer_index(name)
            canonical = cu().add_mca_layer_prefix(pure, layer, cu().get_mca_moe_index(name))
            res = super().add_mca_weight(canonical, weight, **kwargs)
            if res is None:
                return None
            mtp_block = pure.startswith(block)
            return {self._mtp_hf_name(k, mtp_block): v for k, v in res.items()}

        def hf_name_to_mca_names(self, hf_name):
            canonical = self._mtp_hf_to_canonical(hf_name)
            if canonical is None:
                return super().hf_name_to_mca_names(hf_name)
            names = super().hf_name_to_mca_names(canonical)
            return None if names is None else [self._mtp_mca_name(k) for k in names]

    MTPTemplate.__name__ = MTPTemplate.__qualname__ = "MTP" + base.__name__
    return MTPTemplate
`

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
