package exec_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// Phi-3 stores q/k/v fused in self_attn.qkv_proj.weight and gate/up in
// mlp.gate_up_proj.weight (issue 10, acceptance 1). Its template is the
// llama template with two composed ops: the fused tensors split by sizes
// from the config, feeding qkv and stack.

// phi3Template returns the Phi-3 template: llama's, with the q/k/v qkv op
// and the gate/up stack op replaced by ops reading the fused tensors
// through tensor steps whose sizes are expressions over the MCA config.
func phi3Template(t testing.TB) *ir.Program {
	t.Helper()
	prog := stdlibProgram(t)
	llama := prog.Template("llama")
	tp := *llama
	tp.Name = "phi3"
	tp.Ops = nil
	mca := func(key string) *ir.Expr {
		return &ir.Expr{Kind: ir.ExprField, Name: key, Args: []*ir.Expr{{Kind: ir.ExprRef, Name: "mca"}}}
	}
	hf := func(key string) *ir.Expr {
		return &ir.Expr{Kind: ir.ExprField, Name: key, Args: []*ir.Expr{{Kind: ir.ExprRef, Name: "hf"}}}
	}
	bin := func(op string, a, b *ir.Expr) *ir.Expr {
		return &ir.Expr{Kind: ir.ExprBinary, Op: op, Args: []*ir.Expr{a, b}}
	}
	lit := func(n string) *ir.Expr { return &ir.Expr{Kind: ir.ExprLit, Lit: ir.Value{Kind: ir.Int, Text: n}} }
	list := func(xs ...*ir.Expr) *ir.Expr { return &ir.Expr{Kind: ir.ExprList, Args: xs} }
	leaf := &ir.TensorExpr{HF: 0}
	for _, o := range llama.Ops {
		switch o.Kind {
		case "qkv":
			// split(qkv_proj, 0, [nh*d, ng*d, ng*d]) feeding qkv; the
			// heads written over hf.*, kv_channels over mca.*.
			q := bin("*", hf("num_attention_heads"), mca("kv_channels"))
			kv := bin("*", hf("num_key_value_heads"), mca("kv_channels"))
			c := *o
			c.HF = []ir.Name{{Value: ".self_attn.qkv_proj.weight"}}
			c.Inputs = []*ir.TensorExpr{{HF: -1, Step: "split", Operands: []*ir.TensorExpr{leaf},
				Args: map[string]*ir.Expr{"dim": lit("0"), "sizes": list(q, kv, kv)}}}
			tp.Ops = append(tp.Ops, &c)
		case "stack":
			// split(gate_up_proj, 0, [ffn_hidden_size] * 2) feeding stack.
			c := *o
			c.HF = []ir.Name{{Value: ".mlp.gate_up_proj.weight"}}
			c.Inputs = []*ir.TensorExpr{{HF: -1, Step: "split", Operands: []*ir.TensorExpr{leaf},
				Args: map[string]*ir.Expr{"dim": lit("0"), "sizes": bin("*", list(mca("ffn_hidden_size")), lit("2"))}}}
			tp.Ops = append(tp.Ops, &c)
		default:
			tp.Ops = append(tp.Ops, o)
		}
	}
	out := *prog
	out.Templates = append(append([]*ir.Template(nil), prog.Templates...), &tp)
	return &out
}

// phi3Dims are the sizes of a Phi-3 checkpoint.
type phi3Dims struct {
	name                                     string
	hidden, heads, kv, headDim, inter, vocab int64
	layers                                   int
}

// fused reports the HF tensors of one layer in llama's split naming with
// their shapes, and how the Phi-3 names fuse them.
func (d phi3Dims) specs(dt tensor.DType) (llama []safetensors.Spec, phi3 []safetensors.Spec, fuse map[string][]string) {
	add := func(s *[]safetensors.Spec, name string, shape ...int64) {
		*s = append(*s, safetensors.Spec{Name: name, DType: dt, Shape: shape})
	}
	fuse = map[string][]string{}
	add(&llama, "model.embed_tokens.weight", d.vocab, d.hidden)
	add(&phi3, "model.embed_tokens.weight", d.vocab, d.hidden)
	for l := range d.layers {
		p := "model.layers." + strconv.Itoa(l)
		for _, s := range []*[]safetensors.Spec{&llama, &phi3} {
			add(s, p+".input_layernorm.weight", d.hidden)
			add(s, p+".post_attention_layernorm.weight", d.hidden)
			add(s, p+".self_attn.o_proj.weight", d.hidden, d.heads*d.headDim)
			add(s, p+".mlp.down_proj.weight", d.hidden, d.inter)
		}
		add(&llama, p+".self_attn.q_proj.weight", d.heads*d.headDim, d.hidden)
		add(&llama, p+".self_attn.k_proj.weight", d.kv*d.headDim, d.hidden)
		add(&llama, p+".self_attn.v_proj.weight", d.kv*d.headDim, d.hidden)
		add(&llama, p+".mlp.gate_proj.weight", d.inter, d.hidden)
		add(&llama, p+".mlp.up_proj.weight", d.inter, d.hidden)
		add(&phi3, p+".self_attn.qkv_proj.weight", (d.heads+2*d.kv)*d.headDim, d.hidden)
		add(&phi3, p+".mlp.gate_up_proj.weight", 2*d.inter, d.hidden)
		fuse[p+".self_attn.qkv_proj.weight"] = []string{p + ".self_attn.q_proj.weight", p + ".self_attn.k_proj.weight", p + ".self_attn.v_proj.weight"}
		fuse[p+".mlp.gate_up_proj.weight"] = []string{p + ".mlp.gate_proj.weight", p + ".mlp.up_proj.weight"}
	}
	add(&llama, "model.norm.weight", d.hidden)
	add(&phi3, "model.norm.weight", d.hidden)
	add(&llama, "lm_head.weight", d.vocab, d.hidden)
	add(&phi3, "lm_head.weight", d.vocab, d.hidden)
	return llama, phi3, fuse
}

// config is a Phi-3 config.json (the keys of microsoft/Phi-3-mini-4k-instruct
// and Phi-3-medium-4k-instruct) for d, as model type modelType.
func (d phi3Dims) config(modelType string) []byte {
	arch := "Phi3ForCausalLM"
	if modelType == "llama" {
		arch = "LlamaForCausalLM"
	}
	cfg := map[string]any{
		"architectures": []string{arch}, "model_type": modelType, "attention_bias": false,
		"attention_dropout": 0.0, "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 32000,
		"hidden_act": "silu", "hidden_size": d.hidden, "initializer_range": 0.02,
		"intermediate_size": d.inter, "max_position_embeddings": 4096, "num_attention_heads": d.heads,
		"num_hidden_layers": d.layers, "num_key_value_heads": d.kv, "original_max_position_embeddings": 4096,
		"pad_token_id": 32000, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": nil,
		"rope_theta": 10000.0, "sliding_window": 2047, "tie_word_embeddings": false,
		"torch_dtype": "bfloat16", "transformers_version": "4.40.2", "use_cache": true, "vocab_size": d.vocab,
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return b
}

// writePhi3Pair writes the same random weights twice: as a Phi-3
// checkpoint with fused tensors and as a llama checkpoint with q/k/v and
// gate/up apart.
func writePhi3Pair(t *testing.T, d phi3Dims, dt tensor.DType, phiDir, llamaDir string) {
	t.Helper()
	llamaSpecs, phiSpecs, fuse := d.specs(dt)
	rng := rand.New(rand.NewPCG(uint64(d.hidden), uint64(d.kv)))
	data := map[string][]byte{}
	for _, sp := range llamaSpecs {
		b := make([]byte, sp.Shape.NumElements()*int64(dt.Size()))
		for i := 0; i+8 <= len(b); i += 8 {
			v := rng.Uint64() & 0xBFFF_BFFF_BFFF_BFFF // no NaN/Inf bit games
			for k := range 8 {
				b[i+k] = byte(v >> (8 * k))
			}
		}
		data[sp.Name] = b
	}
	for _, dir := range []string{phiDir, llamaDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(phiDir, "config.json"), d.config("phi3"))
	writeFile(t, filepath.Join(llamaDir, "config.json"), d.config("llama"))
	writeShards(t, llamaDir, llamaSpecs, 2, func(name string) []byte { return data[name] })
	writeShards(t, phiDir, phiSpecs, 2, func(name string) []byte {
		parts, ok := fuse[name]
		if !ok {
			return data[name]
		}
		var b []byte
		for _, p := range parts {
			b = append(b, data[p]...)
		}
		return b
	})
}

// phi3Configs are Phi-3-mini (MHA) and Phi-3-medium (GQA): their real
// attention geometry and hidden size, with two layers and a small vocab.
// The intermediate size is cut to keep the test light unless
// ROLLTPL_LARGE is set (then it is the real 8192 and 17920).
func phi3Configs() []phi3Dims {
	mini := phi3Dims{name: "mini", hidden: 3072, heads: 32, kv: 32, headDim: 96, inter: 8192, vocab: 512, layers: 2}
	medium := phi3Dims{name: "medium", hidden: 5120, heads: 40, kv: 10, headDim: 128, inter: 17920, vocab: 512, layers: 2}
	if os.Getenv("ROLLTPL_LARGE") == "" {
		mini.inter, medium.inter = 1024, 1280
	}
	return []phi3Dims{mini, medium}
}

// rankTensors lists the tensors of every rank file under an MCA
// directory, by rank directory, in file order.
func rankTensors(t *testing.T, dir string) map[string][]*torchsave.Tensor {
	t.Helper()
	out := map[string][]*torchsave.Tensor{}
	for _, p := range rankFiles(t, dir) {
		f, err := torchsave.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if err := f.VerifyCRC(); err != nil {
			t.Error(err)
		}
		out[filepath.Base(filepath.Dir(p))] = f.Tensors()
	}
	return out
}

// TestPhi3Fused converts real-shaped Phi-3 checkpoints (fused qkv_proj
// and gate_up_proj; MHA and GQA) HF -> MCA at TP1, TP2 and TP2+PP2 and
// requires exactly the tensors (names, dtypes, shapes, bytes, order) the
// stdlib llama template writes from the same weights stored apart; then
// back to HF, bit for bit under the fused names.
func TestPhi3Fused(t *testing.T) {
	prog := phi3Template(t)
	phi, err := exec.NewModel(prog, "phi3", nil)
	if err != nil {
		t.Fatal(err)
	}
	llama := stdlibModel(t, "llama")
	for _, d := range phi3Configs() {
		t.Run(d.name, func(t *testing.T) {
			dir := t.TempDir()
			phiSrc, llamaSrc := filepath.Join(dir, "phi3"), filepath.Join(dir, "llama")
			writePhi3Pair(t, d, tensor.BF16, phiSrc, llamaSrc)
			for _, l := range []struct {
				name   string
				layout exec.Layout
			}{{"tp1", exec.Layout{}}, {"tp2", exec.Layout{TP: 2}}, {"tp2pp2", exec.Layout{TP: 2, PP: 2}}} {
				t.Run(l.name, func(t *testing.T) {
					out := filepath.Join(dir, l.name)
					r, err := exec.ConvertHFToMCA(context.Background(), phi, phiSrc, filepath.Join(out, "phi3"), exec.Options{Layout: l.layout})
					if err != nil {
						t.Fatalf("phi3 HF -> MCA: %v", err)
					}
					if _, err := exec.ConvertHFToMCA(context.Background(), llama, llamaSrc, filepath.Join(out, "llama"), exec.Options{Layout: l.layout}); err != nil {
						t.Fatalf("llama HF -> MCA: %v", err)
					}
					got, want := rankTensors(t, filepath.Join(out, "phi3")), rankTensors(t, filepath.Join(out, "llama"))
					if len(got) != len(want) || len(got) == 0 {
						t.Fatalf("%d rank files, llama wrote %d", len(got), len(want))
					}
					n := 0
					for rank, wts := range want {
						gts := got[rank]
						if len(gts) != len(wts) {
							t.Errorf("%s: %d tensors, llama wrote %d", rank, len(gts), len(wts))
							continue
						}
						for i, w := range wts {
							g := gts[i]
							if g.Name != w.Name || g.DType != w.DType || !g.Shape.Equal(w.Shape) || !bytes.Equal(g.Data, w.Data) {
								t.Errorf("%s tensor %d: %s %v%v, llama wrote %s %v%v (or the bytes differ)", rank, i, g.Name, g.DType, g.Shape, w.Name, w.DType, w.Shape)
							}
							if strings.Contains(g.Name, "linear_qkv.weight") || strings.Contains(g.Name, "linear_fc1.weight") {
								n++
							}
						}
					}
					if n == 0 {
						t.Error("no fused weight compared")
					}
					back := filepath.Join(out, "back")
					if _, err := exec.ConvertMCAToHF(context.Background(), phi, filepath.Join(out, "phi3"), back, exec.Options{}); err != nil {
						t.Fatalf("phi3 MCA -> HF: %v", err)
					}
					compareCheckpoints(t, phiSrc, back, r.Plan)
					os.RemoveAll(out)
				})
			}
		})
	}
}
