package clitest

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestLlamaWrite: a synthetic Llama checkpoint reads back as a sharded
// safetensors checkpoint with every tensor of its shape (but the skipped
// one), finite small bf16 weights, its config and its tokenizer file; the
// same seed writes the same bytes.
func TestLlamaWrite(t *testing.T) {
	dir := t.TempDir()
	c := Llama(LlamaShape{Vocab: 16, Hidden: 8, Inter: 12, Heads: 4, KVHeads: 2, Layers: 2}, "lm_head.weight")
	c.Seed = [2]uint64{7, 8}
	c.Write(t, filepath.Join(dir, "a"))
	c.Write(t, filepath.Join(dir, "b"))

	ck, err := safetensors.OpenSharded(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	got := map[string][]int64{}
	for _, ti := range ck.Tensors() {
		got[ti.Name] = ti.Shape
		data := ti.File.Data(ti.TensorInfo)
		for j := 0; j < len(data); j += 2 {
			v := tensor.BF16ToF32(uint16(data[j]) | uint16(data[j+1])<<8)
			if math.IsNaN(float64(v)) || math.Abs(float64(v)) > 0.5 {
				t.Fatalf("%s: weight %v", ti.Name, v)
			}
		}
	}
	want := map[string][]int64{
		"model.embed_tokens.weight": {16, 8}, "model.norm.weight": {8},
	}
	for _, l := range []string{"0", "1"} {
		p := "model.layers." + l + "."
		for name, shape := range map[string][]int64{
			"input_layernorm.weight": {8}, "post_attention_layernorm.weight": {8},
			"self_attn.q_proj.weight": {8, 8}, "self_attn.k_proj.weight": {4, 8}, "self_attn.v_proj.weight": {4, 8},
			"self_attn.o_proj.weight": {8, 8}, "mlp.gate_proj.weight": {12, 8}, "mlp.up_proj.weight": {12, 8},
			"mlp.down_proj.weight": {8, 12},
		} {
			want[p+name] = shape
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tensors (-want +got):\n%s", diff)
	}
	var cfg map[string]any
	b, err := os.ReadFile(filepath.Join(dir, "a", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil || cfg["model_type"] != "llama" || cfg["num_key_value_heads"] != 2.0 {
		t.Errorf("config.json: %v %v", cfg, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "tokenizer.json")); err != nil {
		t.Error(err)
	}
	for _, name := range []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", safetensors.IndexFileName} {
		x, err1 := os.ReadFile(filepath.Join(dir, "a", name))
		y, err2 := os.ReadFile(filepath.Join(dir, "b", name))
		if err1 != nil || err2 != nil || string(x) != string(y) {
			t.Errorf("%s: not the same bytes for the same seed (%v, %v)", name, err1, err2)
		}
	}
}
