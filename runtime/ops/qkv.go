package ops

import (
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

func init() {
	register(both(KindQKV, 3, 1,
		func(c *call) ([]Value, error) { return qkvToMCA(c, false) },
		func(c *call) ([]Value, error) { return qkvToHF(c, false) }))
	register(both(KindQKVBias, 3, 1,
		func(c *call) ([]Value, error) { return qkvToMCA(c, true) },
		func(c *call) ([]Value, error) { return qkvToHF(c, true) }))
	register(both(KindGatedQKV, 3, 1, gatedQKVToMCA, gatedQKVToHF))
}

// heads holds the attention head counts: nh heads in ng query groups of g
// heads, d channels per head.
type heads struct{ nh, ng, d, g int64 }

func (c *call) heads() (heads, error) {
	nh, err := c.need("num_attention_heads", c.cfg.NumAttentionHeads)
	if err != nil {
		return heads{}, err
	}
	ng, err := c.need("num_query_groups", c.cfg.NumQueryGroups)
	if err != nil {
		return heads{}, err
	}
	d, err := c.need("kv_channels", c.cfg.KVChannels)
	if err != nil {
		return heads{}, err
	}
	if nh%ng != 0 {
		return heads{}, c.errorf("num_attention_heads %d is not a multiple of num_query_groups %d", nh, ng)
	}
	if _, err := c.mul(nh, 2, d+1); err != nil {
		return heads{}, err
	}
	return heads{nh: nh, ng: ng, d: d, g: nh / ng}, nil
}

// matrix views t as [rows, x] (torch's view: only the element count must
// fit). x == 0 means "infer x from t"; rowsDesc explains rows in errors.
func (c *call) matrix(t tensor.Tensor, name string, rows int64, rowsDesc string, x int64) (tensor.Tensor, error) {
	n := t.NumElements()
	if x > 0 {
		want, err := c.mul(rows, x)
		if err != nil {
			return tensor.Tensor{}, err
		}
		if n != want {
			if x == 1 {
				return tensor.Tensor{}, c.errorf("%s has shape %v (%d elements); want %d elements (%s)", name, t.Shape, n, rows, rowsDesc)
			}
			return tensor.Tensor{}, c.errorf("%s has shape %v (%d elements); want [%d, %d] (%s, hidden size %d)", name, t.Shape, n, rows, x, rowsDesc, x)
		}
	} else if rows == 0 || n%rows != 0 || n == 0 {
		return tensor.Tensor{}, c.errorf("%s has shape %v (%d elements), not a whole number of %d rows (%s)", name, t.Shape, n, rows, rowsDesc)
	}
	m, err := t.Reshape(tensor.Shape{rows, -1})
	if err != nil {
		return tensor.Tensor{}, c.errorf("%s: %v", name, err)
	}
	return m, nil
}

// width returns the row width to use: 1 for biases, else the hidden size
// (0 = infer).
func (c *call) width(bias bool) int64 {
	if bias {
		return 1
	}
	return c.hidden()
}

// outShape is [rows, x] for weights and [rows·x] for biases.
func outShape(bias bool, rows, x int64) tensor.Shape {
	if bias {
		return tensor.Shape{rows * x}
	}
	return tensor.Shape{rows, x}
}

// qkvToMCA interleaves q, k, v by query group (spec §2.4):
//
//	q [nh·d, H] → [ng, g·d, H];  k, v [ng·d, H] → [ng, d, H]
//	out = cat((q, k, v), axis 1).reshape(-1, H)   # [ng·(g+2)·d, H]
//
// so row block j of the result is q rows [j·g·d, (j+1)·g·d), k rows
// [j·d, (j+1)·d), v rows [j·d, (j+1)·d). Biases are the same with H = 1 and
// a 1-D result. The result is a view of 3·ng pieces.
func qkvToMCA(c *call, bias bool) ([]Value, error) {
	if err := c.wantInputs("q", "k", "v"); err != nil {
		return nil, err
	}
	h, err := c.heads()
	if err != nil {
		return nil, err
	}
	var ts [3]tensor.Tensor
	for i, name := range [3]string{"q", "k", "v"} {
		if ts[i], err = c.plain(i, name); err != nil {
			return nil, err
		}
	}
	if err := c.sameDType([]string{"q", "k", "v"}, ts[:]...); err != nil {
		return nil, err
	}
	x := c.width(bias)
	q, err := c.matrix(ts[0], "q", h.nh*h.d, "num_attention_heads × kv_channels", x)
	if err != nil {
		return nil, err
	}
	x = q.Shape[1]
	k, err := c.matrix(ts[1], "k", h.ng*h.d, "num_query_groups × kv_channels", x)
	if err != nil {
		return nil, err
	}
	v, err := c.matrix(ts[2], "v", h.ng*h.d, "num_query_groups × kv_channels", x)
	if err != nil {
		return nil, err
	}
	var b tensor.Builder
	b.Grow(int(3 * h.ng))
	gd := h.g * h.d
	for j := range h.ng {
		b.Rows(q, j*gd, (j+1)*gd)
		b.Rows(k, j*h.d, (j+1)*h.d)
		b.Rows(v, j*h.d, (j+1)*h.d)
	}
	out, err := b.Build(outShape(bias, h.ng*(h.g+2)*h.d, x))
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	return values(out), nil
}

// qkvToHF undoes [qkvToMCA]: the fused tensor is viewed as
// [ng, (g+2)·d, H] and split along axis 1 into [g·d, d, d], each part
// reshaped to [-1, H] (flattened for biases). Views only.
func qkvToHF(c *call, bias bool) ([]Value, error) {
	if err := c.wantInputs("linear_qkv"); err != nil {
		return nil, err
	}
	h, err := c.heads()
	if err != nil {
		return nil, err
	}
	t, err := c.plain(0, "linear_qkv")
	if err != nil {
		return nil, err
	}
	per := (h.g + 2) * h.d
	fused, err := c.matrix(t, "linear_qkv", h.ng*per, "num_query_groups × (heads per group + 2) × kv_channels", c.width(bias))
	if err != nil {
		return nil, err
	}
	x := fused.Shape[1]
	gd := h.g * h.d
	var bq, bk, bv tensor.Builder
	bq.Grow(int(h.ng))
	bk.Grow(int(h.ng))
	bv.Grow(int(h.ng))
	for j := range h.ng {
		base := j * per
		bq.Rows(fused, base, base+gd)
		bk.Rows(fused, base+gd, base+gd+h.d)
		bv.Rows(fused, base+gd+h.d, base+per)
	}
	q, err := bq.Build(outShape(bias, h.nh*h.d, x))
	if err != nil {
		return nil, c.errorf("q: %v", err)
	}
	k, err := bk.Build(outShape(bias, h.ng*h.d, x))
	if err != nil {
		return nil, c.errorf("k: %v", err)
	}
	v, err := bv.Build(outShape(bias, h.ng*h.d, x))
	if err != nil {
		return nil, c.errorf("v: %v", err)
	}
	return values(q, k, v), nil
}

// gatedQKVToMCA handles attention with an output gate (Qwen3-Next,
// Qwen3.5; spec §2.5). HF q_proj is [nh·2d, H] with each head's d query
// rows followed by its d gate rows:
//
//	q → [ng, g, 2d, H] → split axis 2 → Q, Z [ng, g, d, H]
//	k, v → [ng, 1, d, H]
//	out = cat((Q, Z, K, V), axis 1).reshape(-1, H)   # [ng·(2g+2)·d, H]
//
// so query group j holds its g query heads, its g gate heads, k_j, v_j.
// The result is a view of up to 2·nh + 2·ng pieces.
func gatedQKVToMCA(c *call) ([]Value, error) {
	if err := c.wantInputs("q", "k", "v"); err != nil {
		return nil, err
	}
	h, err := c.heads()
	if err != nil {
		return nil, err
	}
	var ts [3]tensor.Tensor
	for i, name := range [3]string{"q", "k", "v"} {
		if ts[i], err = c.plain(i, name); err != nil {
			return nil, err
		}
	}
	if err := c.sameDType([]string{"q", "k", "v"}, ts[:]...); err != nil {
		return nil, err
	}
	q, err := c.matrix(ts[0], "q", h.nh*2*h.d, "num_attention_heads × 2 × kv_channels (query and gate)", c.hidden())
	if err != nil {
		return nil, err
	}
	x := q.Shape[1]
	k, err := c.matrix(ts[1], "k", h.ng*h.d, "num_query_groups × kv_channels", x)
	if err != nil {
		return nil, err
	}
	v, err := c.matrix(ts[2], "v", h.ng*h.d, "num_query_groups × kv_channels", x)
	if err != nil {
		return nil, err
	}
	var b tensor.Builder
	b.Grow(int(2*h.nh + 2*h.ng))
	d := h.d
	for j := range h.ng {
		for i := range h.g { // query halves
			head := j*h.g + i
			b.Rows(q, head*2*d, head*2*d+d)
		}
		for i := range h.g { // gate halves
			head := j*h.g + i
			b.Rows(q, head*2*d+d, (head+1)*2*d)
		}
		b.Rows(k, j*d, (j+1)*d)
		b.Rows(v, j*d, (j+1)*d)
	}
	out, err := b.Build(tensor.Shape{h.ng * (2*h.g + 2) * d, x})
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	return values(out), nil
}

// gatedQKVToHF undoes [gatedQKVToMCA]: view as [ng, 2g+2, d, H], split
// axis 1 as [g, g, 1, 1], rejoin query and gate along the d axis
// ([ng, g, 2d, H]) and flatten to [nh·2d, H]; k, v flatten to [ng·d, H].
func gatedQKVToHF(c *call) ([]Value, error) {
	if err := c.wantInputs("linear_qkv"); err != nil {
		return nil, err
	}
	h, err := c.heads()
	if err != nil {
		return nil, err
	}
	t, err := c.plain(0, "linear_qkv")
	if err != nil {
		return nil, err
	}
	d := h.d
	per := (2*h.g + 2) * d
	fused, err := c.matrix(t, "linear_qkv", h.ng*per, "num_query_groups × (2 × heads per group + 2) × kv_channels", c.hidden())
	if err != nil {
		return nil, err
	}
	x := fused.Shape[1]
	var bq, bk, bv tensor.Builder
	bq.Grow(int(2 * h.nh))
	bk.Grow(int(h.ng))
	bv.Grow(int(h.ng))
	for j := range h.ng {
		base := j * per
		for i := range h.g {
			bq.Rows(fused, base+i*d, base+(i+1)*d)           // query of head i
			bq.Rows(fused, base+(h.g+i)*d, base+(h.g+i+1)*d) // its gate
		}
		bk.Rows(fused, base+2*h.g*d, base+(2*h.g+1)*d)
		bv.Rows(fused, base+(2*h.g+1)*d, base+per)
	}
	q, err := bq.Build(tensor.Shape{h.nh * 2 * d, x})
	if err != nil {
		return nil, c.errorf("q: %v", err)
	}
	k, err := bk.Build(tensor.Shape{h.ng * d, x})
	if err != nil {
		return nil, c.errorf("k: %v", err)
	}
	v, err := bv.Build(tensor.Shape{h.ng * d, x})
	if err != nil {
		return nil, c.errorf("v: %v", err)
	}
	return values(q, k, v), nil
}
