package lower

import (
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
)

// retiredFields are template field names earlier drafts of the language
// planned and dropped, with why: writing one is an unknown-field error
// that says so.
var retiredFields = map[string]string{
	"mtp_inner": "mtp_inner is not a field: MCA names an MTP layer's transformer layer mtp.layers.<i>.mtp_model_layer, " +
		"as megatron-core (>= 0.16) does and ROLL's DistConverter inserts itself; " +
		"ROLL's .transformer_layer makes its DistConverter fail, so the infix is not configurable.",
}

// retiredField reports a retired template field and returns true if f is
// one.
func (l *lowerer) retiredField(f *ast.Field) bool {
	why, ok := retiredFields[f.Key.Name]
	if ok {
		l.errorf(f.Key.Span(), diag.UnknownField, "Unknown template field", "%s", why)
	}
	return ok
}

// mtp lowers a template's MTP fields (mtp_first_layer, mtp_hf_prefix)
// into t.MTP: at most one of them, the prefix a non-empty dotted prefix
// that cannot be confused with the layer prefix. The first layer's
// expression is type-checked by compiler/check.
func (l *lowerer) mtp(t *ir.Template, s *tmplState) {
	first, prefix := s.fields["mtp_first_layer"], s.fields["mtp_hf_prefix"]
	if first == nil && prefix == nil {
		return
	}
	if first != nil && prefix != nil {
		d := diag.Errorf(prefix.Span(), diag.MTPField, "Two MTP layouts",
			"A template sets mtp_first_layer (HF keeps MTP layers after the decoder layers, under layer_prefix) "+
				"or mtp_hf_prefix (HF keeps them under their own prefix), not both.")
		d.Related = []diag.Related{{Span: first.Span(), Message: "mtp_first_layer set here"}}
		l.diags.Add(d)
		return
	}
	m := &ir.MTP{}
	if first != nil {
		m.Span = first.Span()
		e, ds := Expr(first.Value)
		l.diags.Extend(ds)
		if e == nil {
			return
		}
		m.FirstLayer = e
	} else {
		m.Span = prefix.Span()
		p := l.stringField(prefix)
		switch {
		case p == "":
			return // reported by stringField, or an empty string below
		case !strings.HasSuffix(p, ".") || strings.HasPrefix(p, "."):
			l.errorf(prefix.Value.Span(), diag.MTPField, "Bad MTP prefix",
				"mtp_hf_prefix %q must be a global name prefix ending in \".\" (e.g. \"mtp.\").", p)
			return
		case t.LayerPrefix != "" && (strings.HasPrefix(p, t.LayerPrefix) || strings.HasPrefix(t.LayerPrefix, p)):
			l.errorf(prefix.Value.Span(), diag.MTPField, "MTP prefix overlaps the layer prefix",
				"mtp_hf_prefix %q and layer_prefix %q overlap, so a name could be a decoder layer's and an MTP layer's; "+
					"for MTP layers kept after the decoder layers use mtp_first_layer.", p, t.LayerPrefix)
			return
		}
		m.HFPrefix = p
	}
	t.MTP = m
}
