package ir

import (
	"strings"

	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/lang/token"
)

// ScaleRule is one rule of a quant section (lang/spec.md §7a): the HF
// name pattern of a block-quantized weight and that of its scale tensor,
// each with one "{}" standing for the same text,
// `scale "{}.weight" -> "{}.weight_scale_inv"`.
type ScaleRule struct {
	Weight, Scale string
	// Section is the named quant section the rule was written in; empty
	// for a rule written in the template's own section.
	Section string
	Span    token.Span
}

// ScaleFor returns the scale names the template's rules give the HF
// weight name, in rule order (normally one).
func (t *Template) ScaleFor(weight string) []string {
	var out []string
	for _, r := range t.Scales {
		if s, ok := rollname.RewriteWildcard(r.Weight, r.Scale, weight); ok {
			out = append(out, s)
		}
	}
	return out
}

// IsScaleName reports whether an HF name is a scale tensor's name under
// the template's quant rules. A layer-relative name (starting with ".",
// as ops write them) is read under the template's layer prefix.
func (t *Template) IsScaleName(name string) bool {
	if strings.HasPrefix(name, ".") {
		name = t.LayerPrefix + "0" + name
	}
	for _, r := range t.Scales {
		if _, ok := rollname.MatchWildcard(r.Scale, name); ok {
			return true
		}
	}
	return false
}

// ScaleOp reports whether every HF name of the op is a scale name under
// the template's quant rules: ROLL's deepseek_v3 registers such ops
// (renames of the block scales), which the Go runtime never runs (the
// FP8 pre-pass consumes the scales; lora-fp8.md §2.2, §3 decision 2).
func (t *Template) ScaleOp(o *Op) bool {
	if len(o.HF) == 0 || len(t.Scales) == 0 || o.Kind == "drop" {
		return false
	}
	for _, n := range o.HF {
		if n.Cond != nil || n.Computed != nil || !t.IsScaleName(n.Value) {
			return false
		}
	}
	return true
}
