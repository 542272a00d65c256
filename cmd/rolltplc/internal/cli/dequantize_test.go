package cli

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// writeFP8Llama writes a small Llama-shaped FP8 block-quantized checkpoint
// (blocks 16x24, so the projections have partial edge blocks): F8_E4M3
// projections with F32 scale grids, BF16 embeddings, norms and lm_head.
func writeFP8Llama(t *testing.T, dir string) {
	t.Helper()
	const V, H, I, nh, kv, L = 128, 32, 64, 4, 2, 2
	hd := H / nh
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "vocab_size": V, "hidden_size": H,
		"intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": nh, "num_key_value_heads": kv,
		"rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
		"max_position_embeddings": 2048,
		"quantization_config":     map[string]any{"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": []int{16, 24}},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(`{"version": "1.0"}`), 0o644)
	rng := rand.New(rand.NewPCG(3, 4))
	var specs []safetensors.Spec
	data := map[string][]byte{}
	plain := func(name string, shape ...int64) {
		sp := safetensors.Spec{Name: name, DType: tensor.BF16, Shape: shape}
		d := make([]byte, 0, 2*sp.Shape.NumElements())
		for range sp.Shape.NumElements() {
			d = binary.LittleEndian.AppendUint16(d, tensor.F32ToBF16(float32(rng.NormFloat64()*0.02)))
		}
		specs, data[name] = append(specs, sp), d
	}
	quant := func(name string, M, N int64) {
		codes := make([]byte, M*N)
		for i := range codes {
			for codes[i] = byte(rng.Uint32()); codes[i]&0x7F == 0x7F; codes[i] = byte(rng.Uint32()) {
			}
		}
		gm, gn := (M+15)/16, (N+23)/24
		var sc []byte
		for range gm * gn {
			sc = binary.LittleEndian.AppendUint32(sc, math.Float32bits(float32(math.Ldexp(1+rng.Float64(), -8-rng.IntN(8)))))
		}
		specs = append(specs, safetensors.Spec{Name: name, DType: tensor.F8E4M3, Shape: tensor.Shape{M, N}},
			safetensors.Spec{Name: name + "_scale_inv", DType: tensor.F32, Shape: tensor.Shape{gm, gn}})
		data[name], data[name+"_scale_inv"] = codes, sc
	}
	plain("model.embed_tokens.weight", V, H)
	plain("lm_head.weight", V, H)
	plain("model.norm.weight", H)
	for l := range L {
		p := fmt.Sprintf("model.layers.%d.", l)
		plain(p+"input_layernorm.weight", H)
		plain(p+"post_attention_layernorm.weight", H)
		quant(p+"self_attn.q_proj.weight", int64(nh*hd), H)
		quant(p+"self_attn.k_proj.weight", int64(kv*hd), H)
		quant(p+"self_attn.v_proj.weight", int64(kv*hd), H)
		quant(p+"self_attn.o_proj.weight", H, int64(nh*hd))
		quant(p+"mlp.gate_proj.weight", I, H)
		quant(p+"mlp.up_proj.weight", I, H)
		quant(p+"mlp.down_proj.weight", H, I)
	}
	writeSingleFile(t, dir, specs, data)
}

// TestFP8Commands runs the FP8 paths of the CLI on a real checkpoint:
// dequantize, convert (announcing the pass), convert back with
// --quantize fp8 (both scale modes), verify, check --checkpoint, and the
// refusal of --dequantize refuse.
func TestFP8Commands(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "fp8")
	writeFP8Llama(t, src)
	p := func(s string) string { return filepath.Join(tmp, s) }

	code, _, stderr := run(t, "", "dequantize", "--from", src, "--to", p("bf16"))
	if code != ExitOK || !strings.Contains(stderr, "FP8 block-quantized (blocks 16x24): 14 weights + 14 scales -> BF16") {
		t.Fatalf("dequantize: exit %d\n%s", code, stderr)
	}
	st, err := safetensors.OpenSharded(p("bf16"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range st.Tensors() {
		if strings.HasSuffix(ti.Name, "_scale_inv") || ti.DType != tensor.BF16 {
			t.Errorf("dequantized checkpoint has %s %v", ti.Name, ti.DType)
		}
	}
	st.Close()

	code, _, stderr = run(t, "", "convert", "--from", src, "--to", p("mca"), "--tp", "2")
	if code != ExitOK || !strings.Contains(stderr, "FP8 block-quantized") {
		t.Fatalf("convert: exit %d\n%s", code, stderr)
	}
	code, _, stderr = run(t, "", "convert", "--from", p("mca"), "--to", p("plain"))
	if code != ExitOK || !strings.Contains(stderr, "--quantize fp8 restores") {
		t.Errorf("convert back without --quantize: exit %d, no note\n%s", code, stderr)
	}
	for _, scales := range []string{"reuse", "recompute"} {
		out := p("back-" + scales)
		code, _, stderr = run(t, "", "convert", "--from", p("mca"), "--to", out, "--quantize", "fp8", "--scales", scales)
		if code != ExitOK {
			t.Fatalf("convert --quantize fp8 --scales %s: exit %d\n%s", scales, code, stderr)
		}
		a, _ := safetensors.OpenSharded(src)
		b, err := safetensors.OpenSharded(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, ta := range a.Tensors() {
			tb, ok := b.Lookup(ta.Name)
			if !ok || tb.DType != ta.DType || !tb.Shape.Equal(ta.Shape) {
				t.Errorf("%s: %s missing or of another dtype/shape", scales, ta.Name)
				continue
			}
			same := string(ta.File.Data(ta.TensorInfo)) == string(tb.File.Data(tb.TensorInfo))
			if scales == "reuse" && !same {
				t.Errorf("reuse: %s differs from the original", ta.Name)
			}
		}
		a.Close()
		b.Close()
	}
	code, stdout, stderr := run(t, "", "verify", "--tp", "2", src)
	if code != ExitOK || !strings.Contains(stdout, "35 tensors") {
		t.Fatalf("verify: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = run(t, "", "check", "--checkpoint", src)
	for _, want := range []string{"FP8 block-quantized (blocks 16x24): 14 weights + 14 scales -> BF16", "model.layers.0.mlp.down_proj.weight [32, 64]: model.layers.0.mlp.down_proj.weight_scale_inv [2, 3] F32"} {
		if code != ExitOK || !strings.Contains(stdout, want) {
			t.Errorf("check --checkpoint: exit %d, want %q in\n%s", code, want, stdout)
		}
	}
	code, _, stderr = run(t, "", "convert", "--from", src, "--to", p("refused"), "--dequantize", "refuse")
	if code != ExitError || !strings.Contains(stderr, "--dequantize refuse") || !strings.Contains(stderr, "[fp8-config]") {
		t.Errorf("--dequantize refuse: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(p("refused")); err == nil {
		t.Errorf("--dequantize refuse wrote its output")
	}
	code, _, stderr = run(t, "", "dequantize", "--from", p("bf16"), "--to", p("again"))
	if code != ExitError || !strings.Contains(stderr, "not an FP8 block-quantized checkpoint") {
		t.Errorf("dequantize of a BF16 checkpoint: exit %d\n%s", code, stderr)
	}
	if exec.FP8SidecarName == "" {
		t.Fatal("no sidecar name")
	}
}

// writeSingleFile writes specs (sorted in place) with their bytes from
// data as DIR/model.safetensors.
func writeSingleFile(t *testing.T, dir string, specs []safetensors.Spec, data map[string][]byte) {
	t.Helper()
	safetensors.SortSpecs(specs)
	err := safetensors.WriteFile(filepath.Join(dir, safetensors.SingleFileName), specs, map[string]string{"format": "pt"}, func(w *safetensors.Writer) error {
		for _, sp := range specs {
			if err := w.WriteTensor(sp.Name, data[sp.Name]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
