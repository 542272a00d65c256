package ops

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// vshape describes the shape of a Value: a plain shape, or the component
// shapes of a stacked tensor.
type vshape struct {
	shape   tensor.Shape
	stacked []tensor.Shape
	dim     int
}

func stackS(comps ...tensor.Shape) vshape {
	return vshape{stacked: comps}
}
func shapes(ss ...tensor.Shape) []vshape {
	out := make([]vshape, len(ss))
	for i, s := range ss {
		out[i] = vshape{shape: s}
	}
	return out
}

// opCase is one configuration of one op, with the shapes of random inputs
// for each direction (nil: the direction is not exercised).
type opCase struct {
	name string
	op   Op
	cfg  Config
	hf   []vshape // inputs of HF → MCA
	mca  []vshape // inputs of MCA → HF

	// roundTripHF / roundTripMCA: the opposite direction restores the
	// inputs exactly.
	roundTripHF, roundTripMCA bool
	// norm: inputs are every 16-bit pattern (or special values) instead of
	// random bits.
	norm bool
}

type S = tensor.Shape

var gdnCfg = Config{LinearNumKeyHeads: 2, LinearNumValueHeads: 4, LinearKeyHeadDim: 3, LinearValueHeadDim: 2, HiddenSize: 5}

// cases covers every op kind.
var cases = []opCase{
	{name: "rename", op: Op{Kind: KindRename}, hf: shapes(S{5, 3}), mca: shapes(S{5, 3}), roundTripHF: true, roundTripMCA: true},
	{name: "copy_1hf_2mca", op: Op{Kind: KindCopy, NumHF: 1, NumMCA: 2}, hf: shapes(S{4, 3})},
	{name: "copy_3hf_1mca", op: Op{Kind: KindCopy, NumHF: 3, NumMCA: 1}, mca: shapes(S{4, 3})},
	{name: "concat_chunk_dim0", op: Op{Kind: KindConcat, NumHF: 1, NumMCA: 2}, hf: shapes(S{6, 4}), mca: shapes(S{3, 4}, S{3, 4}), roundTripHF: true, roundTripMCA: true},
	{name: "concat_uneven_dim0", op: Op{Kind: KindConcat, NumHF: 1, NumMCA: 3}, hf: shapes(S{7, 2}), mca: shapes(S{3, 2}, S{3, 2}, S{1, 2}), roundTripHF: true, roundTripMCA: true},
	{name: "concat_cat_dim1", op: Op{Kind: KindConcat, NumHF: 3, NumMCA: 1, Dim: 1}, hf: shapes(S{4, 2}, S{4, 2}, S{4, 2}), mca: shapes(S{4, 6}), roundTripHF: true, roundTripMCA: true},
	{name: "stack_dim0", op: Op{Kind: KindStack, NumHF: 2, NumMCA: 1}, hf: shapes(S{3, 4}, S{3, 4}), mca: []vshape{stackS(S{3, 4}, S{3, 4})}, roundTripHF: true, roundTripMCA: true},
	{name: "stack_dim1", op: Op{Kind: KindStack, NumHF: 2, NumMCA: 1, Dim: 1}, hf: shapes(S{3, 4}, S{3, 2}), mca: []vshape{{stacked: []S{{3, 4}, {3, 2}}, dim: 1}}, roundTripHF: true, roundTripMCA: true},
	{name: "drop", op: Op{Kind: KindDrop, NumHF: 1}, hf: shapes(S{2, 2}), mca: nil},
	{name: "qkv_gqa", op: Op{Kind: KindQKV}, cfg: Config{NumAttentionHeads: 8, NumQueryGroups: 2, KVChannels: 4, HiddenSize: 16},
		hf: shapes(S{32, 16}, S{8, 16}, S{8, 16}), mca: shapes(S{48, 16}), roundTripHF: true, roundTripMCA: true},
	{name: "qkv_mha", op: Op{Kind: KindQKV}, cfg: Config{NumAttentionHeads: 4, NumQueryGroups: 4, KVChannels: 3, HiddenSize: 5},
		hf: shapes(S{12, 5}, S{12, 5}, S{12, 5}), mca: shapes(S{36, 5}), roundTripHF: true, roundTripMCA: true},
	{name: "qkv_mqa", op: Op{Kind: KindQKV}, cfg: Config{NumAttentionHeads: 6, NumQueryGroups: 1, KVChannels: 2, HiddenSize: 4},
		hf: shapes(S{12, 4}, S{2, 4}, S{2, 4}), mca: shapes(S{16, 4}), roundTripHF: true, roundTripMCA: true},
	{name: "qkv_lora_rank", op: Op{Kind: KindQKV, HiddenSize: 3}, cfg: Config{NumAttentionHeads: 8, NumQueryGroups: 2, KVChannels: 4, HiddenSize: 16},
		hf: shapes(S{32, 3}, S{8, 3}, S{8, 3}), mca: shapes(S{48, 3}), roundTripHF: true, roundTripMCA: true},
	{name: "qkv_bias", op: Op{Kind: KindQKVBias}, cfg: Config{NumAttentionHeads: 8, NumQueryGroups: 2, KVChannels: 4, HiddenSize: 16},
		hf: shapes(S{32}, S{8}, S{8}), mca: shapes(S{48}), roundTripHF: true, roundTripMCA: true},
	{name: "gated_qkv_gqa", op: Op{Kind: KindGatedQKV}, cfg: Config{NumAttentionHeads: 8, NumQueryGroups: 2, KVChannels: 4, HiddenSize: 16},
		hf: shapes(S{64, 16}, S{8, 16}, S{8, 16}), mca: shapes(S{80, 16}), roundTripHF: true, roundTripMCA: true},
	{name: "gated_qkv_mha", op: Op{Kind: KindGatedQKV}, cfg: Config{NumAttentionHeads: 2, NumQueryGroups: 2, KVChannels: 3, HiddenSize: 4},
		hf: shapes(S{12, 4}, S{6, 4}, S{6, 4}), mca: shapes(S{24, 4}), roundTripHF: true, roundTripMCA: true},
	{name: "zero_centered_rmsnorm", op: Op{Kind: KindZeroCenteredRMSNorm}, hf: shapes(S{-1}), mca: shapes(S{-1}), norm: true},
	{name: "gdn_conv1d", op: Op{Kind: KindGDNConv1d}, cfg: gdnCfg,
		hf: shapes(S{20, 1, 4}), mca: []vshape{stackS(S{6, 1, 4}, S{6, 1, 4}, S{8, 1, 4})}, roundTripHF: true, roundTripMCA: true},
	{name: "next_gdn", op: Op{Kind: KindNextGDN}, cfg: gdnCfg,
		hf: shapes(S{28, 5}, S{8, 5}), mca: []vshape{stackS(S{6, 5}, S{6, 5}, S{8, 5}, S{8, 5}, S{4, 5}, S{4, 5})}, roundTripHF: true, roundTripMCA: true},
	{name: "next_gdn_rho1", op: Op{Kind: KindNextGDN}, cfg: Config{LinearNumKeyHeads: 3, LinearNumValueHeads: 3, LinearKeyHeadDim: 2, LinearValueHeadDim: 4, HiddenSize: 3},
		hf: shapes(S{36, 3}, S{6, 3}), mca: []vshape{stackS(S{6, 3}, S{6, 3}, S{12, 3}, S{12, 3}, S{3, 3}, S{3, 3})}, roundTripHF: true, roundTripMCA: true},
	{name: "qwen3_5_gdn", op: Op{Kind: KindQwen3_5GDN}, cfg: gdnCfg,
		hf: shapes(S{20, 5}, S{8, 5}, S{4, 5}, S{4, 5}), mca: []vshape{stackS(S{6, 5}, S{6, 5}, S{8, 5}, S{8, 5}, S{4, 5}, S{4, 5})}, roundTripHF: true, roundTripMCA: true},
	{name: "split_experts_transpose", op: Op{Kind: KindSplitExperts, Transpose: true}, cfg: Config{NumMoEExperts: 3},
		hf: shapes(S{3, 4, 6}), mca: shapes(S{6, 4}, S{6, 4}, S{6, 4}), roundTripHF: true, roundTripMCA: true},
	{name: "split_experts", op: Op{Kind: KindSplitExperts}, cfg: Config{NumMoEExperts: 3},
		hf: shapes(S{3, 6, 4}), mca: shapes(S{6, 4}, S{6, 4}, S{6, 4}), roundTripHF: true, roundTripMCA: true},
	{name: "split_stack_experts_transpose", op: Op{Kind: KindSplitStackExperts, Transpose: true}, cfg: Config{NumMoEExperts: 3},
		hf:  shapes(S{3, 6, 8}),
		mca: []vshape{stackS(S{4, 6}, S{4, 6}), stackS(S{4, 6}, S{4, 6}), stackS(S{4, 6}, S{4, 6})}, roundTripHF: true, roundTripMCA: true},
	{name: "split_stack_experts", op: Op{Kind: KindSplitStackExperts}, cfg: Config{NumMoEExperts: 3},
		hf:  shapes(S{3, 8, 6}),
		mca: []vshape{stackS(S{4, 6}, S{4, 6}), stackS(S{4, 6}, S{4, 6}), stackS(S{4, 6}, S{4, 6})}, roundTripHF: true, roundTripMCA: true},
	{name: "split_stack_experts_plain_mca", op: Op{Kind: KindSplitStackExperts, Transpose: true}, cfg: Config{NumMoEExperts: 2},
		mca: shapes(S{8, 6}, S{8, 6})},
}

var testDTypes = []tensor.DType{tensor.BF16, tensor.F16, tensor.F32}

// randBytes fills n elements of dt with random finite values (random bits
// with the exponent kept away from all-ones), so that no NaN payload games
// can blur a byte comparison.
func randBytes(r *rand.Rand, dt tensor.DType, n int64) []byte {
	es := dt.Size()
	b := make([]byte, int(n)*es)
	le := binary.LittleEndian
	for i := int64(0); i < n; i++ {
		o := int(i) * es
		switch dt {
		case tensor.BF16:
			le.PutUint16(b[o:], uint16(r.Uint32())&0xBFFF) // exponent MSB cleared
		case tensor.F16:
			le.PutUint16(b[o:], uint16(r.Uint32())&0xBFFF)
		case tensor.F32:
			le.PutUint32(b[o:], r.Uint32()&0xBFFFFFFF)
		case tensor.F64:
			le.PutUint64(b[o:], r.Uint64()&0xBFFFFFFFFFFFFFFF)
		default:
			for k := 0; k < es; k++ {
				b[o+k] = byte(r.Uint32())
			}
		}
	}
	return b
}

func randTensor(t testing.TB, r *rand.Rand, dt tensor.DType, shape tensor.Shape) tensor.Tensor {
	t.Helper()
	x, err := tensor.New(dt, shape, randBytes(r, dt, shape.NumElements()))
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// normInputs returns the norm test input for dt: every non-NaN 16-bit
// pattern for BF16/F16; random and special values for F32/F64.
func normInputs(t testing.TB, r *rand.Rand, dt tensor.DType) tensor.Tensor {
	t.Helper()
	var data []byte
	le := binary.LittleEndian
	switch dt {
	case tensor.BF16, tensor.F16:
		for h := 0; h < 1<<16; h++ {
			var f float32
			if dt == tensor.BF16 {
				f = tensor.BF16ToF32(uint16(h))
			} else {
				f = tensor.F16ToF32(uint16(h))
			}
			if f != f {
				continue
			}
			data = le.AppendUint16(data, uint16(h))
		}
	case tensor.F32:
		specials := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, 2, float32(math.Inf(1)), float32(math.Inf(-1)),
			math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1 << 24, 1<<24 + 2, 1 << 25, 3 << 23,
			math.Nextafter32(1, 0), math.Nextafter32(1, 2), math.Nextafter32(2, 3), 1e-8, -1e-8}
		for _, f := range specials {
			data = le.AppendUint32(data, math.Float32bits(f))
		}
		for i := 0; i < 4000; i++ {
			var f float32
			switch i % 4 {
			case 0:
				f = math.Float32frombits(r.Uint32() & 0xBFFFFFFF)
			case 1: // around ±1: catastrophic cancellation
				f = float32(1 + (r.Float64()-0.5)*1e-3)
			case 2: // large: w ± 1 rounds
				f = float32(r.Float64() * 1e9)
			default: // typical norm weights
				f = float32(r.NormFloat64())
			}
			data = le.AppendUint32(data, math.Float32bits(f))
		}
	case tensor.F64:
		for _, f := range []float64{0, 1, -1, math.Inf(1), 1 << 53, 1<<53 + 2, math.SmallestNonzeroFloat64, math.Nextafter(1, 0)} {
			data = le.AppendUint64(data, math.Float64bits(f))
		}
		for i := 0; i < 1000; i++ {
			data = le.AppendUint64(data, r.Uint64()&0xBFFFFFFFFFFFFFFF)
		}
	}
	x, err := tensor.New(dt, tensor.Shape{int64(len(data) / dt.Size())}, data)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// makeInputs builds random values of the given shapes.
func makeInputs(t testing.TB, r *rand.Rand, c opCase, dt tensor.DType, shapes []vshape) []Value {
	t.Helper()
	var in []Value
	for _, s := range shapes {
		switch {
		case c.norm:
			in = append(in, TensorValue(normInputs(t, r, dt)))
		case s.stacked != nil:
			var comps []tensor.Tensor
			for _, cs := range s.stacked {
				comps = append(comps, randTensor(t, r, dt, cs))
			}
			in = append(in, StackedValue(tensor.Stacked{Components: comps, Dim: s.dim}))
		default:
			in = append(in, TensorValue(randTensor(t, r, dt, s.shape)))
		}
	}
	return in
}

// valuesEqual compares two value lists: same structure, dtypes, shapes and
// bytes.
func valuesEqual(a, b []Value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].IsStacked() != b[i].IsStacked() {
			return false
		}
		if a[i].IsStacked() {
			sa, sb := a[i].Stacked, b[i].Stacked
			if sa.Dim != sb.Dim || len(sa.Components) != len(sb.Components) {
				return false
			}
			for k := range sa.Components {
				if !sa.Components[k].Equal(sb.Components[k]) {
					return false
				}
			}
			continue
		}
		if !a[i].Tensor.Equal(b[i].Tensor) {
			return false
		}
	}
	return true
}
