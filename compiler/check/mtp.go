package check

import (
	"fmt"
	"slices"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/lang/diag"
)

// mtp checks a template's multi-token-prediction setup (ir.MTP): the
// first MTP layer is an integer expression over the configs (no
// `layer`), the template maps mtp_num_layers, and its ops produce every
// weight of the MTP block (enorm, hnorm, eh_proj, final_layernorm, which
// megatron-core's MultiTokenPredictionLayer always has). Ops producing
// MTP block weights in a template without MTP layers are a warning: no
// layer of such a template is an MTP layer, so they can only rename a
// decoder layer's tensor to a name Megatron does not have.
func (c *checker) mtp(t *ir.Template) {
	produced := map[string]*ir.Op{}
	for _, op := range t.Ops {
		for _, mode := range templateModes(t) {
			_, mca := op.Resolved(mode)
			for _, n := range mca {
				if rollname.IsMTPBlockWeight(n) && produced[n] == nil {
					produced[n] = op
				}
			}
		}
	}
	if t.MTP == nil {
		for _, w := range rollname.MTPBlockWeights {
			if op := produced[w]; op != nil {
				c.add(diag.Warningf(op.Span, diag.MTPBlock, "MTP weight without MTP layers",
					"%s is a weight of a multi-token-prediction block, but the template keeps no MTP layers: set mtp_first_layer "+
						"(MTP layers after the decoder layers) or mtp_hf_prefix (MTP weights under their own prefix).", w))
				return
			}
		}
		return
	}
	if e := t.MTP.FirstLayer; e != nil {
		env := typeEnv{c: c} // no layer is bound
		if c.set != nil {
			env.hf, env.mca = c.set.Schema(t.Name), c.set.Schema(MCASchema)
		}
		if typ := c.expr(env, e); typ != 0 && !typ.Has(ir.Int) {
			c.add(diag.Errorf(e.Span, diag.TypeMismatch, "mtp_first_layer is not an integer",
				"mtp_first_layer is an HF layer index; this expression is %s.", typ))
		}
	}
	if !provides(t, "mtp_num_layers", 0) {
		c.add(diag.Errorf(t.MTP.Span, diag.MissingConfig, "MTP layers without mtp_num_layers",
			"The template keeps multi-token-prediction layers but never sets the MCA key mtp_num_layers, so no conversion would know how many there are. "+
				"Map the HF key, e.g. `num_nextn_predict_layers -> mtp_num_layers`."))
	}
	var missing []string
	for _, w := range rollname.MTPBlockWeights {
		if produced[w] == nil {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		c.add(diag.Warningf(t.MTP.Span, diag.MTPBlock, "MTP block weights without an op",
			"Every MTP layer of megatron-core has %s, but no op of the template produces %s; the MTP layers of a checkpoint cannot be converted completely. "+
				"Add a rename from the HF name, e.g. `rename \".eh_proj.weight\" -> \".eh_proj.weight\"`.",
			strings.Join(rollname.MTPBlockWeights, ", "), joinQuoted(missing)))
	}
}

func joinQuoted(s []string) string {
	q := slices.Clone(s)
	for i := range q {
		q[i] = fmt.Sprintf("%q", q[i])
	}
	return strings.Join(q, ", ")
}
