package ops

import (
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

func init() {
	register(both(KindGDNConv1d, 1, 1, gdnConv1dToMCA, gdnConv1dToHF))
	register(both(KindNextGDN, 2, 1, nextGDNToMCA, nextGDNToHF))
	register(both(KindQwen3_5GDN, 4, 1, qwen35GDNToMCA, qwen35GDNToHF))
}

// gdnSizes holds the Gated-DeltaNet sizes: nk key heads of dk, nv value
// heads of dv, QK = nk·dk, V = nv·dv, rho = nv/nk.
type gdnSizes struct{ nk, nv, dk, dv, qk, v, rho int64 }

// gdn reads the four linear_* config values. With ratio, nv must be a
// multiple of nk (the per-key-head grouping of NextGDN).
func (c *call) gdn(ratio bool) (gdnSizes, error) {
	var s gdnSizes
	var err error
	if s.nk, err = c.need("linear_num_key_heads", c.cfg.LinearNumKeyHeads); err != nil {
		return s, err
	}
	if s.nv, err = c.need("linear_num_value_heads", c.cfg.LinearNumValueHeads); err != nil {
		return s, err
	}
	if s.dk, err = c.need("linear_key_head_dim", c.cfg.LinearKeyHeadDim); err != nil {
		return s, err
	}
	if s.dv, err = c.need("linear_value_head_dim", c.cfg.LinearValueHeadDim); err != nil {
		return s, err
	}
	if s.qk, err = c.mul(s.nk, s.dk, 4); err != nil {
		return s, err
	}
	if s.v, err = c.mul(s.nv, s.dv, 4); err != nil {
		return s, err
	}
	s.qk, s.v = s.nk*s.dk, s.nv*s.dv
	if ratio && s.nv%s.nk != 0 {
		return s, c.errorf("linear_num_value_heads %d is not a multiple of linear_num_key_heads %d", s.nv, s.nk)
	}
	s.rho = s.nv / s.nk
	return s, nil
}

var qkvNames = []string{"q", "k", "v"}
var qkvzbaNames = []string{"q", "k", "v", "z", "b", "a"}

// gdnConv1dToMCA splits the HF conv1d weight [2·QK+V, 1, K] along rows into
// q [QK, 1, K], k [QK, 1, K], v [V, 1, K] and returns them stacked (dim 0),
// so that tensor parallelism splits each on its own. Views only.
func gdnConv1dToMCA(c *call) ([]Value, error) {
	if err := c.wantInputs("conv1d"); err != nil {
		return nil, err
	}
	s, err := c.gdn(false)
	if err != nil {
		return nil, err
	}
	t, err := c.plain(0, "conv1d")
	if err != nil {
		return nil, err
	}
	if len(t.Shape) == 0 || t.Shape[0] != 2*s.qk+s.v {
		return nil, c.errorf("conv1d has shape %v; want %d rows = 2 × %d (linear_num_key_heads %d × linear_key_head_dim %d) + %d (linear_num_value_heads %d × linear_value_head_dim %d)",
			t.Shape, 2*s.qk+s.v, s.qk, s.nk, s.dk, s.v, s.nv, s.dv)
	}
	parts, err := tensor.Split(t, 0, s.qk, s.qk, s.v)
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	st, err := tensor.NewStacked(0, parts...)
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	return []Value{StackedValue(st)}, nil
}

// gdnConv1dToHF concatenates the stacked q, k, v rows back into the HF
// conv1d weight. ROLL requires a stacked input (a plain tensor fails there
// too); the row counts are checked when the linear_* sizes are configured.
// View only.
func gdnConv1dToHF(c *call) ([]Value, error) {
	if err := c.wantInputs("conv1d"); err != nil {
		return nil, err
	}
	st, err := c.stacked(0, "conv1d", qkvNames...)
	if err != nil {
		return nil, err
	}
	if c.gdnConfigured() {
		s, err := c.gdn(false)
		if err != nil {
			return nil, err
		}
		if err := c.componentRows("conv1d", st, qkvNames, s.qk, s.qk, s.v); err != nil {
			return nil, err
		}
	}
	t, err := tensor.Concat(0, st.Components...)
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	return values(t), nil
}

// gdnConfigured reports whether all four linear_* sizes are set.
func (c *call) gdnConfigured() bool {
	g := c.cfg
	return g.LinearNumKeyHeads > 0 && g.LinearNumValueHeads > 0 && g.LinearKeyHeadDim > 0 && g.LinearValueHeadDim > 0
}

// componentRows checks the dim-0 sizes of stacked components.
func (c *call) componentRows(name string, st tensor.Stacked, names []string, rows ...int64) error {
	for i, t := range st.Components {
		if len(t.Shape) == 0 || t.Shape[0] != rows[i] {
			return c.errorf("%s component %s has shape %v; want %d rows", name, names[i], t.Shape, rows[i])
		}
	}
	return nil
}

// nextGDNToMCA converts Qwen3-Next's projections, which are grouped per key
// head, to the six stacked MCA components (spec §2.6):
//
//	qkvz [2·QK+2·V, H] → [nk, 2·dk+2·rho·dv, H] → split axis 1 [dk, dk, rho·dv, rho·dv]
//	ba   [2·nv, H]     → [nk, 2·rho, H]          → split axis 1 [rho, rho]
//	each → [-1, H];  out = Stacked(q, k, v, z, b, a; dim 0)
//
// Views only: q is nk pieces of dk rows, and so on.
func nextGDNToMCA(c *call) ([]Value, error) {
	if err := c.wantInputs("in_proj_qkvz", "in_proj_ba"); err != nil {
		return nil, err
	}
	s, err := c.gdn(true)
	if err != nil {
		return nil, err
	}
	qkvzT, err := c.plain(0, "in_proj_qkvz")
	if err != nil {
		return nil, err
	}
	baT, err := c.plain(1, "in_proj_ba")
	if err != nil {
		return nil, err
	}
	if err := c.sameDType([]string{"in_proj_qkvz", "in_proj_ba"}, qkvzT, baT); err != nil {
		return nil, err
	}
	rv := s.rho * s.dv
	perHead := 2*s.dk + 2*rv
	qkvz, err := c.matrix(qkvzT, "in_proj_qkvz", s.nk*perHead, "2 × linear_num_key_heads × linear_key_head_dim + 2 × linear_num_value_heads × linear_value_head_dim", c.hidden())
	if err != nil {
		return nil, err
	}
	x := qkvz.Shape[1]
	ba, err := c.matrix(baT, "in_proj_ba", 2*s.nv, "2 × linear_num_value_heads", x)
	if err != nil {
		return nil, err
	}
	var b [6]tensor.Builder
	for i := range b {
		b[i].Grow(int(s.nk))
	}
	for i := range s.nk {
		base := i * perHead
		b[0].Rows(qkvz, base, base+s.dk)
		b[1].Rows(qkvz, base+s.dk, base+2*s.dk)
		b[2].Rows(qkvz, base+2*s.dk, base+2*s.dk+rv)
		b[3].Rows(qkvz, base+2*s.dk+rv, base+perHead)
		b[4].Rows(ba, i*2*s.rho, i*2*s.rho+s.rho)
		b[5].Rows(ba, i*2*s.rho+s.rho, (i+1)*2*s.rho)
	}
	rows := [6]int64{s.qk, s.qk, s.v, s.v, s.nv, s.nv}
	comps := make([]tensor.Tensor, 6)
	for i := range b {
		if comps[i], err = b[i].Build(tensor.Shape{rows[i], x}); err != nil {
			return nil, c.errorf("%s: %v", qkvzbaNames[i], err)
		}
	}
	st, err := tensor.NewStacked(0, comps...)
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	return []Value{StackedValue(st)}, nil
}

// nextGDNToHF undoes [nextGDNToMCA]: each of the six components is viewed
// as [nk, -1, H]; qkvz = cat((q, k, v, z), axis 1) and ba = cat((b, a),
// axis 1), each flattened to [-1, H]. Reads hidden_size (inferred from the
// components when unset) and linear_num_key_heads. Views only.
func nextGDNToHF(c *call) ([]Value, error) {
	if err := c.wantInputs("in_proj"); err != nil {
		return nil, err
	}
	nk, err := c.need("linear_num_key_heads", c.cfg.LinearNumKeyHeads)
	if err != nil {
		return nil, err
	}
	st, err := c.stacked(0, "in_proj", qkvzbaNames...)
	if err != nil {
		return nil, err
	}
	if c.gdnConfigured() {
		s, err := c.gdn(true)
		if err != nil {
			return nil, err
		}
		if err := c.componentRows("in_proj", st, qkvzbaNames, s.qk, s.qk, s.v, s.v, s.nv, s.nv); err != nil {
			return nil, err
		}
	}
	if err := c.sameDType(qkvzbaNames, st.Components...); err != nil {
		return nil, err
	}
	x := c.hidden()
	var m [6]tensor.Tensor
	var per [6]int64 // rows per key head
	for i, t := range st.Components {
		n := t.NumElements()
		if x == 0 {
			if len(t.Shape) < 2 || t.Shape[0] == 0 {
				return nil, c.errorf("in_proj component %s has shape %v; cannot infer the hidden size", qkvzbaNames[i], t.Shape)
			}
			x = n / t.Shape[0]
		}
		if x == 0 || n%(x*nk) != 0 {
			return nil, c.errorf("in_proj component %s has shape %v, not a whole number of rows of %d per each of linear_num_key_heads %d",
				qkvzbaNames[i], t.Shape, x, nk)
		}
		per[i] = n / (x * nk)
		if m[i], err = t.Reshape(tensor.Shape{nk * per[i], x}); err != nil {
			return nil, c.errorf("in_proj component %s: %v", qkvzbaNames[i], err)
		}
	}
	var bqkvz, bba tensor.Builder
	bqkvz.Grow(int(4 * nk))
	bba.Grow(int(2 * nk))
	for h := range nk {
		for i := 0; i < 4; i++ {
			bqkvz.Rows(m[i], h*per[i], (h+1)*per[i])
		}
		for i := 4; i < 6; i++ {
			bba.Rows(m[i], h*per[i], (h+1)*per[i])
		}
	}
	qkvz, err := bqkvz.Build(tensor.Shape{-1, x})
	if err != nil {
		return nil, c.errorf("in_proj_qkvz: %v", err)
	}
	ba, err := bba.Build(tensor.Shape{-1, x})
	if err != nil {
		return nil, c.errorf("in_proj_ba: %v", err)
	}
	return values(qkvz, ba), nil
}

// qwen35GDNToMCA converts Qwen3.5's plainly concatenated projections
// (spec §2.6): in_proj_qkv [2·QK+V, H] is split along rows into
// [QK, QK, V]; z is viewed as [V, -1], b and a as [nv, -1]; the result is
// Stacked(q, k, v, z, b, a; dim 0). Views only.
func qwen35GDNToMCA(c *call) ([]Value, error) {
	names := []string{"in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a"}
	if err := c.wantInputs(names...); err != nil {
		return nil, err
	}
	s, err := c.gdn(false)
	if err != nil {
		return nil, err
	}
	var ts [4]tensor.Tensor
	for i, n := range names {
		if ts[i], err = c.plain(i, n); err != nil {
			return nil, err
		}
	}
	if err := c.sameDType(names, ts[:]...); err != nil {
		return nil, err
	}
	qkv := ts[0]
	if len(qkv.Shape) == 0 || qkv.Shape[0] != 2*s.qk+s.v {
		return nil, c.errorf("in_proj_qkv has shape %v; want %d rows = 2 × %d (linear_num_key_heads %d × linear_key_head_dim %d) + %d (linear_num_value_heads %d × linear_value_head_dim %d)",
			qkv.Shape, 2*s.qk+s.v, s.qk, s.nk, s.dk, s.v, s.nv, s.dv)
	}
	parts, err := tensor.Split(qkv, 0, s.qk, s.qk, s.v)
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	z, err := c.rowsView(ts[1], "in_proj_z", s.v, "linear_num_value_heads × linear_value_head_dim")
	if err != nil {
		return nil, err
	}
	b, err := c.rowsView(ts[2], "in_proj_b", s.nv, "linear_num_value_heads")
	if err != nil {
		return nil, err
	}
	a, err := c.rowsView(ts[3], "in_proj_a", s.nv, "linear_num_value_heads")
	if err != nil {
		return nil, err
	}
	st, err := tensor.NewStacked(0, parts[0], parts[1], parts[2], z, b, a)
	if err != nil {
		return nil, c.errorf("the six parts cannot be stacked: %v", err)
	}
	return []Value{StackedValue(st)}, nil
}

// rowsView views t as [rows, -1].
func (c *call) rowsView(t tensor.Tensor, name string, rows int64, desc string) (tensor.Tensor, error) {
	n := t.NumElements()
	if n%rows != 0 {
		return tensor.Tensor{}, c.errorf("%s has shape %v (%d elements), not a whole number of %d rows (%s)", name, t.Shape, n, rows, desc)
	}
	v, err := t.Reshape(tensor.Shape{rows, -1})
	if err != nil {
		return tensor.Tensor{}, c.errorf("%s: %v", name, err)
	}
	return v, nil
}

// qwen35GDNToHF undoes [qwen35GDNToMCA]: in_proj_qkv = cat((q, k, v),
// rows); z, b, a are returned as they are. Views only.
func qwen35GDNToHF(c *call) ([]Value, error) {
	if err := c.wantInputs("in_proj"); err != nil {
		return nil, err
	}
	st, err := c.stacked(0, "in_proj", qkvzbaNames...)
	if err != nil {
		return nil, err
	}
	if c.gdnConfigured() {
		s, err := c.gdn(false)
		if err != nil {
			return nil, err
		}
		if err := c.componentRows("in_proj", st, qkvzbaNames, s.qk, s.qk, s.v, s.v, s.nv, s.nv); err != nil {
			return nil, err
		}
	}
	comps := st.Components
	qkv, err := tensor.Concat(0, comps[0], comps[1], comps[2])
	if err != nil {
		return nil, c.errorf("in_proj_qkv: %v", err)
	}
	return values(qkv, comps[3], comps[4], comps[5]), nil
}
