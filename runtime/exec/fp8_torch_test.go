package exec_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rolltpl/rolltpl/internal/torchtest"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// edgeSynth is a template-free checkpoint of the shapes lora-fp8.md §2.7
// names: edge blocks ([576, 300], [130, 7], [1, 1]), an aligned
// [256, 256], an expert stack [2, 130, 260], and unquantized tensors that
// must pass untouched (a BF16 norm, embeddings and router, an F32 bias).
func edgeSynth() synth {
	sp := func(name string, dt tensor.DType, shape ...int64) safetensors.Spec {
		return safetensors.Spec{Name: name, DType: dt, Shape: shape}
	}
	return synth{modelType: "deepseek_v3", config: map[string]any{"model_type": "deepseek_v3", "torch_dtype": "bfloat16"},
		tensors: []safetensors.Spec{
			sp("model.layers.0.self_attn.kv_a_proj_with_mqa.weight", tensor.BF16, 576, 300),
			sp("model.layers.0.self_attn.q_a_proj.weight", tensor.BF16, 130, 7),
			sp("model.layers.0.mlp.tiny_proj.weight", tensor.BF16, 1, 1),
			sp("model.layers.0.self_attn.o_proj.weight", tensor.BF16, 256, 256),
			sp("model.layers.0.mlp.experts.gate_up_proj.weight", tensor.BF16, 2, 130, 260),
			sp("model.layers.0.input_layernorm.weight", tensor.BF16, 300),
			sp("model.embed_tokens.weight", tensor.BF16, 64, 300),
			sp("model.layers.0.mlp.gate.weight", tensor.BF16, 4, 300),
			sp("model.layers.0.mlp.gate.e_score_correction_bias", tensor.F32, 4),
		}}
}

// TestFP8TorchReference checks against torch (fp8_reference.py): the
// dequantize command's output equals weight_dequant_ref byte for byte
// (F32, BF16 and F16 scales; BF16, F16 and F32 outputs; edge blocks,
// planted codes, untouched unquantized tensors), and MCA -> HF --quantize
// fp8 --scales recompute equals the reference encoder (c10's cast with
// tensor divisions).
func TestFP8TorchReference(t *testing.T) { torchtest.Run(t, testFP8TorchReference) }

func testFP8TorchReference(t *testing.T, py string) {
	tmp := t.TempDir()
	type fcase struct {
		ID          string   `json:"id"`
		FP8         string   `json:"fp8"`
		Block       [2]int64 `json:"block"`
		Dequantized string   `json:"dequantized,omitempty"`
		DType       string   `json:"dtype,omitempty"`
		Recomputed  string   `json:"recomputed,omitempty"`
		Values      string   `json:"values,omitempty"`
	}
	var cases []fcase
	var ids []string
	add := func(c fcase) { cases = append(cases, c); ids = append(ids, c.ID) }
	for i, sdt := range []tensor.DType{tensor.F32, tensor.BF16, tensor.F16} {
		dir := filepath.Join(tmp, "edge-"+sdt.String())
		fx := writeFP8(t, edgeSynth(), dir, dir+"-ref", sdt, [2]int64{128, 128}, 2, uint64(20+i))
		for _, to := range []exec.Dequantize{exec.DequantBF16, exec.DequantF16, exec.DequantF32} {
			if to == exec.DequantF16 && sdt != tensor.F16 {
				continue // products up to 448·2^-2 fit F16 anyway; one case is enough
			}
			out := filepath.Join(tmp, "deq-"+sdt.String()+"-"+string(to))
			if _, err := exec.DequantizeHF(context.Background(), fx.dir, out, exec.DequantizeOptions{To: to}); err != nil {
				t.Fatal(err)
			}
			add(fcase{ID: "dequantize " + sdt.String() + " scales -> " + string(to), FP8: fx.dir, Block: fx.block, Dequantized: out, DType: map[exec.Dequantize]string{exec.DequantBF16: "BF16", exec.DequantF16: "F16", exec.DequantF32: "F32"}[to]})
		}
	}
	// Model-shaped checkpoints: qwen3 (F32 scales, DeepSeek-like) and
	// qwen3_moe (BF16 scales, Qwen-like), blocks leaving edge blocks.
	for i, mt := range []string{"qwen3", "qwen3_moe"} {
		sdt := []tensor.DType{tensor.F32, tensor.BF16}[i]
		dir := filepath.Join(tmp, "model-"+mt)
		fx := writeFP8(t, fp8Synth(mt), dir, dir+"-ref", sdt, [2]int64{48, 40}, 3, uint64(40+i))
		out := dir + "-deq"
		if _, err := exec.DequantizeHF(context.Background(), fx.dir, out, exec.DequantizeOptions{}); err != nil {
			t.Fatal(err)
		}
		add(fcase{ID: "dequantize " + mt, FP8: fx.dir, Block: fx.block, Dequantized: out, DType: "BF16"})
	}
	m := stdlibModel(t, "qwen3")
	for i, sdt := range []tensor.DType{tensor.F32, tensor.BF16} {
		dir := filepath.Join(tmp, "qwen3-"+sdt.String())
		fx := writeFP8(t, fp8Synth("qwen3"), dir, dir+"-ref", sdt, [2]int64{48, 40}, 1, uint64(30+i))
		mca, out := dir+"-mca", dir+"-recomputed"
		if _, err := exec.ConvertHFToMCA(context.Background(), m, fx.dir, mca, exec.Options{Layout: exec.Layout{TP: 2}}); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, out, exec.Options{Quantize: &exec.QuantizeOptions{Scales: exec.ScalesRecompute}}); err != nil {
			t.Fatal(err)
		}
		add(fcase{ID: "recompute " + sdt.String() + " scales", FP8: fx.dir, Block: fx.block, Recomputed: out, Values: fx.ref})
	}
	res := runTorchScript(t, py, "fp8_reference.py", tmp, map[string]any{"cases": cases}, ids)
	for _, id := range ids {
		if res[id].Checked == 0 {
			t.Errorf("%s: nothing checked", id)
		}
	}
}
