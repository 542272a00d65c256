package ops

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

func TestKindsRegistered(t *testing.T) {
	want := []string{
		"concat", "copy", "drop", "gated_qkv", "gdn_conv1d", "next_gdn", "qkv", "qkv_bias",
		"qwen3_5_gdn", "rename", "split_experts", "split_stack_experts", "stack", "zero_centered_rmsnorm",
	}
	if got := Kinds(); !slices.Equal(got, want) {
		t.Errorf("Kinds() = %v, want %v", got, want)
	}
	for _, k := range want {
		impl, ok := Lookup(k)
		if !ok || impl.HFToMCA == nil || impl.MCAToHF == nil || impl.Kind != k {
			t.Errorf("Lookup(%q) = %+v, %v", k, impl, ok)
		}
	}
	if _, ok := Lookup("nope"); ok {
		t.Error("Lookup of an unknown kind succeeded")
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.op.Kind] = true
	}
	for _, k := range want {
		if !covered[k] {
			t.Errorf("no test case for kind %q", k)
		}
	}
}

// TestRoundTrip applies each op in one direction and then the other and
// expects the original inputs back, for every case and dtype.
func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, c := range cases {
		for _, dt := range testDTypes {
			for _, dir := range []Direction{HFToMCA, MCAToHF} {
				shapes, rt := c.hf, c.roundTripHF
				if dir == MCAToHF {
					shapes, rt = c.mca, c.roundTripMCA
				}
				if shapes == nil {
					continue
				}
				in := makeInputs(t, r, c, dt, shapes)
				out, err := c.op.Apply(dir, c.cfg, in)
				if err != nil {
					t.Errorf("%s %v %v: %v", c.name, dt, dir, err)
					continue
				}
				if !rt {
					continue
				}
				back, err := c.op.Apply(1-dir, c.cfg, out)
				if err != nil {
					t.Errorf("%s %v %v then back: %v", c.name, dt, dir, err)
					continue
				}
				if !valuesEqual(back, in) {
					t.Errorf("%s %v: %v then back does not restore the inputs:\n in %v\nout %v\nback %v", c.name, dt, dir, in, out, back)
				}
			}
		}
	}
}

// rowsOf returns row i (along dim 0) of a contiguous byte tensor.
func rowsOf(x tensor.Tensor, i, n int64) []byte {
	rb, _ := x.RowBytes()
	return x.Bytes()[i*rb : (i+n)*rb]
}

// refQKV is the fused layout by explicit index arithmetic.
func refQKV(q, k, v tensor.Tensor, nh, ng, d int64) []byte {
	g := nh / ng
	var out []byte
	for j := int64(0); j < ng; j++ {
		for r := int64(0); r < (g+2)*d; r++ {
			switch {
			case r < g*d:
				out = append(out, rowsOf(q, j*g*d+r, 1)...)
			case r < g*d+d:
				out = append(out, rowsOf(k, j*d+r-g*d, 1)...)
			default:
				out = append(out, rowsOf(v, j*d+r-g*d-d, 1)...)
			}
		}
	}
	return out
}

func refGatedQKV(q, k, v tensor.Tensor, nh, ng, d int64) []byte {
	g := nh / ng
	var out []byte
	for j := int64(0); j < ng; j++ {
		for s := int64(0); s < 2*g+2; s++ {
			for r := int64(0); r < d; r++ {
				switch {
				case s < g:
					out = append(out, rowsOf(q, (j*g+s)*2*d+r, 1)...)
				case s < 2*g:
					out = append(out, rowsOf(q, (j*g+s-g)*2*d+d+r, 1)...)
				case s == 2*g:
					out = append(out, rowsOf(k, j*d+r, 1)...)
				default:
					out = append(out, rowsOf(v, j*d+r, 1)...)
				}
			}
		}
	}
	return out
}

// flip inverts every byte of the inputs in place (to show that results
// are views: they change too).
func flip(vs []Value) {
	for _, v := range vs {
		ts := []tensor.Tensor{v.Tensor}
		if v.Stacked != nil {
			ts = v.Stacked.Components
		}
		for _, x := range ts {
			for _, p := range x.Pieces() {
				for i := range p {
					p[i] ^= 0x5A
				}
			}
		}
	}
}

func TestQKVLayout(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, c := range cases {
		if c.op.Kind != KindQKV && c.op.Kind != KindGatedQKV && c.op.Kind != KindQKVBias {
			continue
		}
		in := makeInputs(t, r, c, tensor.BF16, c.hf)
		ref := refQKV
		if c.op.Kind == KindGatedQKV {
			ref = refGatedQKV
		}
		q, k, v := in[0].Tensor, in[1].Tensor, in[2].Tensor
		if c.op.Kind == KindQKVBias {
			q, _ = q.Reshape(tensor.Shape{-1, 1})
			k, _ = k.Reshape(tensor.Shape{-1, 1})
			v, _ = v.Reshape(tensor.Shape{-1, 1})
		}
		out, err := c.op.Apply(HFToMCA, c.cfg, in)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := ref(q, k, v, c.cfg.NumAttentionHeads, c.cfg.NumQueryGroups, c.cfg.KVChannels)
		if !bytes.Equal(out[0].Tensor.Bytes(), want) {
			t.Errorf("%s: fused layout differs from the index formula", c.name)
		}
		if !out[0].Tensor.Shape.Equal(c.mca[0].shape) {
			t.Errorf("%s: shape %v, want %v", c.name, out[0].Tensor.Shape, c.mca[0].shape)
		}
		// The result is a view: changing the inputs changes it.
		flip(in)
		want = ref(q, k, v, c.cfg.NumAttentionHeads, c.cfg.NumQueryGroups, c.cfg.KVChannels)
		if !bytes.Equal(out[0].Tensor.AppendTo(nil), want) {
			t.Errorf("%s: result is not a view of the inputs", c.name)
		}
	}
}

// TestZeroCopy checks, for every op that only moves rows, that results
// share the input bytes (both directions).
func TestZeroCopy(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, c := range cases {
		if c.norm || c.op.Transpose {
			continue
		}
		for _, dir := range []Direction{HFToMCA, MCAToHF} {
			shapes := c.hf
			if dir == MCAToHF {
				shapes = c.mca
			}
			if shapes == nil {
				continue
			}
			in := makeInputs(t, r, c, tensor.F32, shapes)
			out, err := c.op.Apply(dir, c.cfg, in)
			if err != nil {
				t.Fatalf("%s %v: %v", c.name, dir, err)
			}
			before := flatBytes(out)
			flip(in)
			after := flatBytes(out)
			for i := range before {
				if bytes.Equal(before[i], after[i]) && len(before[i]) > 0 {
					t.Errorf("%s %v: result %d did not change with its input: copied", c.name, dir, i)
				}
			}
		}
	}
}

func flatBytes(vs []Value) [][]byte {
	var out [][]byte
	for _, v := range vs {
		x, err := v.Flatten()
		if err != nil {
			panic(err)
		}
		out = append(out, x.AppendTo(nil))
	}
	return out
}

func TestTransposeSplit(t *testing.T) {
	// HF down_proj [E, F, H] → E × [H, F] and back.
	le := binary.LittleEndian
	const e, f, h = 2, 3, 4
	data := make([]byte, 0, e*f*h*4)
	for i := 0; i < e*f*h; i++ {
		data = le.AppendUint32(data, math.Float32bits(float32(i)))
	}
	x, err := tensor.New(tensor.F32, tensor.Shape{e, f, h}, data)
	if err != nil {
		t.Fatal(err)
	}
	op := Op{Kind: KindSplitExperts, Transpose: true}
	buf := make([]byte, len(data))
	calls := 0
	cfg := Config{NumMoEExperts: e, Alloc: func(n int) []byte { calls++; return buf[:n] }}
	out, err := op.Apply(HFToMCA, cfg, []Value{TensorValue(x)})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 || len(out) != e {
		t.Fatalf("Alloc called %d times, %d results", calls, len(out))
	}
	for ex := 0; ex < e; ex++ {
		y := out[ex].Tensor
		if !y.Shape.Equal(tensor.Shape{h, f}) {
			t.Fatalf("expert %d shape %v", ex, y.Shape)
		}
		b := y.Bytes()
		for i := 0; i < h; i++ {
			for j := 0; j < f; j++ {
				got := math.Float32frombits(le.Uint32(b[(i*f+j)*4:]))
				if want := float32(ex*f*h + j*h + i); got != want {
					t.Fatalf("expert %d [%d, %d] = %v, want %v", ex, i, j, got, want)
				}
			}
		}
	}
	if &out[0].Tensor.Pieces()[0][0] != &buf[0] {
		t.Error("result not in the Alloc buffer")
	}
}

func TestZeroCenteredNormValues(t *testing.T) {
	le := binary.LittleEndian
	op := Op{Kind: KindZeroCenteredRMSNorm}
	for _, tc := range []struct {
		dt       tensor.DType
		in, want uint16
		dir      Direction
	}{
		{tensor.BF16, 0x3F80, 0x0000, HFToMCA}, // 1 - 1 = 0
		{tensor.BF16, 0x0000, 0x3F80, MCAToHF}, // 0 + 1 = 1
		{tensor.BF16, 0x4381, 0x4380, HFToMCA}, // 258 - 1 = 257 → tie → 256 (even)
		{tensor.BF16, 0x4383, 0x4382, HFToMCA}, // 262 - 1 = 261 → tie between 260 and 262 → 260 (even)
		{tensor.F16, 0x3C00, 0x0000, HFToMCA},
		{tensor.F16, 0x6801, 0x6800, HFToMCA},  // 2049 is not f16; 2050 - 1 = 2049 → tie → 2048
		{tensor.BF16, 0x7F80, 0x7F80, HFToMCA}, // inf - 1 = inf
		{tensor.BF16, 0x7F7F, 0x7F7F, MCAToHF}, // max + 1 = max
	} {
		x, err := tensor.New(tc.dt, tensor.Shape{1}, le.AppendUint16(nil, tc.in))
		if err != nil {
			t.Fatal(err)
		}
		out, err := op.Apply(tc.dir, Config{}, []Value{TensorValue(x)})
		if err != nil {
			t.Fatal(err)
		}
		got := le.Uint16(out[0].Tensor.Bytes())
		if got != tc.want {
			t.Errorf("%v %v %#04x = %#04x, want %#04x", tc.dt, tc.dir, tc.in, got, tc.want)
		}
	}
	// Non-float dtypes are rejected.
	x, _ := tensor.New(tensor.I32, tensor.Shape{2}, make([]byte, 8))
	if _, err := op.Apply(HFToMCA, Config{}, []Value{TensorValue(x)}); err == nil || !strings.Contains(err.Error(), "I32") {
		t.Errorf("I32 norm: %v", err)
	}
}

func TestErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	bf := func(dims ...int64) Value { return TensorValue(randTensor(t, r, tensor.BF16, dims)) }
	f32 := func(dims ...int64) Value { return TensorValue(randTensor(t, r, tensor.F32, dims)) }
	attn := Config{NumAttentionHeads: 8, NumQueryGroups: 2, KVChannels: 4, HiddenSize: 16}
	stk := func(vs ...Value) Value {
		var ts []tensor.Tensor
		for _, v := range vs {
			ts = append(ts, v.Tensor)
		}
		return StackedValue(tensor.Stacked{Components: ts})
	}
	for _, tc := range []struct {
		name string
		op   Op
		dir  Direction
		cfg  Config
		in   []Value
		want string
	}{
		{"unknown kind", Op{Kind: "fuse"}, HFToMCA, Config{}, nil, `unknown op kind "fuse"`},
		{"bad direction", Op{Kind: KindRename}, Direction(7), Config{}, []Value{bf(1)}, "invalid direction"},
		{"rename arity", Op{Kind: KindRename, NumHF: 2, NumMCA: 1}, HFToMCA, Config{}, []Value{bf(1)}, "declares 2 HF and 1 MCA names; want 1 and 1"},
		{"rename inputs", Op{Kind: KindRename}, HFToMCA, Config{}, []Value{bf(1), bf(1)}, "got 2 inputs, want 1"},
		{"copy xor", Op{Kind: KindCopy, NumHF: 2, NumMCA: 2}, HFToMCA, Config{}, []Value{bf(1)}, "exactly one side must have one name"},
		{"copy unset", Op{Kind: KindStack}, HFToMCA, Config{}, []Value{bf(1)}, "exactly one side"},
		{"copy many sources", Op{Kind: KindCopy, NumHF: 2, NumMCA: 1}, HFToMCA, Config{}, []Value{bf(1), bf(1)}, "copy fans one tensor out"},
		{"concat chunk count", Op{Kind: KindConcat, NumHF: 1, NumMCA: 4}, HFToMCA, Config{}, []Value{bf(6, 2)}, "gives 3 (torch.chunk)"},
		{"concat shapes", Op{Kind: KindConcat, NumHF: 2, NumMCA: 1}, HFToMCA, Config{}, []Value{bf(2, 3), bf(2, 4)}, "concat along dim 0"},
		{"concat dtypes", Op{Kind: KindConcat, NumHF: 2, NumMCA: 1}, HFToMCA, Config{}, []Value{bf(2, 3), f32(2, 3)}, "input 1 is F32 but input 0 is BF16"},
		{"stack plain", Op{Kind: KindStack, NumHF: 2, NumMCA: 1}, MCAToHF, Config{}, []Value{bf(2, 3)}, "plain tensor BF16[2, 3]; want a stacked tensor of 2"},
		{"stack count", Op{Kind: KindStack, NumHF: 3, NumMCA: 1}, MCAToHF, Config{}, []Value{stk(bf(1, 2), bf(1, 2))}, "has 2 components; want 3"},
		{"stack shapes", Op{Kind: KindStack, NumHF: 2, NumMCA: 1}, HFToMCA, Config{}, []Value{bf(2, 3), bf(2, 4)}, "component 1 has shape [2, 4]"},
		{"qkv nh%ng", Op{Kind: KindQKV}, HFToMCA, Config{NumAttentionHeads: 6, NumQueryGroups: 4, KVChannels: 2, HiddenSize: 3},
			[]Value{bf(12, 3), bf(8, 3), bf(8, 3)}, "num_attention_heads 6 is not a multiple of num_query_groups 4"},
		{"qkv missing config", Op{Kind: KindQKV}, HFToMCA, Config{NumAttentionHeads: 8, NumQueryGroups: 2},
			[]Value{bf(32, 16), bf(8, 16), bf(8, 16)}, "kv_channels must be positive"},
		{"qkv q rows", Op{Kind: KindQKV}, HFToMCA, attn, []Value{bf(30, 16), bf(8, 16), bf(8, 16)},
			"q has shape [30, 16] (480 elements); want [32, 16] (num_attention_heads × kv_channels"},
		{"qkv k rows", Op{Kind: KindQKV}, HFToMCA, attn, []Value{bf(32, 16), bf(4, 16), bf(8, 16)},
			"k has shape [4, 16]"},
		{"qkv hidden", Op{Kind: KindQKV}, HFToMCA, attn, []Value{bf(32, 8), bf(8, 8), bf(8, 8)}, "hidden size 16"},
		{"qkv inferred width mismatch", Op{Kind: KindQKV}, HFToMCA, Config{NumAttentionHeads: 8, NumQueryGroups: 2, KVChannels: 4},
			[]Value{bf(32, 8), bf(8, 4), bf(8, 8)}, "k has shape [8, 4] (32 elements); want [8, 8]"},
		{"qkv dtype", Op{Kind: KindQKV}, HFToMCA, attn, []Value{bf(32, 16), f32(8, 16), bf(8, 16)}, "k is F32 but q is BF16"},
		{"qkv stacked input", Op{Kind: KindQKV}, HFToMCA, attn, []Value{stk(bf(32, 16)), bf(8, 16), bf(8, 16)}, "q is a stacked tensor"},
		{"qkv mca rows", Op{Kind: KindQKV}, MCAToHF, attn, []Value{bf(40, 16)}, "linear_qkv has shape [40, 16]"},
		{"qkv_bias", Op{Kind: KindQKVBias}, HFToMCA, attn, []Value{bf(31), bf(8), bf(8)}, "q has shape [31] (31 elements); want 32 elements"},
		{"gated rows", Op{Kind: KindGatedQKV}, HFToMCA, attn, []Value{bf(32, 16), bf(8, 16), bf(8, 16)}, "num_attention_heads × 2 × kv_channels"},
		{"gdn config", Op{Kind: KindGDNConv1d}, HFToMCA, Config{LinearNumKeyHeads: 2}, []Value{bf(20, 1, 4)}, "linear_num_value_heads must be positive"},
		{"conv1d rows", Op{Kind: KindGDNConv1d}, HFToMCA, gdnCfg, []Value{bf(21, 1, 4)}, "conv1d has shape [21, 1, 4]; want 20 rows"},
		{"conv1d plain mca", Op{Kind: KindGDNConv1d}, MCAToHF, gdnCfg, []Value{bf(20, 1, 4)}, "plain tensor BF16[20, 1, 4]; want a stacked tensor of 3"},
		{"conv1d mca rows", Op{Kind: KindGDNConv1d}, MCAToHF, gdnCfg, []Value{stk(bf(6, 1, 4), bf(6, 1, 4), bf(7, 1, 4))}, "component v has shape [7, 1, 4]; want 8 rows"},
		{"next_gdn ratio", Op{Kind: KindNextGDN}, HFToMCA, Config{LinearNumKeyHeads: 3, LinearNumValueHeads: 4, LinearKeyHeadDim: 1, LinearValueHeadDim: 1},
			[]Value{bf(14, 2), bf(8, 2)}, "linear_num_value_heads 4 is not a multiple of linear_num_key_heads 3"},
		{"next_gdn ba", Op{Kind: KindNextGDN}, HFToMCA, gdnCfg, []Value{bf(28, 5), bf(6, 5)}, "in_proj_ba has shape [6, 5]"},
		{"next_gdn mca count", Op{Kind: KindNextGDN}, MCAToHF, gdnCfg, []Value{stk(bf(6, 5), bf(6, 5))}, "want 6 components"},
		{"qwen3_5_gdn inputs", Op{Kind: KindQwen3_5GDN}, HFToMCA, gdnCfg, []Value{bf(20, 5)}, "got 1 inputs, want 4 (in_proj_qkv, in_proj_z, in_proj_b, in_proj_a)"},
		{"qwen3_5_gdn z", Op{Kind: KindQwen3_5GDN}, HFToMCA, gdnCfg, []Value{bf(20, 5), bf(7, 5), bf(4, 5), bf(4, 5)}, "in_proj_z has shape [7, 5]"},
		{"split rank", Op{Kind: KindSplitExperts}, HFToMCA, Config{}, []Value{bf(3, 4)}, "want a 3-d tensor"},
		{"split count", Op{Kind: KindSplitExperts}, HFToMCA, Config{NumMoEExperts: 4}, []Value{bf(3, 4, 2)}, "holds 3 experts, but num_moe_experts is 4"},
		{"split odd", Op{Kind: KindSplitStackExperts}, HFToMCA, Config{}, []Value{bf(2, 3, 4)}, "need an even number"},
		{"join count", Op{Kind: KindSplitExperts}, MCAToHF, Config{NumMoEExperts: 3}, []Value{bf(2, 2), bf(2, 2)}, "got 2 experts, but num_moe_experts is 3"},
		{"join shapes", Op{Kind: KindSplitExperts}, MCAToHF, Config{}, []Value{bf(2, 2), bf(2, 3)}, "expert 1 is BF16[2, 3] but expert 0 is BF16[2, 2]"},
		{"alloc short", Op{Kind: KindZeroCenteredRMSNorm}, HFToMCA, Config{Alloc: func(n int) []byte { return nil }}, []Value{bf(4)}, "Config.Alloc returned 0 bytes, want 8"},
		{"invalid tensor", Op{Kind: KindRename}, HFToMCA, Config{}, []Value{{}}, ""},
	} {
		out, err := tc.op.Apply(tc.dir, tc.cfg, tc.in)
		if tc.want == "" {
			continue // only must not panic
		}
		if err == nil {
			t.Errorf("%s: no error, results %v", tc.name, out)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
	}
}

func TestErrorNamesOpAndDirection(t *testing.T) {
	_, err := Op{Kind: KindQKV}.Apply(MCAToHF, Config{}, []Value{{}})
	if err == nil || !strings.HasPrefix(err.Error(), "ops: qkv mca->hf: ") {
		t.Errorf("error = %v", err)
	}
}

// TestNoPanics feeds random shapes and configs to every op.
func TestNoPanics(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	kinds := Kinds()
	small := func() int64 { return int64(r.IntN(5)) - 1 }
	for i := 0; i < 20000; i++ {
		op := Op{Kind: kinds[r.IntN(len(kinds))], NumHF: r.IntN(4), NumMCA: r.IntN(4), Dim: r.IntN(4) - 1, Transpose: r.IntN(2) == 0, HiddenSize: small()}
		cfg := Config{HiddenSize: small(), NumAttentionHeads: small(), NumQueryGroups: small(), KVChannels: small(),
			LinearNumKeyHeads: small(), LinearNumValueHeads: small(), LinearKeyHeadDim: small(), LinearValueHeadDim: small(), NumMoEExperts: small()}
		var in []Value
		for k := r.IntN(7); k > 0; k-- {
			rank := r.IntN(4)
			shape := make(tensor.Shape, rank)
			for d := range shape {
				shape[d] = int64(r.IntN(9))
			}
			dt := []tensor.DType{tensor.BF16, tensor.F32, tensor.U8, tensor.F64}[r.IntN(4)]
			x := randTensor(t, r, dt, shape)
			if r.IntN(4) == 0 {
				in = append(in, StackedValue(tensor.Stacked{Components: []tensor.Tensor{x, x}, Dim: r.IntN(3)}))
			} else {
				in = append(in, TensorValue(x))
			}
		}
		for _, dir := range []Direction{HFToMCA, MCAToHF} {
			_, err := op.Apply(dir, cfg, in)
			if err != nil && strings.Contains(err.Error(), "internal error") {
				t.Fatalf("%+v %v %+v %v: %v", op, dir, cfg, in, err)
			}
		}
	}
}

func TestAllocsIndependentOfSize(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	op := Op{Kind: KindQKV}
	cfg := Config{NumAttentionHeads: 8, NumQueryGroups: 2, KVChannels: 4}
	allocs := func(h int64) float64 {
		in := []Value{
			TensorValue(randTensor(t, r, tensor.BF16, tensor.Shape{32, h})),
			TensorValue(randTensor(t, r, tensor.BF16, tensor.Shape{8, h})),
			TensorValue(randTensor(t, r, tensor.BF16, tensor.Shape{8, h})),
		}
		return testing.AllocsPerRun(20, func() {
			out, err := op.Apply(HFToMCA, cfg, in)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := op.Apply(MCAToHF, cfg, out); err != nil {
				t.Fatal(err)
			}
		})
	}
	a, b := allocs(4), allocs(4096)
	if a != b {
		t.Errorf("allocations depend on tensor size: %v for H=4, %v for H=4096", a, b)
	}
}
