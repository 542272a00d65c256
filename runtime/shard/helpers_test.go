package shard

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// rollDefault is ROLL's default_dist_config (with its LoRA lists).
func rollDefault() Classification {
	return Classification{
		PreProcess:  []string{"embedding.word_embeddings.weight"},
		PostProcess: []string{"output_layer.weight", "decoder.final_layernorm.weight"},
		Duplicated: []string{
			".self_attention.linear_qkv.layer_norm_weight", ".mlp.linear_fc1.layer_norm_weight",
			"decoder.final_layernorm.weight", ".mlp.router.weight", ".pre_mlp_layernorm.weight",
			".self_attention.q_layernorm.weight", ".self_attention.k_layernorm.weight",
			".self_attention.linear_proj.lora_B.weight", ".self_attention.linear_qkv.lora_A.weight",
			".mlp.linear_fc1.lora_A.weight", ".linear_fc1.lora_A.weight", ".mlp.linear_fc2.lora_B.weight",
			".linear_fc2.lora_B.weight",
		},
		Column: []string{
			"embedding.word_embeddings.weight", "output_layer.weight", ".self_attention.linear_qkv.weight",
			".mlp.linear_fc1.weight", ".linear_fc1.weight", ".self_attention.linear_qkv.lora_B.weight",
			".mlp.linear_fc1.lora_B.weight", ".linear_fc1.lora_B.weight",
		},
		Row: []string{
			".self_attention.linear_proj.weight", ".mlp.linear_fc2.weight", ".linear_fc2.weight",
			".self_attention.linear_proj.lora_A.weight", ".mlp.linear_fc2.lora_A.weight", ".linear_fc2.lora_A.weight",
		},
		Swiglu:        []string{".mlp.linear_fc1.weight", ".linear_fc1.weight", ".mlp.linear_fc1.lora_B.weight", ".linear_fc1.lora_B.weight"},
		GroupedColumn: []MapEntry{{".linear_fc1.weight", ".mlp.experts.weight1"}},
		GroupedRow:    []MapEntry{{".linear_fc2.weight", ".mlp.experts.weight2"}},
		TEToLocal: []MapEntry{
			{".self_attention.linear_qkv.layer_norm_weight", ".input_layernorm.weight"},
			{".mlp.linear_fc1.layer_norm_weight", ".pre_mlp_layernorm.weight"},
		},
	}
}

func rollSharedMoE() Classification {
	return Classification{
		Duplicated: []string{".mlp.shared_experts.gate_weight", ".mlp.shared_experts.linear_fc1.lora_A.weight", ".mlp.shared_experts.linear_fc2.lora_B.weight"},
		Row:        []string{".mlp.shared_experts.linear_fc2.weight", ".mlp.shared_experts.linear_fc2.lora_A.weight"},
		Column:     []string{".mlp.shared_experts.linear_fc1.lora_B.weight"},
		Swiglu:     []string{".mlp.shared_experts.linear_fc1.weight", ".mlp.shared_experts.linear_fc1.lora_B.weight"},
		TEToLocal:  []MapEntry{{".pre_mlp_layernorm.weight", ".pre_mlp_layernorm.weight"}},
	}
}

func rollGDN() Classification {
	return Classification{
		Duplicated: []string{".self_attention.out_norm.weight", ".self_attention.in_proj.layer_norm_weight"},
		Column:     []string{".self_attention.dt_bias", ".self_attention.A_log"},
		Row:        []string{".self_attention.out_proj.weight"},
		GDN:        []string{".self_attention.in_proj.weight", ".self_attention.conv1d.weight"},
	}
}

func rollMTP() Classification {
	return Classification{
		Duplicated: []string{".enorm.weight", ".hnorm.weight", ".final_layernorm.weight"},
		Column:     []string{".eh_proj.weight"},
	}
}

// testClassification is qwen3_5_moe's composition without the vision
// tower: default ⊕ shared_moe ⊕ gdn ⊕ mtp.
func testClassification() Classification {
	return rollDefault().Merge(rollSharedMoE()).Merge(rollGDN()).Merge(rollMTP())
}

// denseClassification is default ⊕ gdn ⊕ mtp (qwen3_5 without vision).
func denseClassification() Classification {
	return rollDefault().Merge(rollGDN()).Merge(rollMTP())
}

// Sizes of the test model.
const (
	mH     = 8  // hidden
	mVocab = 16 // vocabulary
	mQKV   = 24 // fused qkv rows
	mAttn  = 16 // attention output (linear_proj input)
	mFFN   = 8  // dense ffn
	mEFFN  = 4  // expert and shared-expert ffn
	mNK    = 4  // linear_num_key_heads
	mDK    = 2  // linear_key_head_dim
	mNV    = 4  // linear_num_value_heads
	mDV    = 2  // linear_value_head_dim
	mConvK = 3  // conv1d kernel
)

type modelOpts struct {
	layers        int
	experts       int  // 0: dense
	mtp           bool // one MTP layer
	tied          bool
	gdn           bool // layer 0 uses Gated-DeltaNet attention
	megatronLlama bool // norm names of megatron-llama-core
	noShared      bool // MoE layers without shared experts (mixtral)
	allMoE        bool // every layer is an MoE layer (else from layer 2 on)
}

// gw is a global weight of the test model.
type gw struct {
	name string
	t    tensor.Tensor
	st   *tensor.Stacked
}

func (w gw) full() tensor.Tensor {
	if w.st != nil {
		t, err := w.st.Concat()
		if err != nil {
			panic(err)
		}
		return t
	}
	return w.t
}

func (w gw) meta() GlobalTensor {
	t := w.full()
	gt := GlobalTensor{Name: w.name, DType: t.DType, Shape: t.Shape}
	if w.st != nil {
		_, gt.Components = stackedShape(*w.st)
	}
	return gt
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 7)) }

type modelGen struct {
	rng *rand.Rand
	out []gw
}

func (g *modelGen) rand(dt tensor.DType, shape ...int64) tensor.Tensor {
	n := tensor.Shape(shape).NumElements()
	es := dt.Size()
	buf := make([]byte, n*int64(es))
	for i := int64(0); i < n; i++ {
		f := float32(g.rng.NormFloat64())
		switch dt {
		case tensor.BF16:
			binary.LittleEndian.PutUint16(buf[i*2:], tensor.F32ToBF16(f))
		case tensor.F16:
			binary.LittleEndian.PutUint16(buf[i*2:], tensor.F32ToF16(f))
		case tensor.F32:
			binary.LittleEndian.PutUint32(buf[i*4:], math.Float32bits(f))
		default:
			panic(dt)
		}
	}
	t, err := tensor.New(dt, shape, buf)
	if err != nil {
		panic(err)
	}
	return t
}

func (g *modelGen) add(name string, shape ...int64) {
	g.out = append(g.out, gw{name: name, t: g.rand(tensor.BF16, shape...)})
}

func (g *modelGen) addF32(name string, shape ...int64) {
	g.out = append(g.out, gw{name: name, t: g.rand(tensor.F32, shape...)})
}

func (g *modelGen) stacked(name string, shapes ...[]int64) {
	ts := make([]tensor.Tensor, len(shapes))
	for i, s := range shapes {
		ts[i] = g.rand(tensor.BF16, s...)
	}
	st, err := tensor.NewStacked(0, ts...)
	if err != nil {
		panic(err)
	}
	g.out = append(g.out, gw{name: name, st: &st})
}

// makeModel returns the global MCA weights of a small model exercising
// every class: column, row, duplicated (some F32), swiglu, gdn, experts,
// shared experts, MTP.
func makeModel(o modelOpts, seed uint64) []gw {
	g := &modelGen{rng: newRand(seed)}
	g.add(EmbeddingName, mVocab, mH)
	attn := func(p string) {
		ln := p + ".self_attention.linear_qkv.layer_norm_weight"
		if o.megatronLlama {
			ln = p + ".input_layernorm.weight"
		}
		g.add(ln, mH)
		g.add(p+".self_attention.linear_qkv.weight", mQKV, mH)
		g.add(p+".self_attention.linear_qkv.bias", mQKV)
		g.add(p+".self_attention.q_layernorm.weight", 2)
		g.add(p+".self_attention.linear_proj.weight", mH, mAttn)
	}
	gdn := func(p string) {
		qk, v := int64(mNK*mDK), int64(mNV*mDV)
		g.add(p+".self_attention.in_proj.layer_norm_weight", mH)
		g.stacked(p+".self_attention.in_proj.weight", []int64{qk, mH}, []int64{qk, mH}, []int64{v, mH}, []int64{v, mH}, []int64{mNV, mH}, []int64{mNV, mH})
		g.stacked(p+".self_attention.conv1d.weight", []int64{qk, 1, mConvK}, []int64{qk, 1, mConvK}, []int64{v, 1, mConvK})
		g.addF32(p+".self_attention.A_log", mNV)
		g.add(p+".self_attention.dt_bias", mNV)
		g.add(p+".self_attention.out_norm.weight", mDV)
		g.add(p+".self_attention.out_proj.weight", mH, v)
	}
	dense := func(p string) {
		ln := p + ".mlp.linear_fc1.layer_norm_weight"
		if o.megatronLlama {
			ln = p + ".pre_mlp_layernorm.weight"
		}
		g.add(ln, mH)
		g.stacked(p+".mlp.linear_fc1.weight", []int64{mFFN, mH}, []int64{mFFN, mH})
		g.add(p+".mlp.linear_fc2.weight", mH, mFFN)
	}
	moe := func(p, expertPrefix string) {
		g.add(p+".pre_mlp_layernorm.weight", mH)
		g.addF32(p+".mlp.router.weight", int64(o.experts), mH)
		for e := range o.experts {
			x := fmt.Sprintf("%s%d", expertPrefix, e)
			g.stacked(x+".linear_fc1.weight", []int64{mEFFN, mH}, []int64{mEFFN, mH})
			g.add(x+".linear_fc2.weight", mH, mEFFN)
		}
		if o.noShared {
			return
		}
		g.stacked(p+".mlp.shared_experts.linear_fc1.weight", []int64{mEFFN, mH}, []int64{mEFFN, mH})
		g.add(p+".mlp.shared_experts.linear_fc2.weight", mH, mEFFN)
		g.add(p+".mlp.shared_experts.gate_weight", 1, mH)
	}
	for l := range o.layers {
		p := fmt.Sprintf("decoder.layers.%d", l)
		if l == 0 && o.gdn {
			gdn(p)
		} else {
			attn(p)
		}
		if (l >= 2 || o.allMoE) && o.experts > 0 {
			moe(p, p+".mlp.experts.local_experts.")
		} else {
			dense(p)
		}
	}
	g.addF32("decoder.final_layernorm.weight", mH)
	if !o.tied {
		g.add(OutputLayerName, mVocab, mH)
	}
	if o.mtp {
		p := "mtp.layers.0"
		g.add(p+".enorm.weight", mH)
		g.add(p+".hnorm.weight", mH)
		g.add(p+".eh_proj.weight", mH, 2*mH)
		attn(p + ".mtp_model_layer")
		if o.experts > 0 {
			moe(p+".mtp_model_layer", p+".mtp_model_layer.mlp.experts.local_experts.")
		} else {
			dense(p + ".mtp_model_layer")
		}
		g.add(p+".final_layernorm.weight", mH)
	}
	return g.out
}

// layoutFor fills the model facts of a layout from the model options.
func layoutFor(l Layout, o modelOpts) Layout {
	l.NumLayers = o.layers
	l.NumExperts = o.experts
	if o.mtp {
		l.MTPNumLayers = 1
	}
	l.TiedEmbeddings = o.tied
	l.Swiglu = true
	l.MegatronLlama = o.megatronLlama
	l.LinearNumKeyHeads, l.LinearNumValueHeads, l.LinearKeyHeadDim, l.LinearValueHeadDim = mNK, mNV, mDK, mDV
	return l
}

// rankTensor is one assembled local tensor.
type rankTensor struct {
	LocalRef
	dtype tensor.DType
	shape tensor.Shape
	data  []byte
	fill  int64 // bytes written
}

// splitAll splits every weight of the model and assembles the pieces into
// contiguous local tensors, checking that pieces cover their tensors
// exactly.
func splitAll(t testing.TB, s *Sharder, model []gw) []*rankTensor {
	t.Helper()
	byRef := map[LocalRef]*rankTensor{}
	var order []*rankTensor
	for _, w := range model {
		var pieces []Piece
		var err error
		if w.st != nil {
			pieces, err = s.SplitStacked(w.name, *w.st)
		} else {
			pieces, err = s.Split(w.name, w.t)
		}
		if err != nil {
			t.Fatalf("split %s: %v", w.name, err)
		}
		for _, p := range pieces {
			lr := LocalRef{p.Rank, p.Stage, p.Name}
			rt, ok := byRef[lr]
			if !ok {
				rt = &rankTensor{LocalRef: lr, dtype: p.Data.DType, shape: p.Shape,
					data: make([]byte, p.Shape.NumElements()*int64(p.Data.DType.Size()))}
				byRef[lr] = rt
				order = append(order, rt)
			}
			if !rt.shape.Equal(p.Shape) {
				t.Fatalf("%v %s: shapes %v and %v", lr.Rank, lr.Name, rt.shape, p.Shape)
			}
			end := p.Offset + p.Data.Len()
			if end > int64(len(rt.data)) {
				t.Fatalf("%v %s: piece [%d, %d) beyond %d bytes", lr.Rank, lr.Name, p.Offset, end, len(rt.data))
			}
			p.Data.AppendTo(rt.data[p.Offset:p.Offset])
			rt.fill += p.Data.Len()
		}
	}
	for _, rt := range order {
		if rt.fill != int64(len(rt.data)) {
			t.Fatalf("%v %s: pieces cover %d of %d bytes", rt.Rank, rt.Name, rt.fill, len(rt.data))
		}
	}
	return order
}

func (rt *rankTensor) tensor() tensor.Tensor {
	t, err := tensor.New(rt.dtype, rt.shape, rt.data)
	if err != nil {
		panic(err)
	}
	return t
}

// rankFiles describes assembled tensors as PlanRead input.
func rankFiles(l Layout, rts []*rankTensor) []RankFile {
	files := map[Rank]*RankFile{}
	for _, r := range Ranks(l) {
		files[r] = &RankFile{Rank: r, Keys: StageKeys(l)}
	}
	for _, rt := range rts {
		f := files[rt.Rank]
		f.Tensors = append(f.Tensors, LocalTensor{Stage: rt.Stage, Name: rt.Name, DType: rt.dtype, Shape: rt.shape})
	}
	out := make([]RankFile, 0, len(files))
	for _, r := range Ranks(l) {
		out = append(out, *files[r])
	}
	return out
}

// listing is a compact, sortable description of where a tensor went.
type listing struct {
	Dir, Key, Name string
	Shape          string
}

func listPieces(l Layout, ps []Piece) []listing {
	var out []listing
	seen := map[listing]bool{}
	for _, p := range ps {
		x := listing{RankDir(p.Rank, l), StageKey(p.Stage, l), p.Name, p.Shape.String()}
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Dir != b.Dir {
			return a.Dir < b.Dir
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		return a.Name < b.Name
	})
	return out
}
