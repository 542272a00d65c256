package exec_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
	"github.com/rolltpl/rolltpl/runtime/torchtest"
)

// qwen35Variant is one Qwen3.5 checkpoint shape: a real config.json of
// stdlib/testdata/hf-configs scaled down (names, head counts, the layer
// pattern and tied embeddings kept; widths, vocabulary, depth and expert
// count shrunk).
type qwen35Variant struct {
	id, modelType, config string
	// MoE experts: fused 3-D tensors in the decoder layers (every real
	// Qwen3.5-MoE checkpoint) and, with mtpFused, in the MTP layer too
	// (the Qwen3.6 layout; Qwen3.5 stores the MTP layer's experts one by
	// one).
	mtpFused bool
	// mtp adds the MTP block (HF mtp.*).
	mtp bool
}

// The scaled-down sizes (head counts stay real).
const (
	q35Hidden  = 64
	q35HeadDim = 16 // real 256
	q35LinDim  = 8  // real 128 (key and value head dims)
	q35Inter   = 96
	q35Vocab   = 256
	q35Layers  = 4 // the real pattern's first period: 3 linear, 1 full
	q35Experts = 8 // real 256
	q35MoE     = 16
	q35Shared  = 16
)

// synthQwen35 builds the checkpoint description of v from its real
// config.json scaled down.
func synthQwen35(t *testing.T, v qwen35Variant, dt tensor.DType) synth {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(readConfig(t, v.config), &cfg); err != nil {
		t.Fatal(err)
	}
	text := cfg["text_config"].(map[string]any)
	realTypes := text["layer_types"].([]any)
	types := make([]any, q35Layers)
	copy(types, realTypes)
	text["hidden_size"] = q35Hidden
	text["head_dim"] = q35HeadDim
	text["linear_key_head_dim"] = q35LinDim
	text["linear_value_head_dim"] = q35LinDim
	text["vocab_size"] = q35Vocab
	text["num_hidden_layers"] = q35Layers
	text["layer_types"] = types
	if v.modelType == "qwen3_5_moe" {
		text["num_experts"] = q35Experts
		text["num_experts_per_tok"] = 2
		text["moe_intermediate_size"] = q35MoE
		text["shared_expert_intermediate_size"] = q35Shared
	} else {
		text["intermediate_size"] = q35Inter
	}
	if !v.mtp {
		delete(text, "mtp_num_hidden_layers")
	}
	vc := cfg["vision_config"].(map[string]any)
	vc["depth"], vc["hidden_size"], vc["num_heads"], vc["out_hidden_size"], vc["intermediate_size"] = 2, 32, 4, q35Hidden, 64
	vc["num_position_embeddings"], vc["patch_size"] = 16, 4
	cfg["torch_dtype"] = torchDType(dt)
	return synth{modelType: v.modelType, config: cfg, tensors: qwen35Specs(cfg, v, dt)}
}

// q35num reads an integer config value (panics when it is missing: the
// real configs have every key the specs read).
func q35num(m map[string]any, k string) int64 {
	switch x := m[k].(type) {
	case float64:
		return int64(x)
	case int:
		return int64(x)
	case int64:
		return x
	}
	panic(fmt.Sprintf("config key %s is %T", k, m[k]))
}

// qwen35Specs lists the tensors of a Qwen3.5 checkpoint with the sizes of
// cfg, named and shaped as HF's Qwen3_5(Moe)ForConditionalGeneration
// saves them.
func qwen35Specs(cfg map[string]any, v qwen35Variant, dt tensor.DType) []safetensors.Spec {
	text := cfg["text_config"].(map[string]any)
	H, hd := q35num(text, "hidden_size"), q35num(text, "head_dim")
	heads, kv := q35num(text, "num_attention_heads"), q35num(text, "num_key_value_heads")
	nk, nv := q35num(text, "linear_num_key_heads"), q35num(text, "linear_num_value_heads")
	kd, vd := nk*q35num(text, "linear_key_head_dim"), nv*q35num(text, "linear_value_head_dim")
	kernel, vocab := q35num(text, "linear_conv_kernel_dim"), q35num(text, "vocab_size")
	moe := v.modelType == "qwen3_5_moe"
	var specs []safetensors.Spec
	add := func(name string, shape ...int64) {
		specs = append(specs, safetensors.Spec{Name: name, DType: dt, Shape: tensor.Shape(shape)})
	}
	attention := func(p string) {
		add(p+"self_attn.q_proj.weight", 2*heads*hd, H) // the query and its output gate
		add(p+"self_attn.k_proj.weight", kv*hd, H)
		add(p+"self_attn.v_proj.weight", kv*hd, H)
		add(p+"self_attn.o_proj.weight", H, heads*hd)
		add(p+"self_attn.q_norm.weight", hd)
		add(p+"self_attn.k_norm.weight", hd)
	}
	mlp := func(p string, fused bool) {
		add(p+"post_attention_layernorm.weight", H)
		if !moe {
			I := q35num(text, "intermediate_size")
			add(p+"mlp.gate_proj.weight", I, H)
			add(p+"mlp.up_proj.weight", I, H)
			add(p+"mlp.down_proj.weight", H, I)
			return
		}
		E, I, S := q35num(text, "num_experts"), q35num(text, "moe_intermediate_size"), q35num(text, "shared_expert_intermediate_size")
		add(p+"mlp.gate.weight", E, H)
		if fused { // [E, 2 * I, H] and [E, H, I]
			add(p+"mlp.experts.gate_up_proj", E, 2*I, H)
			add(p+"mlp.experts.down_proj", E, H, I)
		} else {
			for e := range E {
				q := fmt.Sprintf("%smlp.experts.%d.", p, e)
				add(q+"gate_proj.weight", I, H)
				add(q+"up_proj.weight", I, H)
				add(q+"down_proj.weight", H, I)
			}
		}
		add(p+"mlp.shared_expert.gate_proj.weight", S, H)
		add(p+"mlp.shared_expert.up_proj.weight", S, H)
		add(p+"mlp.shared_expert.down_proj.weight", H, S)
		add(p+"mlp.shared_expert_gate.weight", 1, H)
	}
	add("model.language_model.embed_tokens.weight", vocab, H)
	for l, typ := range text["layer_types"].([]any) {
		p := fmt.Sprintf("model.language_model.layers.%d.", l)
		add(p+"input_layernorm.weight", H)
		if typ == "linear_attention" {
			add(p+"linear_attn.in_proj_qkv.weight", 2*kd+vd, H)
			add(p+"linear_attn.in_proj_z.weight", vd, H)
			add(p+"linear_attn.in_proj_b.weight", nv, H)
			add(p+"linear_attn.in_proj_a.weight", nv, H)
			add(p+"linear_attn.conv1d.weight", 2*kd+vd, 1, kernel)
			add(p+"linear_attn.dt_bias", nv)
			add(p+"linear_attn.A_log", nv)
			add(p+"linear_attn.norm.weight", q35num(text, "linear_value_head_dim"))
			add(p+"linear_attn.out_proj.weight", H, vd)
		} else {
			attention(p)
		}
		mlp(p, true)
	}
	add("model.language_model.norm.weight", H)
	if !cfg["tie_word_embeddings"].(bool) {
		add("lm_head.weight", vocab, H)
	}
	if v.mtp {
		add("mtp.fc.weight", H, 2*H)
		add("mtp.norm.weight", H)
		add("mtp.pre_fc_norm_embedding.weight", H)
		add("mtp.pre_fc_norm_hidden.weight", H)
		p := "mtp.layers.0."
		add(p+"input_layernorm.weight", H)
		attention(p)
		mlp(p, v.mtpFused)
	}
	// The vision tower (Qwen3-VL's without deepstack mergers).
	vc := cfg["vision_config"].(map[string]any)
	E, F, ps := q35num(vc, "hidden_size"), q35num(vc, "intermediate_size"), q35num(vc, "patch_size")
	M := E * q35num(vc, "spatial_merge_size") * q35num(vc, "spatial_merge_size")
	vp := "model.visual."
	add(vp+"patch_embed.proj.weight", E, q35num(vc, "in_channels"), q35num(vc, "temporal_patch_size"), ps, ps)
	add(vp+"patch_embed.proj.bias", E)
	add(vp+"pos_embed.weight", q35num(vc, "num_position_embeddings"), E)
	for b := range q35num(vc, "depth") {
		p := fmt.Sprintf("%sblocks.%d.", vp, b)
		for _, n := range []string{"norm1", "norm2"} {
			add(p+n+".weight", E)
			add(p+n+".bias", E)
		}
		add(p+"attn.qkv.weight", 3*E, E)
		add(p+"attn.qkv.bias", 3*E)
		add(p+"attn.proj.weight", E, E)
		add(p+"attn.proj.bias", E)
		add(p+"mlp.linear_fc1.weight", F, E)
		add(p+"mlp.linear_fc1.bias", F)
		add(p+"mlp.linear_fc2.weight", E, F)
		add(p+"mlp.linear_fc2.bias", E)
	}
	add(vp+"merger.norm.weight", E)
	add(vp+"merger.norm.bias", E)
	add(vp+"merger.linear_fc1.weight", M, M)
	add(vp+"merger.linear_fc1.bias", M)
	add(vp+"merger.linear_fc2.weight", q35num(vc, "out_hidden_size"), M)
	add(vp+"merger.linear_fc2.bias", q35num(vc, "out_hidden_size"))
	return specs
}

// qwen35Variants are the checkpoints of acceptance 2 and 3.
var qwen35Variants = []qwen35Variant{
	{id: "0.8b-tied", modelType: "qwen3_5", config: "qwen3.5-0.8b.json", mtp: true},
	{id: "27b-untied", modelType: "qwen3_5", config: "qwen3.5-27b.json", mtp: true},
	{id: "35b-a3b", modelType: "qwen3_5_moe", config: "qwen3.5-35b-a3b.json", mtp: true},
	// Beyond ROLL: the MTP layer's experts fused (Qwen3.6).
	{id: "35b-a3b-fusedmtp", modelType: "qwen3_5_moe", config: "qwen3.5-35b-a3b.json", mtp: true, mtpFused: true},
}

// qwen35Layouts are the parallel layouts of acceptance 2 (EP only for
// MoE models).
var qwen35Layouts = []struct {
	name   string
	layout exec.Layout
	moe    bool
}{
	{"tp1", exec.Layout{}, false},
	{"tp2", exec.Layout{TP: 2}, false},
	{"pp2", exec.Layout{PP: 2}, false},
	{"pp2vpp2", exec.Layout{PP: 2, VPP: 2}, false},
	{"tp2ep2", exec.Layout{TP: 2, EP: 2}, true},
	{"tp2pp2ep2etp1", exec.Layout{TP: 2, PP: 2, EP: 2, ETP: 1}, true},
}

// TestQwen35TorchReference converts the Qwen3.5 checkpoints HF -> MCA at
// every layout and has torch (testdata/parallel_reference.py) recompute
// every rank file's tensors from the HF tensors with ROLL's op formulas
// and the sharding formulas; then converts each back and compares every
// HF tensor bit for bit.
func TestQwen35TorchReference(t *testing.T) { torchtest.Run(t, testQwen35TorchReference, "numpy") }

func testQwen35TorchReference(t *testing.T, py string) {
	dir := t.TempDir()
	var cases []parallelTorchCase
	for _, v := range qwen35Variants {
		for _, lc := range qwen35Layouts {
			if lc.moe && v.modelType != "qwen3_5_moe" {
				continue
			}
			id := v.id + "/" + lc.name
			hf := filepath.Join(dir, id, "hf")
			mca := filepath.Join(dir, id, "mca")
			synthQwen35(t, v, tensor.BF16).write(t, hf, 2, uint64(len(id)))
			m := stdlibModel(t, v.modelType)
			r, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{Layout: lc.layout})
			if err != nil {
				t.Fatalf("%s: HF → MCA: %v", id, err)
			}
			mc := manifestCase(id, hf, mca, r.Plan)
			cases = append(cases, parallelTorchCase{ID: id, HFDir: hf, MCADir: mca, Config: mc.Config, Steps: mc.Steps,
				Classification: exec.ShardClassification(m)})
			back := filepath.Join(dir, id, "back")
			if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
				t.Fatalf("%s: MCA → HF: %v", id, err)
			}
			compareCheckpoints(t, hf, back, r.Plan)
		}
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = c.ID
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

// writeSparseQwen35 writes v at its real size as `rolltplc check
// --checkpoint` sees it: config.json, index and safetensors headers, every
// data region a hole. edit may change the tensor list first.
func writeSparseQwen35(t *testing.T, dir string, v qwen35Variant, edit func([]safetensors.Spec) []safetensors.Spec) {
	t.Helper()
	var cfg map[string]any
	src := readConfig(t, v.config)
	if err := json.Unmarshal(src, &cfg); err != nil {
		t.Fatal(err)
	}
	specs := qwen35Specs(cfg, v, tensor.BF16)
	if edit != nil {
		specs = edit(specs)
	}
	if !v.mtp {
		delete(cfg["text_config"].(map[string]any), "mtp_num_hidden_layers")
	}
	size := func(sp safetensors.Spec) int64 { return sp.Shape.NumElements() * int64(sp.DType.Size()) }
	var shards [][]safetensors.Spec
	var cur []safetensors.Spec
	var curSize int64
	for _, sp := range specs {
		if len(cur) > 0 && curSize+size(sp) > exec.DefaultMaxShardSize {
			shards, cur, curSize = append(shards, cur), nil, 0
		}
		cur = append(cur, sp)
		curSize += size(sp)
	}
	writeSparseShards(t, dir, cfg, append(shards, cur))
}

// TestQwen35CheckRealSize plans each Qwen3.5 model at its real size from
// headers only (what check --checkpoint does), clean; then a missing, a
// renamed and a misshapen tensor are each reported naming the tensor and
// the op that wanted it.
func TestQwen35CheckRealSize(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	t.Parallel() // CPU-bound planning from headers, no shared state
	layout := exec.Layout{TP: 2, PP: 2}
	for _, v := range qwen35Variants {
		t.Run(v.id, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "hf")
			writeSparseQwen35(t, dir, v, nil)
			m := stdlibModel(t, v.modelType)
			cp, err := exec.PlanConversion(m, dir, layout)
			if err != nil {
				t.Fatal(err)
			}
			if err := cp.Plan.Err(); err != nil {
				t.Fatalf("real-size plan: %v", err)
			}
			var bytes int64
			for _, in := range cp.Plan.Inputs {
				bytes += in.Size
			}
			t.Logf("%s: %d tensors, %.1f GB planned from headers", v.id, len(cp.Plan.Inputs), float64(bytes)/1e9)
		})
	}
	const l0 = "model.language_model.layers.0."
	for _, c := range []struct {
		name string
		v    qwen35Variant
		edit func([]safetensors.Spec) []safetensors.Spec
		want string
	}{
		{"missing in_proj_z", qwen35Variants[1], func(s []safetensors.Spec) []safetensors.Spec {
			return slices.DeleteFunc(s, func(sp safetensors.Spec) bool { return sp.Name == l0+"linear_attn.in_proj_z.weight" })
		}, `missing "model\.language_model\.layers\.0\.linear_attn\.in_proj_z\.weight" \[qwen3_5_gdn op #\d+ \(stdlib/templates/qwen3_5\.rolltpl:\d+:\d+\)\]`},
		{"renamed in_proj_qkv", qwen35Variants[0], func(s []safetensors.Spec) []safetensors.Spec {
			for i := range s {
				if s[i].Name == l0+"linear_attn.in_proj_qkv.weight" {
					s[i].Name = l0 + "linear_attn.in_proj_qkvz.weight"
				}
			}
			return s
		}, `(?s)no op of template qwen3_5 matches the name \(pure name "\.linear_attn\.in_proj_qkvz\.weight"\).*missing "model\.language_model\.layers\.0\.linear_attn\.in_proj_qkv\.weight" \[qwen3_5_gdn op`},
		{"misshapen in_proj_b", qwen35Variants[0], func(s []safetensors.Spec) []safetensors.Spec {
			for i := range s {
				if s[i].Name == l0+"linear_attn.in_proj_b.weight" {
					s[i].Shape = tensor.Shape{s[i].Shape[0] + 1, s[i].Shape[1]}
				}
			}
			return s
		}, `component 4 has shape \[16, 1088\].*\[qwen3_5_gdn op #\d+ .*"model\.language_model\.layers\.0\.linear_attn\.in_proj_b\.weight"`},
		{"missing MTP fc", qwen35Variants[0], func(s []safetensors.Spec) []safetensors.Spec {
			return slices.DeleteFunc(s, func(sp safetensors.Spec) bool { return sp.Name == "mtp.fc.weight" })
		}, `MTP layer 0 \(names mtp\.layers\.0\.\* and mtp\.\*\) has no \.eh_proj\.weight \(from \.fc\.weight of the rename op #\d+ \(stdlib/templates/qwen3_5\.rolltpl:\d+:\d+\)\)`},
		{"misshapen fused MTP experts", qwen35Variants[3], func(s []safetensors.Spec) []safetensors.Spec {
			for i := range s {
				if s[i].Name == "mtp.layers.0.mlp.experts.gate_up_proj" {
					s[i].Shape = tensor.Shape{s[i].Shape[0], s[i].Shape[1] + 4, s[i].Shape[2]}
				}
			}
			return s
		}, `mtp\.layers\.0\.mtp_model_layer\.mlp\.experts\.local_experts\.0\.linear_fc1\.weight has shape \[1028, 2048\]; want \[1024, 2048\] \(2 × moe_ffn_hidden_size \(swiglu\), hidden_size\) \[split_stack_experts op #\d+ \(stdlib/templates/qwen3_5_moe\.rolltpl:\d+:\d+\)\]: "mtp\.layers\.0\.mlp\.experts\.gate_up_proj"`},
		{"misshapen fused experts", qwen35Variants[2], func(s []safetensors.Spec) []safetensors.Spec {
			for i := range s {
				if s[i].Name == l0+"mlp.experts.down_proj" {
					s[i].Shape = tensor.Shape{s[i].Shape[0], s[i].Shape[1], s[i].Shape[2] + 1}
				}
			}
			return s
		}, `decoder\.layers\.0\.mlp\.experts\.local_experts\.0\.linear_fc2\.weight has shape \[2048, 513\]; want \[2048, 512\] \(hidden_size, moe_ffn_hidden_size\) \[split_experts op #\d+ \(stdlib/templates/qwen3_5_moe\.rolltpl:\d+:\d+\)\]: "model\.language_model\.layers\.0\.mlp\.experts\.down_proj"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "hf")
			writeSparseQwen35(t, dir, c.v, c.edit)
			cp, err := exec.PlanConversion(stdlibModel(t, c.v.modelType), dir, layout)
			if err != nil {
				t.Fatal(err)
			}
			perr := cp.Plan.Err()
			if perr == nil {
				t.Fatal("no problem reported")
			}
			if !regexp.MustCompile(c.want).MatchString(perr.Error()) {
				t.Errorf("problem %q does not match %q", perr, c.want)
			}
		})
	}
}

// lossyCase is one case of testdata/zero_centered_roundtrip.py.
type lossyCase struct {
	ID      string   `json:"id"`
	HFDir   string   `json:"hf_dir"`
	BackDir string   `json:"back_dir"`
	Lossy   []string `json:"lossy"`
}

// TestQwen35ZeroCenteredRoundTrip: with random bf16 and f16 GDN output
// norms (not the near-1 values trained ones have), the round trip gives
// every tensor back bit for bit except those norms, which equal torch's
// (w - 1) + 1 in their dtype: ROLL's zero-centred RMSNorm op is lossy by
// nature, and the runtime is exactly as lossy.
func TestQwen35ZeroCenteredRoundTrip(t *testing.T) {
	torchtest.Run(t, testQwen35ZeroCenteredRoundTrip, "numpy")
}

func testQwen35ZeroCenteredRoundTrip(t *testing.T, py string) {
	dir := t.TempDir()
	var cases []lossyCase
	for _, dt := range []tensor.DType{tensor.BF16, tensor.F16} {
		for _, v := range []qwen35Variant{qwen35Variants[0], qwen35Variants[3]} {
			id := v.id + "/" + dt.String()
			hf := filepath.Join(dir, id, "hf")
			synthQwen35(t, v, dt).write(t, hf, 2, 3)
			var lossy []string
			rng := rand.New(rand.NewPCG(5, uint64(len(id))))
			editShard(t, hf, func(specs []safetensors.Spec, data map[string][]byte) []safetensors.Spec {
				for _, sp := range specs {
					if strings.HasSuffix(sp.Name, "linear_attn.norm.weight") {
						for i := range data[sp.Name] {
							data[sp.Name][i] = byte(rng.Uint32())
						}
						lossy = append(lossy, sp.Name)
					}
				}
				return specs
			})
			m := stdlibModel(t, v.modelType)
			mca := filepath.Join(dir, id, "mca")
			if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{Layout: exec.Layout{TP: 2}}); err != nil {
				t.Fatalf("%s: HF → MCA: %v", id, err)
			}
			back := filepath.Join(dir, id, "back")
			if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
				t.Fatalf("%s: MCA → HF: %v", id, err)
			}
			cases = append(cases, lossyCase{ID: id, HFDir: hf, BackDir: back, Lossy: lossy})
		}
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = c.ID
	}
	path := filepath.Join(dir, "lossy.json")
	b, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
	result := filepath.Join(dir, "lossy-result.json")
	if out, err := torchtest.Command(py, filepath.Join("testdata", "zero_centered_roundtrip.py"), path, result).CombinedOutput(); err != nil {
		t.Fatalf("zero_centered_roundtrip.py: %v\n%s", err, out)
	}
	var res struct {
		Cases map[string]struct {
			Checked int      `json:"checked"`
			Changed int      `json:"lossy_changed"`
			Errors  []string `json:"errors"`
		} `json:"cases"`
	}
	rb, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rb, &res); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		r, ok := res.Cases[id]
		if !ok {
			t.Errorf("%s: no result", id)
			continue
		}
		for _, e := range r.Errors {
			t.Errorf("%s: %s", id, e)
		}
		if r.Checked == 0 || r.Changed == 0 {
			t.Errorf("%s: %d tensors checked, %d lossy norms changed by the round trip: the test exercises nothing", id, r.Checked, r.Changed)
		}
		t.Logf("%s: %d tensors back as torch computes them; %d of the zero-centred norms changed by (w - 1) + 1", id, r.Checked, r.Changed)
	}
}

// TestQwen35UnderROLL runs alibaba/ROLL's own converter code
// (testdata/qwen3_5_roll_check.py) on the Qwen3.5 checkpoints: ROLL's own
// qwen3_5/qwen3_5_moe registrations and the modules `rolltplc build` emits
// for them give the same rank tensors as the Go runtime's rank files, at
// TP1, TP2, PP2, TP2+EP2 and TP2+PP2+EP2+ETP1, and ROLL converts them back
// to the HF tensors. It needs a checkout of ROLL named by ROLLTPL_ROLL
// (skipped without) and python3 with torch.
func TestQwen35UnderROLL(t *testing.T) {
	roll := os.Getenv("ROLLTPL_ROLL")
	if roll == "" {
		t.Skip("ROLLTPL_ROLL (a checkout of alibaba/ROLL) is not set")
	}
	torchtest.Run(t, func(t *testing.T, py string) { testQwen35UnderROLL(t, py, roll) }, "numpy")
}

func testQwen35UnderROLL(t *testing.T, py, roll string) {
	dir := t.TempDir()
	files, err := pyemit.Emit(stdlibProgram(t))
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
		ID     string `json:"id"`
		HFDir  string `json:"hf_dir"`
		MCADir string `json:"mca_dir"`
	}
	var cases []rollCase
	for _, v := range qwen35Variants {
		for _, lc := range qwen35Layouts {
			if lc.layout.VPP > 1 || lc.moe && v.modelType != "qwen3_5_moe" {
				continue
			}
			id := v.id + "/" + lc.name
			hf := filepath.Join(dir, id, "hf")
			mca := filepath.Join(dir, id, "mca")
			synthQwen35(t, v, tensor.BF16).write(t, hf, 2, uint64(len(id)))
			if _, err := exec.ConvertHFToMCA(context.Background(), stdlibModel(t, v.modelType), hf, mca, exec.Options{Layout: lc.layout}); err != nil {
				t.Fatalf("%s: HF → MCA: %v", id, err)
			}
			cases = append(cases, rollCase{ID: id, HFDir: hf, MCADir: mca})
		}
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = c.ID
	}
	path := filepath.Join(dir, "roll.json")
	b, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
	result := filepath.Join(dir, "roll-result.json")
	if out, err := torchtest.Command(py, filepath.Join("testdata", "qwen3_5_roll_check.py"), roll, build, path, result).CombinedOutput(); err != nil {
		t.Fatalf("qwen3_5_roll_check.py: %v\n%s", err, out)
	}
	var res struct {
		Cases map[string]torchResult `json:"cases"`
	}
	rb, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rb, &res); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		r, ok := res.Cases[id]
		if !ok {
			t.Errorf("%s: no result", id)
			continue
		}
		for _, e := range r.Errors {
			t.Errorf("%s: %s", id, e)
		}
		if r.Checked == 0 {
			t.Errorf("%s: nothing checked", id)
		}
		t.Logf("%s: %d tensors equal under ROLL's converter, the built module and the Go runtime", id, r.Checked)
	}
}

// perExpert matches an expert's own tensor: prefix, expert, projection.
var perExpert = regexp.MustCompile(`^(.*\.mlp\.experts\.)(\d+)\.(gate_proj|up_proj|down_proj)\.weight$`)

// compareFusedBack checks an MCA -> HF round trip of a checkpoint that
// keeps some experts one by one (Qwen3.5-MoE's MTP layer) and whose
// mca_config.json has no per-layer op record (exec.LayerOpsKey): rolltpl
// then writes every expert group fused, so back must hold exactly the HF tensors with
// each group of per-expert tensors replaced by its fused pair
// (gate_up_proj [E, 2I, H]: each expert's gate then up; down_proj
// [E, H, I]), bit for bit.
func compareFusedBack(t *testing.T, hfDir, backDir string) {
	t.Helper()
	x, err := safetensors.OpenSharded(hfDir)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	y, err := safetensors.OpenSharded(backDir)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	type want struct {
		dt    tensor.DType
		shape tensor.Shape
		data  []byte
	}
	wants := map[string]*want{}
	experts := map[string]map[int]map[string][]byte{} // prefix → expert → projection → bytes
	var shapes = map[string]tensor.Shape{}
	var dt tensor.DType
	for _, tx := range x.Tensors() {
		data := append([]byte(nil), tx.File.Data(tx.TensorInfo)...)
		tx.File.Release(tx.TensorInfo)
		if m := perExpert.FindStringSubmatch(tx.Name); m != nil {
			e, _ := strconv.Atoi(m[2])
			if experts[m[1]] == nil {
				experts[m[1]] = map[int]map[string][]byte{}
			}
			if experts[m[1]][e] == nil {
				experts[m[1]][e] = map[string][]byte{}
			}
			experts[m[1]][e][m[3]] = data
			shapes[m[3]], dt = tx.Shape, tx.DType
			continue
		}
		wants[tx.Name] = &want{tx.DType, tx.Shape, data}
	}
	for prefix, byExpert := range experts {
		E := int64(len(byExpert))
		gu, down := &want{dt: dt}, &want{dt: dt}
		for e := range len(byExpert) {
			gu.data = append(append(gu.data, byExpert[e]["gate_proj"]...), byExpert[e]["up_proj"]...)
			down.data = append(down.data, byExpert[e]["down_proj"]...)
		}
		g, d := shapes["gate_proj"], shapes["down_proj"]
		gu.shape = tensor.Shape{E, 2 * g[0], g[1]}
		down.shape = tensor.Shape{E, d[0], d[1]}
		wants[prefix+"gate_up_proj"], wants[prefix+"down_proj"] = gu, down
	}
	if len(experts) == 0 {
		t.Errorf("%s has no per-expert tensors", hfDir)
	}
	n := 0
	for _, ty := range y.Tensors() {
		w, ok := wants[ty.Name]
		if !ok {
			t.Errorf("%s: came back but is not in the HF checkpoint (fused)", ty.Name)
			continue
		}
		if w.dt != ty.DType || !w.shape.Equal(ty.Shape) || !bytes.Equal(w.data, ty.File.Data(ty.TensorInfo)) {
			t.Errorf("%s: %v%v came back as %v%v or bytes differ", ty.Name, w.dt, w.shape, ty.DType, ty.Shape)
		}
		ty.File.Release(ty.TensorInfo)
		n++
	}
	if n != len(wants) {
		t.Errorf("round trip has %d tensors, want %d", n, len(wants))
	}
}

// TestQwen35VerifyAndNoMTP: `verify` of each Qwen3.5 checkpoint (the
// 35B-A3B one with its MTP experts one by one too) passes at TP2+PP2 (EP2
// for MoE), and with --no-mtp
// (Model.NoMTP) the MTP weights are left out of the rank files and
// counted, mca_config says no MTP layers, and everything else converts.
func TestQwen35VerifyAndNoMTP(t *testing.T) {
	t.Parallel()
	for _, v := range qwen35Variants {
		t.Run(v.id, func(t *testing.T) {
			dir := t.TempDir()
			hf := filepath.Join(dir, "hf")
			synthQwen35(t, v, tensor.BF16).write(t, hf, 2, 11)
			layout := exec.Layout{TP: 2, PP: 2}
			if v.modelType == "qwen3_5_moe" {
				layout.EP = 2
			}
			rep, err := exec.Verify(context.Background(), stdlibModel(t, v.modelType), hf, exec.VerifyOptions{TempDir: dir, Layout: layout})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() || rep.Compared == 0 {
				t.Errorf("verify: %d compared, diffs %v", rep.Compared, rep.Diffs)
			}

			m := stdlibModel(t, v.modelType)
			m.NoMTP = true
			mca := filepath.Join(dir, "mca")
			r, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{Layout: layout})
			if err != nil {
				t.Fatal(err)
			}
			var mtp int
			for _, in := range r.Plan.Inputs {
				if strings.HasPrefix(in.Name, "mtp.") {
					mtp++
				}
			}
			if mtp == 0 || len(r.Plan.SkippedMTP) != mtp {
				t.Errorf("%d MTP weights skipped, the checkpoint has %d", len(r.Plan.SkippedMTP), mtp)
			}
			mc, err := os.ReadFile(filepath.Join(mca, exec.MCAConfigName))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(mc), `"mtp_num_layers": null`) {
				t.Errorf("mca_config.json does not say no MTP layers")
			}
			var layers int
			for _, p := range rankFiles(t, mca) {
				f, err := torchsave.Open(p)
				if err != nil {
					t.Fatal(err)
				}
				for _, tt := range f.Tensors() {
					if strings.Contains(tt.Name, "decoder.layers.") {
						layers++
					}
					if strings.Contains(tt.Name, "mtp.") {
						t.Errorf("%s: %s written with --no-mtp", p, tt.Name)
					}
				}
			}
			if layers == 0 {
				t.Errorf("no decoder layer tensors in the rank files")
			}
		})
	}
}
