package exec_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/stdlib"
)

// The tests compile the stdlib with the compiler; the package itself only
// imports the IR (cmd/rolltplc/layers_test.go checks non-test imports).

var (
	stdlibOnce sync.Once
	stdlibProg *ir.Program
	stdlibErr  error
)

func stdlibProgram(t testing.TB) *ir.Program {
	t.Helper()
	stdlibOnce.Do(func() {
		paths, err := compiler.LibPaths(stdlib.Templates())
		if err != nil {
			stdlibErr = err
			return
		}
		res := compiler.Compile(paths, compiler.Options{Lib: stdlib.Templates()})
		if res.Diags.HasErrors() {
			stdlibErr = fmt.Errorf("stdlib: %v", res.Diags)
			return
		}
		stdlibProg = res.Program
	})
	if stdlibErr != nil {
		t.Fatal(stdlibErr)
	}
	return stdlibProg
}

func stdlibModel(t testing.TB, name string) *exec.Model {
	t.Helper()
	m, err := exec.NewModel(stdlibProgram(t), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// synth describes a small checkpoint shaped like a real model of one type.
type synth struct {
	modelType string
	config    map[string]any // config.json
	tensors   []safetensors.Spec
}

// dims are the sizes of a synthetic decoder.
type dims struct {
	vocab, hidden, inter, layers, heads, kv, headDim int64
	tie, bias, qkNorm                                bool
	experts, moeInter, sharedInter                   int64
	expertPrefix                                     string // HF expert infix, default ".mlp.experts."
	expertNames                                      [3]string
	layerPrefix, embed, norm, head                   string
	denseMLP                                         bool
	fusedExperts                                     bool // all experts of a layer in one 3-D tensor per projection (Qwen3-VL-MoE)
	// Qwen3-Next: every fullEvery-th layer softmax attention with a gated
	// query (q_proj twice as wide), the others a Gated DeltaNet with
	// gdnK key heads and gdnV value heads of gdnDim channels.
	fullEvery, gdnK, gdnV, gdnDim, gdnKernel int64
	invFreq                                  bool // an ignored rotary inv_freq buffer
}

func (d dims) hd() int64 {
	if d.headDim > 0 {
		return d.headDim
	}
	return d.hidden / d.heads
}

func (d dims) specs(dt tensor.DType) []safetensors.Spec {
	var s []safetensors.Spec
	add := func(name string, shape ...int64) {
		s = append(s, safetensors.Spec{Name: name, DType: dt, Shape: tensor.Shape(shape)})
	}
	lp := d.layerPrefix
	if lp == "" {
		lp = "model.layers."
	}
	embed, norm := d.embed, d.norm
	if embed == "" {
		embed, norm = "model.embed_tokens.weight", "model.norm.weight"
	}
	H, hd := d.hidden, d.hd()
	add(embed, d.vocab, H)
	for l := range d.layers {
		p := fmt.Sprintf("%s%d.", lp, l)
		add(p+"input_layernorm.weight", H)
		add(p+"post_attention_layernorm.weight", H)
		qRows := d.heads * hd
		if d.fullEvery > 0 {
			if (l+1)%d.fullEvery != 0 { // a linear attention (Gated DeltaNet) layer
				kd, vd := d.gdnK*d.gdnDim, d.gdnV*d.gdnDim
				add(p+"linear_attn.in_proj_qkvz.weight", 2*kd+2*vd, H)
				add(p+"linear_attn.in_proj_ba.weight", 2*d.gdnV, H)
				add(p+"linear_attn.conv1d.weight", 2*kd+vd, 1, d.gdnKernel)
				add(p+"linear_attn.dt_bias", d.gdnV)
				add(p+"linear_attn.A_log", d.gdnV)
				add(p+"linear_attn.norm.weight", d.gdnDim)
				add(p+"linear_attn.out_proj.weight", H, vd)
				d.moeLayer(add, p, H)
				continue
			}
			qRows *= 2 // the query and its output gate
		}
		add(p+"self_attn.q_proj.weight", qRows, H)
		add(p+"self_attn.k_proj.weight", d.kv*hd, H)
		add(p+"self_attn.v_proj.weight", d.kv*hd, H)
		add(p+"self_attn.o_proj.weight", H, d.heads*hd)
		if d.bias {
			add(p+"self_attn.q_proj.bias", d.heads*hd)
			add(p+"self_attn.k_proj.bias", d.kv*hd)
			add(p+"self_attn.v_proj.bias", d.kv*hd)
		}
		if d.qkNorm {
			add(p+"self_attn.q_norm.weight", hd)
			add(p+"self_attn.k_norm.weight", hd)
		}
		if d.invFreq {
			s = append(s, safetensors.Spec{Name: p + "self_attn.rotary_emb.inv_freq", DType: tensor.F32, Shape: tensor.Shape{hd / 2}})
		}
		if d.denseMLP {
			add(p+"mlp.gate_proj.weight", d.inter, H)
			add(p+"mlp.up_proj.weight", d.inter, H)
			add(p+"mlp.down_proj.weight", H, d.inter)
		}
		d.moeLayer(add, p, H)
	}
	add(norm, H)
	if !d.tie {
		head := d.head
		if head == "" {
			head = "lm_head.weight"
		}
		add(head, d.vocab, H)
	}
	return s
}

// moeLayer adds the MoE block of the layer with prefix p, if d has experts.
func (d dims) moeLayer(add func(string, ...int64), p string, H int64) {
	if d.experts > 0 {
		ep := d.expertPrefix
		if ep == "" {
			ep = ".mlp.experts."
		}
		names := d.expertNames
		if names[0] == "" {
			names = [3]string{"gate_proj", "up_proj", "down_proj"}
		}
		gate := "mlp.gate.weight"
		if ep == ".block_sparse_moe.experts." {
			gate = "block_sparse_moe.gate.weight"
		}
		add(p+gate, d.experts, H)
		if d.fusedExperts { // [E, in, out], as HF's Qwen3-VL-MoE stores them
			add(p+"mlp.experts.gate_up_proj", d.experts, H, 2*d.moeInter)
			add(p+"mlp.experts.down_proj", d.experts, d.moeInter, H)
			return
		}
		for e := range d.experts {
			q := fmt.Sprintf("%s%s%d.", p[:len(p)-1], ep, e)
			add(q+names[0]+".weight", d.moeInter, H)
			add(q+names[1]+".weight", d.moeInter, H)
			add(q+names[2]+".weight", H, d.moeInter)
		}
		if d.sharedInter > 0 {
			add(p+"mlp.shared_expert.gate_proj.weight", d.sharedInter, H)
			add(p+"mlp.shared_expert.up_proj.weight", d.sharedInter, H)
			add(p+"mlp.shared_expert.down_proj.weight", H, d.sharedInter)
			add(p+"mlp.shared_expert_gate.weight", 1, H)
		}
	}
}

func torchDType(dt tensor.DType) string {
	switch dt {
	case tensor.F16:
		return "float16"
	case tensor.F32:
		return "float32"
	}
	return "bfloat16"
}

// textConfig returns the decoder keys of config.json.
func (d dims) textConfig(dt tensor.DType) map[string]any {
	c := map[string]any{
		"vocab_size":              d.vocab,
		"hidden_size":             d.hidden,
		"intermediate_size":       d.inter,
		"num_hidden_layers":       d.layers,
		"num_attention_heads":     d.heads,
		"num_key_value_heads":     d.kv,
		"max_position_embeddings": 4096,
		"rms_norm_eps":            1e-06,
		"rope_theta":              1000000.0,
		"attention_dropout":       0.0,
		"hidden_act":              "silu",
		"initializer_range":       0.02,
		"use_cache":               true,
		"tie_word_embeddings":     d.tie,
		"torch_dtype":             torchDType(dt),
	}
	if d.headDim > 0 {
		c["head_dim"] = d.headDim
	}
	return c
}

func visionSpecs(dt tensor.DType, prefix string, blocks int, kind string) []safetensors.Spec {
	var s []safetensors.Spec
	add := func(name string, shape ...int64) {
		s = append(s, safetensors.Spec{Name: prefix + name, DType: dt, Shape: tensor.Shape(shape)})
	}
	const E, C = 32, 3
	add("patch_embed.proj.weight", E, C, 2, 14, 14)
	if kind == "qwen3_vl" {
		add("patch_embed.proj.bias", E)
		add("pos_embed.weight", 64, E)
	}
	for b := range blocks {
		p := fmt.Sprintf("blocks.%d.", b)
		add(p+"norm1.weight", E)
		add(p+"norm2.weight", E)
		if kind != "qwen2_5_vl" {
			add(p+"norm1.bias", E)
			add(p+"norm2.bias", E)
		}
		add(p+"attn.qkv.weight", 3*E, E)
		add(p+"attn.qkv.bias", 3*E)
		add(p+"attn.proj.weight", E, E)
		add(p+"attn.proj.bias", E)
		switch kind {
		case "qwen2_5_vl":
			add(p+"mlp.gate_proj.weight", 2*E, E)
			add(p+"mlp.gate_proj.bias", 2*E)
			add(p+"mlp.up_proj.weight", 2*E, E)
			add(p+"mlp.up_proj.bias", 2*E)
			add(p+"mlp.down_proj.weight", E, 2*E)
			add(p+"mlp.down_proj.bias", E)
		case "qwen3_vl":
			add(p+"mlp.linear_fc1.weight", 2*E, E)
			add(p+"mlp.linear_fc1.bias", 2*E)
			add(p+"mlp.linear_fc2.weight", E, 2*E)
			add(p+"mlp.linear_fc2.bias", E)
		default:
			add(p+"mlp.fc1.weight", 4*E, E)
			add(p+"mlp.fc1.bias", 4*E)
			add(p+"mlp.fc2.weight", E, 4*E)
			add(p+"mlp.fc2.bias", E)
		}
	}
	if kind == "qwen3_vl" {
		add("merger.norm.weight", E)
		add("merger.norm.bias", E)
		add("merger.linear_fc1.weight", 4*E, 4*E)
		add("merger.linear_fc1.bias", 4*E)
		add("merger.linear_fc2.weight", 64, 4*E)
		add("merger.linear_fc2.bias", 64)
		add("deepstack_merger_list.0.norm.weight", 4*E)
		add("deepstack_merger_list.0.linear_fc1.weight", 4*E, 4*E)
	} else {
		add("merger.ln_q.weight", E)
		if kind != "qwen2_5_vl" {
			add("merger.ln_q.bias", E)
		}
		add("merger.mlp.0.weight", 4*E, 4*E)
		add("merger.mlp.0.bias", 4*E)
		add("merger.mlp.2.weight", 64, 4*E)
		add("merger.mlp.2.bias", 64)
	}
	return s
}

// synthFor returns a scaled-down checkpoint description of modelType that
// keeps what matters for conversion: the GQA ratio, head_dim where the
// real model sets it apart from hidden/heads, tied embeddings, biases,
// experts, and the vision tower under its real prefix.
func synthFor(modelType string, dt tensor.DType) synth {
	return synthWith(modelType, dt, nil)
}

// synthWith is synthFor with mod applied to the decoder sizes (and the
// model-specific config keys) before config.json is made from them.
func synthWith(modelType string, dt tensor.DType, mod func(d *dims, cfg map[string]any)) synth {
	var d dims
	cfg := map[string]any{}
	var extra []safetensors.Spec
	arch := ""
	switch modelType {
	case "llama": // Llama-3-8B: 32 heads, 8 kv heads, untied
		d = dims{vocab: 384, hidden: 64, inter: 160, layers: 3, heads: 8, kv: 2, denseMLP: true, invFreq: true}
		arch = "LlamaForCausalLM"
	case "mistral": // Mistral-7B: 32/8, untied
		d = dims{vocab: 320, hidden: 64, inter: 224, layers: 2, heads: 8, kv: 2, denseMLP: true}
		arch = "MistralForCausalLM"
		cfg["sliding_window"] = 4096
	case "mixtral": // Mixtral-8x7B: 32/8, 8 experts top-2, w1/w2/w3
		d = dims{vocab: 320, hidden: 64, inter: 96, layers: 2, heads: 8, kv: 2, experts: 4, moeInter: 96,
			expertPrefix: ".block_sparse_moe.experts.", expertNames: [3]string{"w1", "w3", "w2"}}
		arch = "MixtralForCausalLM"
		cfg["num_local_experts"] = 4
		cfg["num_experts_per_tok"] = 2
		cfg["router_aux_loss_coef"] = 0.02
	case "qwen2": // Qwen2.5-0.5B: 14 heads, 2 kv heads, q/k/v bias, tied
		d = dims{vocab: 256, hidden: 112, inter: 192, layers: 2, heads: 14, kv: 2, bias: true, tie: true, denseMLP: true}
		arch = "Qwen2ForCausalLM"
		cfg["use_sliding_window"] = false
	case "qwen2_moe": // Qwen1.5-MoE: experts + a gated shared expert, bias
		d = dims{vocab: 256, hidden: 64, inter: 128, layers: 2, heads: 8, kv: 8, bias: true,
			experts: 4, moeInter: 48, sharedInter: 96}
		arch = "Qwen2MoeForCausalLM"
		cfg["moe_intermediate_size"] = 48
		cfg["shared_expert_intermediate_size"] = 96
		cfg["num_experts"] = 4
		cfg["num_experts_per_tok"] = 2
		cfg["decoder_sparse_step"] = 1
		cfg["router_aux_loss_coef"] = 0.001
	case "qwen3": // Qwen3-0.6B: 16 heads, 8 kv, head_dim 128 ≠ 1024/16, q/k norm, tied
		d = dims{vocab: 256, hidden: 64, inter: 160, layers: 2, heads: 8, kv: 4, headDim: 16, qkNorm: true, tie: true, denseMLP: true}
		arch = "Qwen3ForCausalLM"
		cfg["attention_bias"] = false
	case "qwen3_moe": // Qwen3-30B-A3B: 32 heads, 4 kv, head_dim 128, experts
		d = dims{vocab: 256, hidden: 64, inter: 192, layers: 2, heads: 8, kv: 1, headDim: 16, qkNorm: true,
			experts: 8, moeInter: 32}
		arch = "Qwen3MoeForCausalLM"
		cfg["attention_bias"] = false
		cfg["moe_intermediate_size"] = 32
		cfg["num_experts"] = 8
		cfg["num_experts_per_tok"] = 2
		cfg["decoder_sparse_step"] = 1
		cfg["norm_topk_prob"] = true
	case "seed_oss": // Seed-OSS-36B: 80 heads, 8 kv, head_dim 128, q/k/v bias
		d = dims{vocab: 320, hidden: 64, inter: 160, layers: 2, heads: 10, kv: 1, headDim: 16, bias: true, denseMLP: true}
		arch = "SeedOssForCausalLM"
		cfg["attention_bias"] = true
		cfg["attention_out_bias"] = false
		cfg["mlp_bias"] = false
	case "qwen2_vl": // Qwen2-VL-2B: flat config, 12 heads / 2 kv, bias, tied
		d = dims{vocab: 256, hidden: 96, inter: 160, layers: 2, heads: 12, kv: 2, bias: true, tie: true, denseMLP: true}
		arch = "Qwen2VLForConditionalGeneration"
		extra = visionSpecs(dt, "visual.", 2, modelType)
		cfg["vision_config"] = map[string]any{"depth": 2, "embed_dim": 32, "hidden_size": 96, "num_heads": 4, "patch_size": 14, "in_channels": 3, "spatial_merge_size": 2, "temporal_patch_size": 2}
		cfg["rope_scaling"] = map[string]any{"type": "mrope", "mrope_section": []int{2, 3, 3}}
		cfg["image_token_id"], cfg["video_token_id"] = 151655, 151656
		cfg["vision_start_token_id"], cfg["vision_end_token_id"] = 151652, 151653
	case "qwen2_5_vl": // Qwen2.5-VL-7B: flat config, 28/4 heads, bias, untied
		d = dims{vocab: 256, hidden: 112, inter: 160, layers: 2, heads: 14, kv: 2, bias: true, denseMLP: true}
		arch = "Qwen2_5_VLForConditionalGeneration"
		extra = visionSpecs(dt, "visual.", 2, modelType)
		cfg["vision_config"] = map[string]any{"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "out_hidden_size": 112, "fullatt_block_indexes": []int{1}, "window_size": 112}
		cfg["rope_scaling"] = map[string]any{"type": "mrope", "mrope_section": []int{2, 1, 1}}
		cfg["image_token_id"], cfg["video_token_id"] = 151655, 151656
		cfg["vision_start_token_id"], cfg["vision_end_token_id"] = 151652, 151653
	case "qwen3_vl", "qwen3_vl_moe": // Qwen3-VL-8B / -30B-A3B: nested text_config, head_dim 128, q/k norm, untied
		d = dims{vocab: 256, hidden: 64, inter: 160, layers: 2, heads: 8, kv: 2, headDim: 16, qkNorm: true, denseMLP: true,
			layerPrefix: "model.language_model.layers.", embed: "model.language_model.embed_tokens.weight", norm: "model.language_model.norm.weight"}
		arch = "Qwen3VLForConditionalGeneration"
		if modelType == "qwen3_vl_moe" {
			d.denseMLP, d.experts, d.moeInter, d.fusedExperts = false, 4, 32, true
			arch = "Qwen3VLMoeForConditionalGeneration"
		}
		extra = visionSpecs(dt, "model.visual.", 2, "qwen3_vl")
		if mod != nil {
			mod(&d, cfg)
		}
		text := d.textConfig(dt)
		delete(text, "tie_word_embeddings")
		text["rope_scaling"] = map[string]any{"rope_type": "default", "mrope_section": []int{2, 3, 3}, "mrope_interleaved": true}
		text["model_type"] = modelType + "_text"
		text["attention_bias"] = false
		if d.experts > 0 {
			qwenMoEKeys(text, d)
		}
		cfg = map[string]any{
			"architectures":  []string{arch},
			"model_type":     modelType,
			"text_config":    text,
			"vision_config":  map[string]any{"depth": 2, "hidden_size": 32, "num_heads": 4, "out_hidden_size": 64, "deepstack_visual_indexes": []int{0}},
			"image_token_id": 151655, "video_token_id": 151656,
			"vision_start_token_id": 151652, "vision_end_token_id": 151653,
			"tie_word_embeddings": false,
			"torch_dtype":         torchDType(dt),
		}
		return synth{modelType: modelType, config: cfg, tensors: append(d.specs(dt), extra...)}
	case "qwen3_next": // Qwen3-Next-80B-A3B: GDN and gated attention layers, experts and a gated shared expert
		d = dims{vocab: 256, hidden: 64, inter: 192, layers: 2, heads: 8, kv: 2, headDim: 16, qkNorm: true,
			experts: 4, moeInter: 32, sharedInter: 48, fullEvery: 2, gdnK: 2, gdnV: 4, gdnDim: 8, gdnKernel: 4}
		arch = "Qwen3NextForCausalLM"
		cfg["attention_bias"] = false
		qwenMoEKeys(cfg, d)
		cfg["shared_expert_intermediate_size"] = 48
		cfg["norm_topk_prob"] = true
		cfg["full_attention_interval"] = 2
		cfg["linear_conv_kernel_dim"] = 4
		cfg["linear_key_head_dim"] = 8
		cfg["linear_value_head_dim"] = 8
		cfg["linear_num_key_heads"] = 2
		cfg["linear_num_value_heads"] = 4
		extra = append(extra, safetensors.Spec{Name: "mtp.fc.weight", DType: dt, Shape: tensor.Shape{64, 128}})
	case "qwen3_omni_moe": // Qwen3-Omni-30B-A3B: the thinker's MoE text model nested two levels deep, towers beside it
		d = dims{vocab: 256, hidden: 64, inter: 192, layers: 2, heads: 8, kv: 2, headDim: 16, qkNorm: true,
			experts: 4, moeInter: 32, layerPrefix: "thinker.model.layers.", embed: "thinker.model.embed_tokens.weight",
			norm: "thinker.model.norm.weight", head: "thinker.lm_head.weight"}
		arch = "Qwen3OmniMoeForConditionalGeneration"
		extra = visionSpecs(dt, "thinker.visual.", 2, "qwen3_vl")
		for _, sp := range []safetensors.Spec{
			{Name: "thinker.audio_tower.conv2d1.weight", Shape: tensor.Shape{16, 1, 3, 3}},
			{Name: "thinker.audio_tower.layers.0.fc1.weight", Shape: tensor.Shape{32, 16}},
			{Name: "thinker.audio_tower.proj2.weight", Shape: tensor.Shape{64, 16}},
			{Name: "talker.model.layers.0.mlp.down_proj.weight", Shape: tensor.Shape{16, 32}},
			{Name: "talker.codec_head.weight", Shape: tensor.Shape{48, 16}},
			{Name: "code2wav.decoder.0.conv.weight", Shape: tensor.Shape{8, 16, 7}},
		} {
			sp.DType = dt
			extra = append(extra, sp)
		}
		if mod != nil {
			mod(&d, cfg)
		}
		text := d.textConfig(dt)
		text["model_type"] = "qwen3_omni_moe_text"
		text["attention_bias"] = false
		qwenMoEKeys(text, d)
		text["rope_scaling"] = map[string]any{"rope_type": "default", "mrope_section": []int{2, 3, 3}, "interleaved": true}
		cfg = map[string]any{
			"architectures": []string{arch},
			"model_type":    modelType,
			"thinker_config": map[string]any{
				"model_type":     "qwen3_omni_moe_thinker",
				"text_config":    text,
				"vision_config":  map[string]any{"depth": 2, "hidden_size": 32, "num_heads": 4, "out_hidden_size": 64, "deepstack_visual_indexes": []int{0}},
				"audio_config":   map[string]any{"d_model": 16, "encoder_layers": 1, "output_dim": 64},
				"audio_token_id": 151675, "audio_start_token_id": 151669,
				"image_token_id": 151655, "video_token_id": 151656,
				"vision_start_token_id":   151652,
				"position_id_per_seconds": 25,
			},
			"enable_audio_output": true,
			"talker_config":       map[string]any{"model_type": "qwen3_omni_moe_talker"},
			"code2wav_config":     map[string]any{"model_type": "qwen3_omni_moe_code2wav"},
			"torch_dtype":         torchDType(dt),
		}
		return synth{modelType: modelType, config: cfg, tensors: append(d.specs(dt), extra...)}
	default:
		panic("no synthetic model for " + modelType)
	}
	if mod != nil {
		mod(&d, cfg)
	}
	for k, v := range d.textConfig(dt) {
		if _, ok := cfg[k]; !ok {
			cfg[k] = v
		}
	}
	if d.fullEvery > 0 {
		types := make([]string, d.layers)
		for l := range types {
			types[l] = "full_attention"
			if (int64(l)+1)%d.fullEvery != 0 {
				types[l] = "linear_attention"
			}
		}
		cfg["layer_types"] = types
	}
	cfg["architectures"] = []string{arch}
	cfg["model_type"] = modelType
	return synth{modelType: modelType, config: cfg, tensors: append(d.specs(dt), extra...)}
}

// write writes the checkpoint into dir: config.json, a tokenizer file,
// and either one model.safetensors or shards plus an index. Tensor bytes
// are random (seeded).
func (s synth) write(t testing.TB, dir string, shards int, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := json.MarshalIndent(s.config, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "config.json"), cfg)
	writeFile(t, filepath.Join(dir, "tokenizer_config.json"), []byte(`{"model_max_length": 4096}`))
	writeFile(t, filepath.Join(dir, "generation_config.json"), []byte(`{"do_sample": true}`))
	rng := rand.New(rand.NewPCG(seed, 7))
	data := map[string][]byte{}
	for _, sp := range s.tensors {
		n := sp.Shape.NumElements() * int64(sp.DType.Size())
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if strings.HasSuffix(sp.Name, "linear_attn.norm.weight") {
			// Norm weights near 1, as trained ones are: 1 + k/128 survives
			// the zero-centred conversion ((w - 1) + 1) exactly in bf16,
			// f16 and f32, where random bits would round.
			b = b[:0]
			for range sp.Shape.NumElements() {
				b = appendFloat(b, sp.DType, 1+float64(rng.IntN(128))/128)
			}
		}
		data[sp.Name] = b
	}
	writeShards(t, dir, s.tensors, shards, func(name string) []byte { return data[name] })
}

// qwenMoEKeys sets the expert keys of a Qwen MoE text config from d:
// top-2 routing in every layer with an auxiliary loss.
func qwenMoEKeys(c map[string]any, d dims) {
	c["moe_intermediate_size"] = d.moeInter
	c["num_experts"] = d.experts
	c["num_experts_per_tok"] = 2
	c["decoder_sparse_step"] = 1
	c["router_aux_loss_coef"] = 0.001
}

// appendFloat appends v (exact in dt) in dtype dt, little-endian.
func appendFloat(b []byte, dt tensor.DType, v float64) []byte {
	switch dt {
	case tensor.F32:
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v)))
	case tensor.F16:
		return binary.LittleEndian.AppendUint16(b, f16bits(float32(v)))
	}
	return binary.LittleEndian.AppendUint16(b, uint16(math.Float32bits(float32(v))>>16)) // bf16: v is exact
}

// f16bits converts a normal float32 that is exact in binary16.
func f16bits(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	exp := int32(u>>23&0xff) - 127 + 15
	mant := uint16(u>>13) & 0x3ff
	return sign | uint16(exp)<<10 | mant
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeShards writes specs as one model.safetensors (shards <= 1) or as
// that many shards with an index, each file in the reference writer's
// order.
func writeShards(t testing.TB, dir string, specs []safetensors.Spec, shards int, data func(name string) []byte) {
	t.Helper()
	if shards <= 1 {
		writeSafetensors(t, filepath.Join(dir, safetensors.SingleFileName), specs, data)
		return
	}
	per := (len(specs) + shards - 1) / shards
	weightMap := map[string]string{}
	var total int64
	for i := range shards {
		lo, hi := i*per, min((i+1)*per, len(specs))
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, shards)
		part := append([]safetensors.Spec(nil), specs[lo:hi]...)
		for _, sp := range part {
			weightMap[sp.Name] = name
			total += sp.Shape.NumElements() * int64(sp.DType.Size())
		}
		writeSafetensors(t, filepath.Join(dir, name), part, data)
	}
	if err := safetensors.WriteIndex(filepath.Join(dir, safetensors.IndexFileName), weightMap, total); err != nil {
		t.Fatal(err)
	}
}

// writeSafetensors writes a test input file of specs (sorted as
// safetensors.WriteFile sorts them) with the bytes data gives: the same
// bytes as safetensors.WriteFile, without its fsync and temporary file (a
// test's inputs need not survive a crash; ~1500 fsyncs per run of this
// package were wall time spent waiting for the disk).
func writeSafetensors(t testing.TB, path string, specs []safetensors.Spec, data func(name string) []byte) {
	t.Helper()
	specs = append([]safetensors.Spec(nil), specs...)
	safetensors.SortSpecs(specs)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := safetensors.NewWriter(f, specs, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range specs {
		if err := w.WriteTensor(sp.Name, data(sp.Name)); err != nil {
			t.Fatalf("writing %s: %v", path, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// stdlibTypes are the model types of the stdlib templates.
var stdlibTypes = []string{"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "seed_oss", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_omni_moe", "qwen3_vl_moe", "qwen3_next"}
