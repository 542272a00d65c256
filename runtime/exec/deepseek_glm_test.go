package exec_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchtest"
	"github.com/rolltpl/rolltpl/stdlib"
)

// The deepseek_v3 and glm4_moe acceptance tests: checkpoints made from the
// real DeepSeek-V3, GLM-4.5-Air and GLM-4.5 config.json files
// (stdlib/testdata/hf-configs), with their sizes scaled down but every
// tensor name, the head structure (MLA's q/kv compression, GQA with
// explicit head_dim and biases, q/k norms), the dense-then-MoE layer
// pattern, shared experts and the float32 router expert bias kept.

// realConfig reads a real HF config.json from stdlib/testdata/hf-configs.
func realConfig(t testing.TB, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(realConfigs, file))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// deepModel is one of the three real models of this file.
type deepModel struct {
	modelType, file string
	// small scales the real config down (sizes only, structure kept).
	small map[string]any
}

var (
	deepSeekV3 = deepModel{"deepseek_v3", "deepseek-v3.json", map[string]any{
		"vocab_size": 256, "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 16,
		"num_hidden_layers": 4, "first_k_dense_replace": 2, "num_attention_heads": 8, "num_key_value_heads": 8,
		"q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 12,
		"n_routed_experts": 8, "n_group": 4, "topk_group": 2, "num_experts_per_tok": 2,
	}}
	glm45Air = deepModel{"glm4_moe", "glm-4.5-air.json", map[string]any{
		"vocab_size": 256, "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 16,
		"num_hidden_layers": 4, "first_k_dense_replace": 1, "num_attention_heads": 12, "num_key_value_heads": 2,
		"head_dim": 8, "n_routed_experts": 8, "num_experts_per_tok": 2,
	}}
	glm45 = deepModel{"glm4_moe", "glm-4.5.json", map[string]any{
		"vocab_size": 256, "hidden_size": 80, "intermediate_size": 96, "moe_intermediate_size": 24,
		"num_hidden_layers": 4, "first_k_dense_replace": 2, "num_attention_heads": 12, "num_key_value_heads": 2,
		"head_dim": 8, "n_routed_experts": 8, "num_experts_per_tok": 2,
	}}
)

// config returns the model's config.json: real, or scaled down; mtp false
// drops the MTP layers (num_nextn_predict_layers 0).
func (d deepModel) config(t testing.TB, small, mtp bool) map[string]any {
	cfg := realConfig(t, d.file)
	if small {
		for k, v := range d.small {
			cfg[k] = v
		}
		delete(cfg, "quantization_config") // the scaled checkpoint is bf16
	}
	if !mtp {
		cfg["num_nextn_predict_layers"] = 0
	}
	return cfg
}

// num reads an int config value (0 when absent or null).
func num(cfg map[string]any, k string) int64 {
	f, _ := cfg[k].(float64)
	if i, ok := cfg[k].(int); ok {
		return int64(i)
	}
	return int64(f)
}

// deepSpecs lists the HF tensors a DeepSeek-V3 or GLM-4.5 checkpoint with
// config cfg holds, MTP layers (num_nextn_predict_layers) included, in the
// order the HF models name them.
func deepSpecs(cfg map[string]any, dt tensor.DType) []safetensors.Spec {
	var s []safetensors.Spec
	add := func(name string, dt tensor.DType, shape ...int64) {
		s = append(s, safetensors.Spec{Name: name, DType: dt, Shape: tensor.Shape(shape)})
	}
	H, V := num(cfg, "hidden_size"), num(cfg, "vocab_size")
	L, M := num(cfg, "num_hidden_layers"), num(cfg, "num_nextn_predict_layers")
	heads := num(cfg, "num_attention_heads")
	E, mI, S := num(cfg, "n_routed_experts"), num(cfg, "moe_intermediate_size"), num(cfg, "n_shared_experts")
	add("model.embed_tokens.weight", dt, V, H)
	for l := range L + M {
		p := fmt.Sprintf("model.layers.%d.", l)
		if l >= L { // an MTP layer: its own block around a decoder layer
			add(p+"embed_tokens.weight", dt, V, H)
			add(p+"enorm.weight", dt, H)
			add(p+"hnorm.weight", dt, H)
			add(p+"eh_proj.weight", dt, H, 2*H)
			add(p+"shared_head.norm.weight", dt, H)
			add(p+"shared_head.head.weight", dt, V, H)
		}
		add(p+"input_layernorm.weight", dt, H)
		if _, mla := cfg["kv_lora_rank"]; mla {
			qk := num(cfg, "qk_nope_head_dim") + num(cfg, "qk_rope_head_dim")
			if q := num(cfg, "q_lora_rank"); q > 0 {
				add(p+"self_attn.q_a_proj.weight", dt, q, H)
				add(p+"self_attn.q_a_layernorm.weight", dt, q)
				add(p+"self_attn.q_b_proj.weight", dt, heads*qk, q)
			} else {
				add(p+"self_attn.q_proj.weight", dt, heads*qk, H)
			}
			kv := num(cfg, "kv_lora_rank")
			add(p+"self_attn.kv_a_proj_with_mqa.weight", dt, kv+num(cfg, "qk_rope_head_dim"), H)
			add(p+"self_attn.kv_a_layernorm.weight", dt, kv)
			add(p+"self_attn.kv_b_proj.weight", dt, heads*(num(cfg, "qk_nope_head_dim")+num(cfg, "v_head_dim")), kv)
			add(p+"self_attn.o_proj.weight", dt, H, heads*num(cfg, "v_head_dim"))
		} else {
			hd, kvh := num(cfg, "head_dim"), num(cfg, "num_key_value_heads")
			add(p+"self_attn.q_proj.weight", dt, heads*hd, H)
			add(p+"self_attn.k_proj.weight", dt, kvh*hd, H)
			add(p+"self_attn.v_proj.weight", dt, kvh*hd, H)
			if cfg["attention_bias"] == true {
				add(p+"self_attn.q_proj.bias", dt, heads*hd)
				add(p+"self_attn.k_proj.bias", dt, kvh*hd)
				add(p+"self_attn.v_proj.bias", dt, kvh*hd)
			}
			if cfg["use_qk_norm"] == true {
				add(p+"self_attn.q_norm.weight", dt, hd)
				add(p+"self_attn.k_norm.weight", dt, hd)
			}
			add(p+"self_attn.o_proj.weight", dt, H, heads*hd)
		}
		add(p+"post_attention_layernorm.weight", dt, H)
		if l < num(cfg, "first_k_dense_replace") {
			I := num(cfg, "intermediate_size")
			add(p+"mlp.gate_proj.weight", dt, I, H)
			add(p+"mlp.up_proj.weight", dt, I, H)
			add(p+"mlp.down_proj.weight", dt, H, I)
			continue
		}
		add(p+"mlp.gate.weight", dt, E, H)
		// The expert bias is float32 in the released checkpoints.
		add(p+"mlp.gate.e_score_correction_bias", tensor.F32, E)
		for e := range E {
			q := fmt.Sprintf("%smlp.experts.%d.", p, e)
			add(q+"gate_proj.weight", dt, mI, H)
			add(q+"up_proj.weight", dt, mI, H)
			add(q+"down_proj.weight", dt, H, mI)
		}
		add(p+"mlp.shared_experts.gate_proj.weight", dt, S*mI, H)
		add(p+"mlp.shared_experts.up_proj.weight", dt, S*mI, H)
		add(p+"mlp.shared_experts.down_proj.weight", dt, H, S*mI)
	}
	add("model.norm.weight", dt, H)
	if cfg["tie_word_embeddings"] != true {
		add("lm_head.weight", dt, V, H)
	}
	return s
}

// synth returns the scaled-down checkpoint of d.
func (d deepModel) synth(t testing.TB, mtp bool) synth {
	cfg := d.config(t, true, mtp)
	return synth{modelType: d.modelType, config: cfg, tensors: deepSpecs(cfg, tensor.BF16)}
}

// deepLayouts are the layouts acceptance 2 asks for.
var deepLayouts = []struct {
	id     string
	layout exec.Layout
}{
	{"tp1", exec.Layout{}},
	{"tp2", exec.Layout{TP: 2}},
	{"pp2", exec.Layout{PP: 2}},
	{"pp2vpp2", exec.Layout{PP: 2, VPP: 2}},
	{"tp2ep2", exec.Layout{TP: 2, EP: 2}},
	{"tp2pp2ep2etp1", exec.Layout{TP: 2, PP: 2, EP: 2, ETP: 1}},
}

// deepCases are the (model, layout) pairs: every layout for DeepSeek-V3
// and GLM-4.5-Air, TP1 and TP2+EP2 for GLM-4.5 with q/k norms.
func deepCases() []struct {
	id     string
	m      deepModel
	layout exec.Layout
} {
	var out []struct {
		id     string
		m      deepModel
		layout exec.Layout
	}
	for _, m := range []deepModel{deepSeekV3, glm45Air} {
		for _, l := range deepLayouts {
			out = append(out, struct {
				id     string
				m      deepModel
				layout exec.Layout
			}{m.file + "/" + l.id, m, l.layout})
		}
	}
	for _, l := range []int{0, 4} {
		out = append(out, struct {
			id     string
			m      deepModel
			layout exec.Layout
		}{glm45.file + "/" + deepLayouts[l].id, glm45, deepLayouts[l].layout})
	}
	// Megatron's local (non-TE) layers: the fused norms are stored under
	// their separate names. ROLL's own glm4_moe fails on this MCA -> HF
	// (its te_to_local map turns the MoE layers' pre_mlp_layernorm into the
	// dense layers' fused name, which its add_mca_weight then cannot map).
	out = append(out, struct {
		id     string
		m      deepModel
		layout exec.Layout
	}{glm45Air.file + "/tp2ep2local", glm45Air, exec.Layout{TP: 2, EP: 2, TransformerImpl: "local"}})
	return out
}

// TestDeepSeekGLMTorchReference converts the scaled real checkpoints HF →
// MCA at each layout, has torch (testdata/parallel_reference.py) recompute
// every rank file's tensors from the HF tensors with ROLL's op formulas and
// compare them bit for bit, then converts each MCA checkpoint back to HF
// and requires every tensor byte for byte.
func TestDeepSeekGLMTorchReference(t *testing.T) {
	torchtest.Run(t, testDeepSeekGLMTorchReference, "numpy")
}

func testDeepSeekGLMTorchReference(t *testing.T, py string) {
	dir := t.TempDir()
	var cases []parallelTorchCase
	var ids []string
	for i, c := range deepCases() {
		hf := filepath.Join(dir, c.id, "hf")
		mca := filepath.Join(dir, c.id, "mca")
		c.m.synth(t, true).write(t, hf, 2, uint64(i+1))
		m := stdlibModel(t, c.m.modelType)
		r, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{Layout: c.layout})
		if err != nil {
			t.Fatalf("%s: HF → MCA: %v", c.id, err)
		}
		for _, p := range r.Plan.Problems {
			t.Errorf("%s: unexpected %v problem: %v", c.id, p.Severity, p.Error())
		}
		mc := manifestCase(c.id, hf, mca, r.Plan)
		cases = append(cases, parallelTorchCase{ID: c.id, HFDir: hf, MCADir: mca, Config: mc.Config, Steps: mc.Steps,
			Classification: exec.ShardClassification(m)})
		ids = append(ids, c.id)

		back := filepath.Join(dir, c.id, "back")
		if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
			t.Fatalf("%s: MCA → HF: %v", c.id, err)
		}
		compareCheckpoints(t, hf, back, r.Plan)
	}
	res := runTorchScript(t, py, "parallel_reference.py", dir, cases, ids)
	for _, c := range cases {
		r, ok := res[c.ID]
		if !ok {
			continue
		}
		if n := len(rankFiles(t, c.MCADir)); r.Files != n || r.Checked == 0 {
			t.Errorf("%s: torch checked %d tensors in %d rank files; %d written", c.ID, r.Checked, r.Files, n)
		}
		t.Logf("%s: %d tensors in %d rank files bit-identical to torch's", c.ID, r.Checked, r.Files)
	}
}

// deepWantNames are the MCA names (TP1) ROLL's DeepSeekV3Template
// and Glm4MoeTemplate give the scaled checkpoints, written out from ROLL's
// rules: MLA's q/kv down/up projections with their norms fused into the up
// projections (DeepSeek), QKV with biases and the input norm fused
// (GLM), q/k norms (GLM-4.5), the pre-MLP norm fused into fc1 in the
// first_k_dense_replace dense layers and separate in the MoE layers, the
// router's expert bias and the shared experts in MoE layers; MTP layers
// (MoE, as the layers after first_k_dense_replace) under megatron-core's
// names mtp.layers.<i>.mtp_model_layer.* (ROLL writes
// mtp.layers.<i>.transformer_layer.*, which its own DistConverter then
// fails to classify), the MTP block's norms and projection at
// mtp.layers.<i>.*.
func deepWantNames(cfg map[string]any) []string {
	var out []string
	L, K, E := num(cfg, "num_hidden_layers"), num(cfg, "first_k_dense_replace"), num(cfg, "n_routed_experts")
	_, mla := cfg["kv_lora_rank"]
	out = append(out, "embedding.word_embeddings.weight", "decoder.final_layernorm.weight", "output_layer.weight")
	for l := range L + num(cfg, "num_nextn_predict_layers") {
		p := fmt.Sprintf("decoder.layers.%d.", l)
		if l >= L { // megatron-core's MTP names: the block's own, then its layer's
			m := fmt.Sprintf("mtp.layers.%d.", l-L)
			out = append(out, m+"enorm.weight", m+"hnorm.weight", m+"eh_proj.weight", m+"final_layernorm.weight")
			p = m + "mtp_model_layer."
		}
		out = append(out, p+"self_attention.linear_proj.weight")
		if mla {
			out = append(out, p+"input_layernorm.weight",
				p+"self_attention.linear_q_down_proj.weight",
				p+"self_attention.linear_q_up_proj.layer_norm_weight",
				p+"self_attention.linear_q_up_proj.weight",
				p+"self_attention.linear_kv_down_proj.weight",
				p+"self_attention.linear_kv_up_proj.layer_norm_weight",
				p+"self_attention.linear_kv_up_proj.weight")
		} else {
			out = append(out, p+"self_attention.linear_qkv.layer_norm_weight",
				p+"self_attention.linear_qkv.weight", p+"self_attention.linear_qkv.bias")
			if cfg["use_qk_norm"] == true {
				out = append(out, p+"self_attention.q_layernorm.weight", p+"self_attention.k_layernorm.weight")
			}
		}
		if l < K {
			out = append(out, p+"mlp.linear_fc1.layer_norm_weight", p+"mlp.linear_fc1.weight", p+"mlp.linear_fc2.weight")
			continue
		}
		out = append(out, p+"pre_mlp_layernorm.weight", p+"mlp.router.weight", p+"mlp.router.expert_bias",
			p+"mlp.shared_experts.linear_fc1.weight", p+"mlp.shared_experts.linear_fc2.weight")
		for e := range E {
			out = append(out, fmt.Sprintf("%smlp.experts.local_experts.%d.linear_fc1.weight", p, e),
				fmt.Sprintf("%smlp.experts.local_experts.%d.linear_fc2.weight", p, e))
		}
	}
	slices.Sort(out)
	return out
}

// TestDeepSeekGLMNames converts each scaled checkpoint at TP1 and requires
// exactly ROLL's MCA names, the expert bias kept in float32, and the MCA
// config ROLL's template classes compute (yarn fields from rope_scaling,
// shared expert size, the dense-then-MoE layer pattern, GLM's q/k norm
// flag) written back to the HF config.json.
func TestDeepSeekGLMNames(t *testing.T) {
	for _, d := range []deepModel{deepSeekV3, glm45Air, glm45} {
		t.Run(d.file, func(t *testing.T) {
			dir := t.TempDir()
			s := d.synth(t, true)
			hf := filepath.Join(dir, "hf")
			s.write(t, hf, 1, 3)
			m := stdlibModel(t, d.modelType)
			r, err := exec.ConvertHFToMCA(context.Background(), m, hf, filepath.Join(dir, "mca"), exec.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range r.Plan.Outputs() {
				got = append(got, o.Name)
				if strings.HasSuffix(o.Name, ".mlp.router.expert_bias") && o.DType != tensor.F32 {
					t.Errorf("%s: %v, want the checkpoint's float32", o.Name, o.DType)
				}
			}
			slices.Sort(got)
			if diff := cmp.Diff(deepWantNames(s.config), got); diff != "" {
				t.Errorf("MCA names (-ROLL's +rolltpl):\n%s", diff)
			}
			var mc map[string]any
			b, err := os.ReadFile(filepath.Join(dir, "mca", exec.MCAConfigName))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &mc); err != nil {
				t.Fatal(err)
			}
			K, L := num(s.config, "first_k_dense_replace"), num(s.config, "num_hidden_layers")
			freq := []any{}
			for l := range L {
				freq = append(freq, float64(min(1, l/K)))
			}
			want := map[string]any{
				"moe_layer_freq":                      freq,
				"moe_shared_expert_intermediate_size": float64(num(s.config, "n_shared_experts") * num(s.config, "moe_intermediate_size")),
				"moe_router_enable_expert_bias":       true,
				"moe_router_score_function":           "sigmoid",
				"mtp_loss_scaling_factor":             0.3,
			}
			if d.modelType == "deepseek_v3" {
				want["multi_latent_attention"] = true
				want["qk_layernorm"] = true
				want["rope_type"] = "yarn"
				want["rotary_scaling_factor"] = 40.0
				want["original_max_position_embeddings"] = nil
				want["beta_fast"] = 32.0
				want["beta_slow"] = 1.0
				want["mscale"] = 1.0
				want["mscale_all_dim"] = 1.0
				want["max_sequence_length"] = 163840.0
				want["q_lora_rank"] = float64(num(s.config, "q_lora_rank"))
				want["moe_router_topk_scaling_factor"] = 2.5
				want["rotary_percent"] = 1.0
			} else {
				want["qk_layernorm"] = s.config["use_qk_norm"]
				want["rotary_percent"] = 0.5
				want["add_qkv_bias"] = true
				want["kv_channels"] = 8.0
				want["moe_router_topk_scaling_factor"] = s.config["routed_scaling_factor"]
			}
			gotSub := map[string]any{}
			for k := range want {
				gotSub[k] = mc[k]
			}
			if diff := cmp.Diff(want, gotSub); diff != "" {
				t.Errorf("mca_config.json (-want +got):\n%s", diff)
			}

			// MCA → HF: the keys ROLL's convert_mca_to_hf_config computes.
			back := filepath.Join(dir, "back")
			if _, err := exec.ConvertMCAToHF(context.Background(), m, filepath.Join(dir, "mca"), back, exec.Options{}); err != nil {
				t.Fatal(err)
			}
			b, err = os.ReadFile(filepath.Join(back, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var hc map[string]any
			if err := json.Unmarshal(b, &hc); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"n_shared_experts", "first_k_dense_replace", "rope_scaling", "max_position_embeddings", "num_hidden_layers"} {
				w, _ := json.Marshal(s.config[k])
				g, _ := json.Marshal(hc[k])
				if string(w) != string(g) {
					t.Errorf("config.json back: %s = %s, want %s", k, g, w)
				}
			}
			if d.modelType == "deepseek_v3" && hc["moe_layer_freq"] != 1.0 {
				t.Errorf("config.json back: moe_layer_freq = %v, want 1 (ROLL's)", hc["moe_layer_freq"])
			}

			// --no-mtp: the MTP layer's tensors are left out and counted,
			// the rest is what the model without MTP layers gives.
			noMTP := stdlibModel(t, d.modelType)
			noMTP.NoMTP = true
			r2, err := exec.ConvertHFToMCA(context.Background(), noMTP, hf, filepath.Join(dir, "mca-nomtp"), exec.Options{Layout: exec.Layout{TP: 2, EP: 2}})
			if err != nil {
				t.Fatal(err)
			}
			nMTP := 0
			for _, sp := range s.tensors {
				if strings.HasPrefix(sp.Name, fmt.Sprintf("model.layers.%d.", L)) {
					nMTP++
				}
			}
			if len(r2.Plan.SkippedMTP) != nMTP || nMTP == 0 {
				t.Errorf("--no-mtp left out %d tensors, want the MTP layer's %d", len(r2.Plan.SkippedMTP), nMTP)
			}
			got = got[:0]
			for _, o := range r2.Plan.Outputs() {
				got = append(got, o.Name)
			}
			slices.Sort(got)
			plain := maps.Clone(s.config)
			plain["num_nextn_predict_layers"] = 0
			if diff := cmp.Diff(deepWantNames(plain), got); diff != "" {
				t.Errorf("--no-mtp MCA names (-want +got):\n%s", diff)
			}
		})
	}
}

// writeSparse writes a checkpoint of cfg whose tensor data are holes: one
// shard per decoder layer (globals in the first), the index and
// config.json. Only the headers take disk space.
func writeSparse(t *testing.T, dir string, cfg map[string]any, specs []safetensors.Spec) {
	t.Helper()
	var parts [][]safetensors.Spec
	last := ""
	for _, sp := range specs {
		layer := ""
		if rest, ok := strings.CutPrefix(sp.Name, "model.layers."); ok {
			layer, _, _ = strings.Cut(rest, ".")
		}
		if len(parts) == 0 || (layer != last && layer != "") {
			parts = append(parts, nil)
		}
		if layer != "" {
			last = layer
		}
		parts[len(parts)-1] = append(parts[len(parts)-1], sp)
	}
	writeSparseShards(t, dir, cfg, parts)
}

// writeSparseShards writes config.json (cfg), one shard per part whose
// tensor data are holes (only the headers take disk space) and the index.
func writeSparseShards(t testing.TB, dir string, cfg map[string]any, parts [][]safetensors.Spec) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "config.json"), b)
	weightMap := map[string]string{}
	var total int64
	for i, part := range parts {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(parts))
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		w, err := safetensors.NewWriter(f, part, map[string]string{"format": "pt"})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(w.Size()); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		for _, sp := range part {
			weightMap[sp.Name] = name
			total += sp.Shape.NumElements() * int64(sp.DType.Size())
		}
	}
	if err := safetensors.WriteIndex(filepath.Join(dir, safetensors.IndexFileName), weightMap, total); err != nil {
		t.Fatal(err)
	}
}

// TestDeepSeekGLMRealSizeCheck is what `rolltplc check --checkpoint` does
// for the real DeepSeek-V3 (671B), GLM-4.5-Air (106B) and GLM-4.5 (355B):
// plan from the headers of a sparse checkpoint at real size, MTP layer
// included, at TP1 and at TP8+EP8. The plan is clean; a missing,
// a renamed and a misshapen tensor are each reported naming the tensor and
// the op that wanted it.
func TestDeepSeekGLMRealSizeCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	t.Parallel() // CPU-bound planning from headers, no shared state; beside small tests only (~300 MB peak)
	type edit struct {
		what string
		mod  func(specs []safetensors.Spec) []safetensors.Spec
		want string // regexp of one problem
	}
	drop := func(name string) func([]safetensors.Spec) []safetensors.Spec {
		return func(s []safetensors.Spec) []safetensors.Spec {
			return slices.DeleteFunc(s, func(sp safetensors.Spec) bool { return sp.Name == name })
		}
	}
	rename := func(from, to string) func([]safetensors.Spec) []safetensors.Spec {
		return func(s []safetensors.Spec) []safetensors.Spec {
			for i := range s {
				if s[i].Name == from {
					s[i].Name = to
				}
			}
			return s
		}
	}
	reshape := func(name string, shape ...int64) func([]safetensors.Spec) []safetensors.Spec {
		return func(s []safetensors.Spec) []safetensors.Spec {
			for i := range s {
				if s[i].Name == name {
					s[i].Shape = tensor.Shape(shape)
				}
			}
			return s
		}
	}
	for _, c := range []struct {
		d     deepModel
		edits []edit
	}{
		{deepSeekV3, []edit{
			{"missing kv_a_layernorm", drop("model.layers.40.self_attn.kv_a_layernorm.weight"),
				`no "model\.layers\.40\.self_attn\.kv_a_layernorm\.weight"`},
			{"renamed q_b_proj", rename("model.layers.7.self_attn.q_b_proj.weight", "model.layers.7.self_attn.q_b.weight"),
				`no "model\.layers\.7\.self_attn\.q_b_proj\.weight"`},
			{"misshapen kv_b_proj", reshape("model.layers.5.self_attn.kv_b_proj.weight", 128*(128+64), 512),
				`decoder\.layers\.5\.self_attention\.linear_kv_up_proj\.weight has shape \[24576, 512\]; want \[32768, 512\] \(num_attention_heads × \(qk_head_dim \+ v_head_dim\), kv_lora_rank\)`},
			{"misshapen kv_a_proj_with_mqa", reshape("model.layers.9.self_attn.kv_a_proj_with_mqa.weight", 512, 7168),
				`linear_kv_down_proj\.weight has shape \[512, 7168\]; want \[576, 7168\] \(kv_lora_rank \+ qk_pos_emb_head_dim, hidden_size\)`},
			{"missing dense down_proj", drop("model.layers.1.mlp.down_proj.weight"), `no "model\.layers\.1\.mlp\.down_proj\.weight"`},
			{"missing expert bias", drop("model.layers.30.mlp.gate.e_score_correction_bias"), `no "model\.layers\.30\.mlp\.gate\.e_score_correction_bias"`},
			{"missing MTP eh_proj", drop("model.layers.61.eh_proj.weight"), `MTP layer 0 \(names model\.layers\.61\.\*\) has no \.eh_proj\.weight`},
			{"misshapen MTP kv_b_proj", reshape("model.layers.61.self_attn.kv_b_proj.weight", 128*(128+64), 512),
				`mtp\.layers\.0\.mtp_model_layer\.self_attention\.linear_kv_up_proj\.weight has shape \[24576, 512\]; want \[32768, 512\]`},
		}},
		{glm45Air, []edit{
			{"missing k bias", drop("model.layers.10.self_attn.k_proj.bias"), `missing "model\.layers\.10\.self_attn\.k_proj\.bias"`},
			{"misshapen shared expert", reshape("model.layers.3.mlp.shared_experts.up_proj.weight", 1407, 4096),
				`shared_experts\.up_proj\.weight is \[1407, 4096\]`},
			{"misshapen MTP eh_proj", reshape("model.layers.46.eh_proj.weight", 4096, 4096),
				`mtp\.layers\.0\.eh_proj\.weight has shape \[4096, 4096\]; want \[4096, 8192\] \(hidden_size, 2 × hidden_size\)`},
		}},
		{glm45, []edit{
			{"missing k_norm", drop("model.layers.50.self_attn.k_norm.weight"), `no "model\.layers\.50\.self_attn\.k_norm\.weight"`},
			{"missing MTP enorm", drop("model.layers.92.enorm.weight"), `MTP layer 0 \(names model\.layers\.92\.\*\) has no \.enorm\.weight`},
			{"renamed q_norm", rename("model.layers.2.self_attn.q_norm.weight", "model.layers.2.self_attn.qnorm.weight"),
				`no "model\.layers\.2\.self_attn\.q_norm\.weight"`},
		}},
	} {
		// The models run one after another: each plan peaks at ~300 MB.
		t.Run(c.d.file, func(t *testing.T) {
			cfg := c.d.config(t, false, true)
			specs := deepSpecs(cfg, tensor.BF16)
			var total int64
			for _, sp := range specs {
				total += sp.Shape.NumElements() * int64(sp.DType.Size())
			}
			dir := filepath.Join(t.TempDir(), "hf")
			writeSparse(t, dir, cfg, specs)
			m := stdlibModel(t, c.d.modelType)
			// Clean at TP8+EP8 here; at TP1 the edited checkpoint below
			// must have no problem but in the layers it edits.
			for _, l := range []exec.Layout{{TP: 8, EP: 8}} {
				cp, err := exec.PlanConversion(m, dir, l)
				if err != nil {
					t.Fatal(err)
				}
				if err := cp.Plan.Err(); err != nil {
					t.Errorf("%+v: %v", l, err)
				}
				for _, p := range cp.Plan.Problems {
					t.Errorf("%+v: unexpected %v problem: %v", l, p.Severity, p.Error())
				}
			}
			t.Logf("%d tensors, %s planned from headers", len(specs), exec.HumanBytes(total))
			// All edits at once (they touch different layers): each must
			// be reported, naming the tensor and the op that wanted it.
			edited := slices.Clone(specs)
			for _, e := range c.edits {
				edited = e.mod(edited)
			}
			edir := filepath.Join(t.TempDir(), "hf")
			writeSparse(t, edir, cfg, edited)
			cp, err := exec.PlanConversion(m, edir, exec.Layout{})
			if err != nil {
				t.Fatal(err)
			}
			// The layers the edits touch (a tensor gone, added or
			// reshaped): every problem must be about one of them.
			touched := map[string]bool{}
			before := map[string]tensor.Shape{}
			for _, sp := range specs {
				before[sp.Name] = sp.Shape
			}
			after := map[string]bool{}
			for _, sp := range edited {
				after[sp.Name] = true
				if sh, ok := before[sp.Name]; !ok || !sh.Equal(sp.Shape) {
					touched[layerPrefix(sp.Name)] = true
				}
			}
			for name := range before {
				if !after[name] {
					touched[layerPrefix(name)] = true
				}
			}
			for _, p := range cp.Plan.Problems {
				ok := false
				for prefix := range touched {
					ok = ok || strings.Contains(p.Error(), `"`+prefix)
				}
				if !ok {
					t.Errorf("TP1: a problem outside the edited layers %v: %v", slices.Sorted(maps.Keys(touched)), p.Error())
				}
			}
			for _, e := range c.edits {
				want := e.want + `.*\[[a-z_]+ op #\d+ \(stdlib/templates/[a-z_0-9]+\.rolltpl:\d+:\d+\)\]`
				if strings.HasPrefix(e.want, "MTP layer") {
					// The MTP block's completeness check names the
					// layer, the weight and the tensors present, not
					// an op (no op wants a block weight alone).
					want = e.want
				}
				re := regexp.MustCompile(want)
				found := false
				for _, p := range cp.Plan.Problems {
					if re.MatchString(p.Error()) {
						found = true
						t.Logf("%s: %s", e.what, p.Error())
					}
				}
				if !found {
					t.Errorf("%s: no problem matches %s; problems: %v", e.what, re, cp.Plan.Problems)
				}
			}
		})
	}
}

// layerPrefix is "model.layers.N." for a tensor of layer N, else the name.
func layerPrefix(name string) string {
	rest, ok := strings.CutPrefix(name, "model.layers.")
	if !ok {
		return name
	}
	n, _, _ := strings.Cut(rest, ".")
	return "model.layers." + n + "."
}

// TestDeepSeekGLMUnderROLL runs ROLL's own code (ROLLTPL_ROLL, a checkout
// of alibaba/ROLL) with its hand-written DeepSeekV3Template and
// Glm4MoeTemplate and with the modules `rolltplc build` emits for the
// same types (testdata/roll_deepseek_glm_check.py), on the same random
// weights of the scaled DeepSeek-V3 and GLM-4.5-Air: the computed MCA
// config, the global and per-rank MCA tensors at TP1/TP2/PP2/TP2+EP2/
// TP2+PP2+EP2 and the way back (tensors and config.json) must be equal.
// With an MTP layer, ROLL's classes must fail (the departure the templates
// document) and the built module convert it under megatron-core's names
// and back. Skipped unless ROLLTPL_ROLL is set.
func TestDeepSeekGLMUnderROLL(t *testing.T) {
	roll := os.Getenv("ROLLTPL_ROLL")
	if roll == "" {
		t.Skip("ROLLTPL_ROLL (a checkout of alibaba/ROLL) is not set")
	}
	torchtest.Run(t, func(t *testing.T, py string) {
		dir := t.TempDir()
		all, err := compiler.LibPaths(stdlib.Templates())
		if err != nil {
			t.Fatal(err)
		}
		paths := slices.DeleteFunc(all, func(p string) bool {
			return !strings.HasSuffix(p, "/deepseek_v3.rolltpl") && !strings.HasSuffix(p, "/glm4_moe.rolltpl")
		})
		res := compiler.Compile(paths, compiler.Options{Lib: stdlib.Templates()})
		if res.Diags.HasErrors() {
			t.Fatal(res.Diags.Err())
		}
		files, err := pyemit.Emit(res.Program)
		if err != nil {
			t.Fatal(err)
		}
		build := filepath.Join(dir, "rolltpl_build")
		if err := os.Mkdir(build, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			writeFile(t, filepath.Join(build, f.Name), f.Content)
		}
		type rollCase struct {
			ID        string         `json:"id"`
			ModelType string         `json:"model_type"`
			Config    map[string]any `json:"config"`
			Tensors   [][3]any       `json:"tensors"`
			MTP       bool           `json:"mtp"`
		}
		var cases []rollCase
		for _, d := range []deepModel{deepSeekV3, glm45Air} {
			for _, mtp := range []bool{false, true} {
				s := d.synth(t, mtp)
				c := rollCase{ID: d.file, ModelType: d.modelType, Config: s.config, MTP: mtp}
				for _, sp := range s.tensors {
					c.Tensors = append(c.Tensors, [3]any{sp.Name, sp.DType.String(), sp.Shape})
				}
				cases = append(cases, c)
			}
		}
		b, err := json.Marshal(cases)
		if err != nil {
			t.Fatal(err)
		}
		manifest := filepath.Join(dir, "cases.json")
		writeFile(t, manifest, b)
		out, err := torchtest.Command(py, filepath.Join("testdata", "roll_deepseek_glm_check.py"), roll, build, manifest).CombinedOutput()
		t.Logf("%s", out)
		if err != nil || !strings.Contains(string(out), "ALL OK") {
			t.Fatalf("ROLL's templates and the built modules differ: %v", err)
		}
	}, "numpy")
}

// TestDeepSeekFP8 converts the Hub's DeepSeek-V3 layout, FP8 weights with
// float32 block scales (weight_scale_inv) and its MTP layer, in one pass
// (runtime/exec's FP8 pre-pass consumes the scales, which the template
// does not rename: see its comments) to the same rank files as
// dequantizing first and converting the bf16 checkpoint.
func TestDeepSeekFP8(t *testing.T) {
	t.Parallel()
	m := stdlibModel(t, "deepseek_v3")
	tmp := t.TempDir()
	fx := writeFP8(t, deepSeekV3.synth(t, true), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.F32, [2]int64{16, 16}, 2, 9)
	deq := filepath.Join(tmp, "deq")
	if _, err := exec.DequantizeHF(context.Background(), fx.dir, deq, exec.DequantizeOptions{Scales: m.Template.Scales}); err != nil {
		t.Fatal(err)
	}
	sameTensors(t, fx.ref, deq)
	mla := 0
	for _, q := range fx.quantized {
		// The fixture quantizes every *_proj.weight (not
		// kv_a_proj_with_mqa, which the release also quantizes).
		for _, p := range []string{".q_a_proj.", ".q_b_proj.", ".kv_b_proj.", "layers.4.eh_proj."} {
			if strings.Contains(q, p) {
				mla++
			}
		}
	}
	if mla != 3*5+1 {
		t.Fatalf("%d FP8 MLA/MTP projections among %d quantized weights, want 16", mla, len(fx.quantized))
	}
	for i, l := range []exec.Layout{{}, {TP: 2, EP: 2}, {TP: 2, PP: 2, EP: 2, ETP: 1}} {
		a, b := filepath.Join(tmp, "a", fmt.Sprint(i)), filepath.Join(tmp, "b", fmt.Sprint(i))
		ra, err := exec.ConvertHFToMCA(context.Background(), m, fx.dir, a, exec.Options{Layout: l})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := exec.ConvertHFToMCA(context.Background(), m, deq, b, exec.Options{Layout: l}); err != nil {
			t.Fatal(err)
		}
		sameRankFiles(t, fmt.Sprintf("%+v", l), a, b)
		if f := ra.Plan.FP8; f == nil || f.Weights != len(fx.quantized) || f.Weights == 0 {
			t.Errorf("%+v: FP8 pass %+v, want %d weights", l, f, len(fx.quantized))
		}
	}
}
