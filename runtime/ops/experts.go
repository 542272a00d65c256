package ops

import (
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

func init() {
	register(both(KindSplitExperts, 1, 0,
		func(c *call) ([]Value, error) { return splitExpertsToMCA(c, false) },
		joinExpertsToHF))
	register(both(KindSplitStackExperts, 1, 0,
		func(c *call) ([]Value, error) { return splitExpertsToMCA(c, true) },
		joinExpertsToHF))
}

// numExperts returns E from the config, checked against got when the config
// sets it, else got.
func (c *call) numExperts(got int64, what string) (int64, error) {
	e := c.cfg.NumMoEExperts
	if e < 0 {
		return 0, c.errorf("config value num_moe_experts must be positive, got %d", e)
	}
	if e > 0 && got != e {
		return 0, c.errorf("%s %d experts, but num_moe_experts is %d", what, got, e)
	}
	return got, nil
}

// splitExpertsToMCA splits a fused HF expert tensor [E, A, B] into one
// tensor per expert (spec §2.7):
//
//   - Transpose (qwen3_vl_moe): transpose axes 1 and 2, make contiguous,
//     unbind: E × [B, A]. HF down_proj [E, F, H] gives E × [H, F]. New
//     bytes: one buffer of the whole tensor's size.
//   - no Transpose (qwen3_5_moe): unbind: E × [A, B], views only.
//
// With stack (split_stack_experts, for gate_up_proj) each expert's rows are
// then halved into Stacked(gate, up; dim 0): HF [E, H, 2F] with Transpose,
// or [E, 2F, H] without, gives E × Stacked(gate [F, H], up [F, H]).
func splitExpertsToMCA(c *call, stack bool) ([]Value, error) {
	if err := c.wantInputs("experts"); err != nil {
		return nil, err
	}
	t, err := c.plain(0, "experts")
	if err != nil {
		return nil, err
	}
	if len(t.Shape) != 3 {
		return nil, c.errorf("experts has shape %v; want a 3-d tensor [num_experts, rows, cols]", t.Shape)
	}
	e, err := c.numExperts(t.Shape[0], "the fused tensor "+t.Shape.String()+" holds")
	if err != nil {
		return nil, err
	}
	if e == 0 {
		return nil, c.errorf("experts has shape %v: no experts", t.Shape)
	}
	if c.op.Transpose {
		dst, err := c.alloc(t.Len())
		if err != nil {
			return nil, err
		}
		if t, err = tensor.Transpose(t, 1, 2, dst); err != nil {
			return nil, c.errorf("%v", err)
		}
	}
	rows, cols := t.Shape[1], t.Shape[2]
	if stack && rows%2 != 0 {
		return nil, c.errorf("each expert has %d rows after the split; gate and up need an even number", rows)
	}
	out := make([]Value, e)
	for i := range e {
		x, err := t.Rows(i, i+1)
		if err != nil {
			return nil, c.errorf("%v", err)
		}
		if x, err = x.Reshape(tensor.Shape{rows, cols}); err != nil {
			return nil, c.errorf("%v", err)
		}
		if !stack {
			out[i] = TensorValue(x)
			continue
		}
		parts, err := tensor.Split(x, 0, rows/2, rows/2)
		if err != nil {
			return nil, c.errorf("%v", err)
		}
		out[i] = StackedValue(tensor.Stacked{Components: parts, Dim: 0})
	}
	return out, nil
}

// joinExpertsToHF undoes both splits: E inputs, each a [B, A] tensor or a
// stacked tensor whose components are concatenated first (gate, up); they
// are stacked to [E, B, A] and, with Transpose, transposed to [E, A, B]
// (new bytes); without, the stack is a view.
func joinExpertsToHF(c *call) ([]Value, error) {
	if len(c.in) == 0 {
		return nil, c.errorf("no expert tensors")
	}
	e, err := c.numExperts(int64(len(c.in)), "got")
	if err != nil {
		return nil, err
	}
	experts := make([]tensor.Tensor, e)
	var first tensor.Tensor
	for i, v := range c.in {
		t, err := v.Flatten()
		if err != nil {
			return nil, c.errorf("expert %d: %v", i, err)
		}
		if err := t.Validate(); err != nil {
			return nil, c.errorf("expert %d: %v", i, err)
		}
		if len(t.Shape) != 2 {
			return nil, c.errorf("expert %d has shape %v; want a 2-d tensor", i, t.Shape)
		}
		if i == 0 {
			first = t
		} else if t.DType != first.DType || !t.Shape.Equal(first.Shape) {
			return nil, c.errorf("expert %d is %v but expert 0 is %v; all experts must agree", i, t, first)
		}
		if experts[i], err = t.Reshape(tensor.Shape{1, t.Shape[0], t.Shape[1]}); err != nil {
			return nil, c.errorf("expert %d: %v", i, err)
		}
	}
	all, err := tensor.Concat(0, experts...)
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	if c.op.Transpose {
		dst, err := c.alloc(all.Len())
		if err != nil {
			return nil, err
		}
		if all, err = tensor.Transpose(all, 1, 2, dst); err != nil {
			return nil, c.errorf("%v", err)
		}
	}
	return values(all), nil
}
