package ops

import (
	"strconv"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

func init() {
	register(both(KindRename, 1, 1, rename, rename))
	register(both(KindCopy, 0, 0, copyOp, copyOp))
	register(both(KindConcat, 0, 0, concat, concat))
	register(both(KindStack, 0, 0, stack, stack))
	register(both(KindDrop, 0, 0, drop, drop))
}

// rename: 1 : 1, identity in both directions. A stacked input passes
// through unchanged, as in ROLL.
func rename(c *call) ([]Value, error) {
	if err := c.wantInputs("tensor"); err != nil {
		return nil, err
	}
	return []Value{c.in[0]}, nil
}

// copyOp: one side has one name. The single source tensor is returned once
// per target name (the same view each time, no bytes copied). ROLL repeats
// the whole input list, which only makes sense for one source; more than
// one source is an error here rather than a failed count assertion.
func copyOp(c *call) ([]Value, error) {
	src, dst := c.counts()
	if src != 1 {
		return nil, c.errorf("copy fans one tensor out to several names; this op has %d source names and %d targets", src, dst)
	}
	if err := c.wantInputs("tensor"); err != nil {
		return nil, err
	}
	out := make([]Value, dst)
	for i := range out {
		out[i] = c.in[0]
	}
	return out, nil
}

// concat: one side has one name. One source is cut into as many equal parts
// along Dim as there are targets (torch.chunk: the last part may be smaller;
// a size that gives fewer parts than targets is an error); several sources
// are concatenated along Dim into the one target. Views only.
func concat(c *call) ([]Value, error) {
	src, dst := c.counts()
	if len(c.in) != src {
		return nil, c.errorf("got %d inputs, want %d", len(c.in), src)
	}
	ts := make([]tensor.Tensor, len(c.in))
	names := make([]string, len(c.in))
	for i := range c.in {
		names[i] = "input " + strconv.Itoa(i)
		t, err := c.plain(i, names[i])
		if err != nil {
			return nil, err
		}
		ts[i] = t
	}
	if src == 1 {
		if len(ts[0].Shape) == 0 {
			return nil, c.errorf("cannot cut a 0-d tensor %v into %d parts", ts[0], dst)
		}
		parts, err := tensor.Chunk(ts[0], dst, c.op.Dim)
		if err != nil {
			return nil, c.errorf("%v", err)
		}
		if len(parts) != dst {
			return nil, c.errorf("cutting %v along dim %d into %d parts gives %d (torch.chunk)", ts[0], c.op.Dim, dst, len(parts))
		}
		return values(parts...), nil
	}
	if err := c.sameDType(names, ts...); err != nil {
		return nil, err
	}
	t, err := tensor.Concat(c.op.Dim, ts...)
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	return values(t), nil
}

// stack: one side has one name. Several sources become one stacked tensor
// (dim Dim); one source must be a stacked tensor with one component per
// target, and its components are the results. Views only.
func stack(c *call) ([]Value, error) {
	src, dst := c.counts()
	if len(c.in) != src {
		return nil, c.errorf("got %d inputs, want %d", len(c.in), src)
	}
	if src == 1 {
		v := c.in[0]
		if v.Stacked == nil {
			return nil, c.errorf("the input is a plain tensor %v; want a stacked tensor of %d components", v.Tensor, dst)
		}
		comps := v.Stacked.Components
		if len(comps) != dst {
			return nil, c.errorf("the input %v has %d components; want %d, one per target name", v, len(comps), dst)
		}
		for i, t := range comps {
			if err := t.Validate(); err != nil {
				return nil, c.errorf("component %d: %v", i, err)
			}
		}
		return values(comps...), nil
	}
	ts := make([]tensor.Tensor, len(c.in))
	for i := range c.in {
		t, err := c.plain(i, "input "+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		ts[i] = t
	}
	s, err := tensor.NewStacked(c.op.Dim, ts...)
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	return []Value{StackedValue(s)}, nil
}

// drop: no results, whatever the inputs.
func drop(c *call) ([]Value, error) { return nil, nil }
