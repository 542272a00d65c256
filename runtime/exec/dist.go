package exec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// Layout is the parallel layout of an MCA checkpoint: the layout of
// runtime/shard, where its rules live (sizes, divisibility, pipeline
// split, rank directory names). The zero value is the single rank file,
// a 1x1x1 layout.
type Layout = shard.Layout

// ErrLayoutUnsupported is returned (wrapped) for a checkpoint layout the
// runtime cannot read (virtual pipeline stages in a single rank file).
var ErrLayoutUnsupported = errors.New("not supported yet")

// Parallel classes, in the order ROLL's DistConverter tries them.
const (
	ClassSwiglu     = "swiglu"
	ClassGDN        = "gdn"
	ClassDuplicated = "duplicated"
	ClassColumn     = "column"
	ClassRow        = "row"
)

// dist is the model-agnostic placement layer between op results and the
// files: ROLL's DistConverter. It classifies every MCA name and turns an
// op result into per-rank tensors (HF → MCA) or per-rank tensors back into
// the op input (MCA → HF). At TP=PP=EP=1 there is one rank and the only
// work is joining (HF → MCA) or splitting (MCA → HF) the components of
// stacked swiglu and gdn weights; this is where a per-rank split goes.
type dist struct {
	layout  Layout
	swiglu  bool
	classes []struct {
		name  string
		globs []glob
	}
	cfg ops.Config
}

func newDist(m *Model, mc *MCAConfig) *dist {
	d := &dist{layout: mc.Layout().Normalized(), cfg: mc.OpsConfig()}
	d.swiglu, _ = mc.Bool("swiglu")
	for _, c := range []string{ClassSwiglu, ClassGDN, ClassDuplicated, ClassColumn, ClassRow} {
		var gs []glob
		for _, p := range m.Parallel.Lists[c] {
			gs = append(gs, compileGlob(p))
		}
		d.classes = append(d.classes, struct {
			name  string
			globs []glob
		}{c, gs})
	}
	return d
}

// mcaPure returns the pure MCA name used for classification: without the
// layer and expert prefix, with a ".bias" suffix read as ".weight".
func mcaPure(name string) string {
	p := prefixes{MCALayerPrefix, MCAExpertPrefix}
	_, pure, err := p.split(name)
	if err != nil {
		pure = name
	}
	if strings.HasSuffix(pure, ".bias") {
		pure = strings.TrimSuffix(pure, ".bias") + ".weight"
	}
	return pure
}

// class returns the parallel class of an MCA name, or "" when no list
// covers it (ROLL raises ValueError in dist_convert).
func (d *dist) class(name string) string {
	pure := mcaPure(name)
	for _, c := range d.classes {
		if c.name == ClassSwiglu && !d.swiglu {
			continue
		}
		for _, g := range c.globs {
			if g.match(pure) {
				return c.name
			}
		}
	}
	return ""
}

// rankTensor is one tensor of one rank's state dict.
type rankTensor struct {
	Rank   shard.Rank
	Name   string
	Tensor tensor.Tensor
}

// toRanks places an op result for MCA name: at TP=1 swiglu and gdn stacks
// are joined (per rank r: concat of each component's r-th chunk; here the
// whole components), and a stacked value of any other class is an error,
// as torch.chunk on a StackedTensors is in ROLL.
func (d *dist) toRanks(name string, v ops.Value) ([]rankTensor, error) {
	class := d.class(name)
	if class == "" {
		return nil, fmt.Errorf("MCA tensor %q is in no parallel class of the template (duplicated, column, row, swiglu, gdn)", name)
	}
	t := v.Tensor
	if v.IsStacked() {
		switch class {
		case ClassSwiglu:
			if len(v.Stacked.Components) != 2 || v.Stacked.Dim != 0 {
				return nil, fmt.Errorf("MCA tensor %q is swiglu but the op produced %v; want gate and up stacked on dim 0", name, v)
			}
		case ClassGDN:
			if v.Stacked.Dim != 0 {
				return nil, fmt.Errorf("MCA tensor %q is gdn but the op produced %v; want components stacked on dim 0", name, v)
			}
		default:
			return nil, fmt.Errorf("MCA tensor %q is %s-parallel but the op produced a stacked tensor %v", name, class, v)
		}
		var err error
		if t, err = v.Stacked.Concat(); err != nil {
			return nil, fmt.Errorf("MCA tensor %q: %v", name, err)
		}
	} else if class == ClassSwiglu {
		return nil, fmt.Errorf("MCA tensor %q is swiglu but the op produced a plain tensor %v; want gate and up stacked", name, t)
	}
	return []rankTensor{{Name: name, Tensor: t}}, nil
}

// fromRanks rebuilds the op input for MCA name from its per-rank tensors
// (one at TP=1): swiglu weights are halved into Stacked(gate, up) and gdn
// weights split into their components.
func (d *dist) fromRanks(name string, pieces []tensor.Tensor) (ops.Value, error) {
	if len(pieces) != 1 {
		return ops.Value{}, fmt.Errorf("MCA tensor %q: %d rank pieces; only one rank is supported", name, len(pieces))
	}
	t := pieces[0]
	switch d.class(name) {
	case "":
		return ops.Value{}, fmt.Errorf("MCA tensor %q is in no parallel class of the template (duplicated, column, row, swiglu, gdn)", name)
	case ClassSwiglu:
		if len(t.Shape) == 0 || t.Shape[0]%2 != 0 {
			return ops.Value{}, fmt.Errorf("MCA tensor %q %v is swiglu (gate and up stacked) but does not have an even number of rows", name, t)
		}
		parts, err := tensor.Split(t, 0, t.Shape[0]/2, t.Shape[0]/2)
		if err != nil {
			return ops.Value{}, fmt.Errorf("MCA tensor %q: %v", name, err)
		}
		return ops.StackedValue(tensor.Stacked{Components: parts}), nil
	case ClassGDN:
		sizes, err := d.gdnSizes(name)
		if err != nil {
			return ops.Value{}, err
		}
		var total int64
		for _, s := range sizes {
			total += s
		}
		if len(t.Shape) == 0 || t.Shape[0] != total {
			return ops.Value{}, fmt.Errorf("MCA tensor %q %v is gdn with components of %v rows (%d in all)", name, t, sizes, total)
		}
		parts, err := tensor.Split(t, 0, sizes...)
		if err != nil {
			return ops.Value{}, fmt.Errorf("MCA tensor %q: %v", name, err)
		}
		return ops.StackedValue(tensor.Stacked{Components: parts}), nil
	}
	return ops.TensorValue(t), nil
}

// gdnSizes returns the row counts of a gdn weight's components: in_proj
// [QK, QK, V, V, nv, nv], conv1d [QK, QK, V].
func (d *dist) gdnSizes(name string) ([]int64, error) {
	c := d.cfg
	if c.LinearNumKeyHeads <= 0 || c.LinearKeyHeadDim <= 0 || c.LinearNumValueHeads <= 0 || c.LinearValueHeadDim <= 0 {
		return nil, fmt.Errorf("MCA tensor %q is gdn but the config lacks linear_num_key_heads, linear_key_head_dim, linear_num_value_heads or linear_value_head_dim", name)
	}
	qk := c.LinearNumKeyHeads * c.LinearKeyHeadDim
	v := c.LinearNumValueHeads * c.LinearValueHeadDim
	switch {
	case strings.Contains(name, "in_proj"):
		return []int64{qk, qk, v, v, c.LinearNumValueHeads, c.LinearNumValueHeads}, nil
	case strings.Contains(name, "conv1d"):
		return []int64{qk, qk, v}, nil
	}
	return nil, fmt.Errorf("MCA tensor %q is gdn but is neither an in_proj nor a conv1d weight", name)
}
