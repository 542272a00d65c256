package exec

import (
	"cmp"
	"fmt"
	"io"
	"slices"

	"github.com/rolltpl/rolltpl/runtime/ops"
)

// LossyOp is an op kind of a plan that is lossy by nature in a dtype its
// tensors have (ops.Lossy: the zero-centred RMSNorm computes (w - 1) + 1
// in the tensor's dtype): converting its tensors there and back may not
// give the same bytes, and verify compares them with their own round
// trip.
type LossyOp struct {
	Kind    string `json:"kind"`
	DType   string `json:"dtype"`
	Tensors int    `json:"tensors"`
}

// LossyOps lists the op kinds of the plan that are lossy in the dtype of
// the tensors they produce (the dtype of their inputs: a lossy op keeps
// it), with how many tensors each makes, by kind and dtype.
func (p *Plan) LossyOps() []LossyOp {
	var out []LossyOp
	for _, st := range p.Steps {
		if st.Dropped {
			continue
		}
		for _, o := range st.Outputs {
			if !ops.Lossy(st.Kind, o.DType) {
				continue
			}
			i := slices.IndexFunc(out, func(l LossyOp) bool { return l.Kind == st.Kind && l.DType == o.DType.String() })
			if i < 0 {
				out = append(out, LossyOp{Kind: st.Kind, DType: o.DType.String()})
				i = len(out) - 1
			}
			out[i].Tensors++
		}
	}
	slices.SortFunc(out, func(a, b LossyOp) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.DType, b.DType))
	})
	return out
}

// writeLossy prints the plan's lossy ops, one line each.
func writeLossy(w io.Writer, lossy []LossyOp) {
	for _, l := range lossy {
		fmt.Fprintf(w, "  note: %s is lossy in %s (%s): a round trip may not give the same bytes; verify compares them with their own round trip\n",
			l.Kind, l.DType, plural(l.Tensors, "tensor"))
	}
}
