package exec_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/internal/torchtest"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/stdlib"
)

// testdata/allops.rolltpl holds templates that reach the op kinds the
// stdlib does not use; these tests run them end to end.

var (
	allopsOnce sync.Once
	allopsProg *ir.Program
	allopsErr  error
)

func allopsModel(t testing.TB, name string) *exec.Model {
	t.Helper()
	allopsOnce.Do(func() {
		res := compiler.Compile([]string{"testdata/allops.rolltpl"}, compiler.Options{Lib: stdlib.Templates()})
		if res.Diags.HasErrors() {
			allopsErr = fmt.Errorf("allops.rolltpl: %v", res.Diags)
		}
		allopsProg = res.Program
	})
	if allopsErr != nil {
		t.Fatal(allopsErr)
	}
	m, err := exec.NewModel(allopsProg, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// gdnSynth returns a checkpoint for the allops templates.
func gdnSynth(modelType string, dt tensor.DType) synth {
	const (
		V, H, F, E     = 256, 64, 32, 4
		nh, ng, d      = 8, 2, 16
		nk, nv, dk, dv = 2, 4, 8, 8
		QK, VV         = nk * dk, nv * dv
		K              = 4
	)
	var specs []safetensors.Spec
	add := func(name string, shape ...int64) {
		specs = append(specs, safetensors.Spec{Name: name, DType: dt, Shape: tensor.Shape(shape)})
	}
	cfg := map[string]any{
		"model_type": modelType, "vocab_size": V, "hidden_size": H, "intermediate_size": 128,
		"num_hidden_layers": 2, "num_attention_heads": nh, "num_key_value_heads": ng, "head_dim": d,
		"rms_norm_eps": 1e-06, "rope_theta": 10000000, "max_position_embeddings": 4096, "tie_word_embeddings": false,
		"num_experts": E, "moe_intermediate_size": F, "num_experts_per_tok": 2, "decoder_sparse_step": 1,
		"router_aux_loss_coef": 0.001, "linear_conv_kernel_dim": K, "linear_key_head_dim": dk, "linear_value_head_dim": dv,
		"linear_num_key_heads": nk, "linear_num_value_heads": nv, "torch_dtype": torchDType(dt),
	}
	switch modelType {
	case "allops_next":
		add("model.embed_tokens.weight", V, H)
		add("lm_head.weight", V, H)
		add("model.norm.weight", H)
		for l := range 2 {
			p := fmt.Sprintf("model.layers.%d.", l)
			add(p+"input_layernorm.weight", H)
			add(p+"post_attention_layernorm.weight", H)
			if l == 0 {
				add(p+"linear_attn.in_proj_qkvz.weight", 2*QK+2*VV, H)
				add(p+"linear_attn.in_proj_ba.weight", 2*nv, H)
				add(p+"linear_attn.conv1d.weight", 2*QK+VV, 1, K)
				add(p+"linear_attn.norm.weight", dv)
			} else {
				add(p+"self_attn.q_proj.weight", nh*2*d, H)
				add(p+"self_attn.k_proj.weight", ng*d, H)
				add(p+"self_attn.v_proj.weight", ng*d, H)
			}
			add(p+"mlp.gate.weight", E, H)
			add(p+"mlp.experts.gate_up_proj", E, H, 2*F)
			add(p+"mlp.experts.down_proj", E, F, H)
			add(p+"mlp.shared_expert.down_a.weight", H, 16)
			add(p+"mlp.shared_expert.down_b.weight", H, 16)
		}
		add("mtp.fc.weight", H, 2*H)
		add("mtp.norm.weight", H)
	case "allops_35":
		add("model.language_model.embed_tokens.weight", V, H)
		add("lm_head.weight", V, H)
		add("model.language_model.norm.weight", H)
		for l := range 2 {
			p := fmt.Sprintf("model.language_model.layers.%d.", l)
			add(p+"input_layernorm.weight", H)
			add(p+"post_attention_layernorm.weight", H)
			add(p+"linear_attn.in_proj_qkv.weight", 2*QK+VV, H)
			add(p+"linear_attn.in_proj_z.weight", VV, H)
			add(p+"linear_attn.in_proj_b.weight", nv, H)
			add(p+"linear_attn.in_proj_a.weight", nv, H)
			add(p+"linear_attn.conv1d.weight", 2*QK+VV, 1, K)
			add(p+"mlp.gate.weight", E, H)
			add(p+"mlp.experts.gate_up_proj", E, 2*F, H)
			add(p+"mlp.experts.down_proj", E, H, F)
		}
	case "allops_copy":
		add("model.embed_tokens.weight", V, H)
		add("lm_head.weight", V, H)
		add("model.norm.weight", H)
		for l := range 2 {
			add(fmt.Sprintf("model.layers.%d.input_layernorm.weight", l), H)
		}
		cfg["num_hidden_layers"] = 2
	}
	return synth{modelType: modelType, config: cfg, tensors: specs}
}

// writeGDN writes s with random bytes, except that zero-centred norm
// weights get values in [1, 2), where w - 1 + 1 == w exactly (real norm
// weights are near 1; random bits would include NaNs, whose bf16 patterns
// torch does not reproduce).
func writeGDN(t *testing.T, s synth, dir string, shards int, seed uint64) {
	t.Helper()
	s.write(t, dir, shards, seed)
	// Rewrite with controlled norm values.
	rng := rand.New(rand.NewPCG(seed, 11))
	data := map[string][]byte{}
	for _, sp := range s.tensors {
		n := sp.Shape.NumElements()
		b := make([]byte, n*int64(sp.DType.Size()))
		if strings.HasSuffix(sp.Name, "linear_attn.norm.weight") {
			for i := range n {
				v := 1 + float32(rng.IntN(128))/128
				switch sp.DType {
				case tensor.BF16:
					binary.LittleEndian.PutUint16(b[2*i:], tensor.F32ToBF16(v))
				case tensor.F16:
					binary.LittleEndian.PutUint16(b[2*i:], tensor.F32ToF16(v))
				case tensor.F32:
					binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
				}
			}
		} else {
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
		}
		data[sp.Name] = b
	}
	writeShards(t, dir, s.tensors, shards, func(name string) []byte { return data[name] })
}

func TestRoundTripAllOps(t *testing.T) {
	for _, mt := range []string{"allops_next", "allops_35"} {
		for _, dt := range []tensor.DType{tensor.BF16, tensor.F32} {
			t.Run(mt+"/"+dt.String(), func(t *testing.T) {
				dir := t.TempDir()
				src := filepath.Join(dir, "hf")
				writeGDN(t, gdnSynth(mt, dt), src, 2, 3)
				m := allopsModel(t, mt)
				mca := filepath.Join(dir, "mca")
				r, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{})
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range r.Plan.Problems {
					t.Errorf("unexpected problem: %v", p.Error())
				}
				checkMCA(t, mca, r.Plan)
				back := filepath.Join(dir, "back")
				if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
					t.Fatal(err)
				}
				dropped := map[string]bool{}
				for _, st := range r.Plan.Steps {
					if st.Dropped {
						for _, i := range st.Inputs {
							dropped[r.Plan.Inputs[i].Name] = true
						}
					}
				}
				if mt == "allops_next" && (!dropped["mtp.fc.weight"] || !dropped["mtp.norm.weight"]) {
					t.Errorf("mtp weights not dropped: %v", dropped)
				}
				for name := range dropped {
					r.Plan.Ignored = append(r.Plan.Ignored, indexOf(r.Plan, name))
				}
				compareCheckpoints(t, src, back, r.Plan)
			})
		}
	}
}

func indexOf(p *exec.Plan, name string) int {
	for i, in := range p.Inputs {
		if in.Name == name {
			return i
		}
	}
	return -1
}

func TestTorchRecomputeAllOps(t *testing.T) { torchtest.Run(t, testTorchRecomputeAllOps, "numpy") }

func testTorchRecomputeAllOps(t *testing.T, py string) {
	dir := t.TempDir()
	var cases []torchCase
	for _, dt := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F32} {
		for i, mt := range []string{"allops_next", "allops_35", "allops_copy"} {
			id := mt + "/" + dt.String()
			hf := filepath.Join(dir, id, "hf")
			mca := filepath.Join(dir, id, "mca")
			writeGDN(t, gdnSynth(mt, dt), hf, 1+i%2, uint64(i)+uint64(dt)*10)
			r, err := exec.ConvertHFToMCA(context.Background(), allopsModel(t, mt), hf, mca, exec.Options{})
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			cases = append(cases, manifestCase(id, hf, mca, r.Plan))
		}
	}
	runRecompute(t, py, dir, cases)
}
