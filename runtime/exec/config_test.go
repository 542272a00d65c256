package exec_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rexec "github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
)

const realConfigs = "../../stdlib/testdata/hf-configs"

func readConfig(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(realConfigs, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mcaConfig(t *testing.T, mt, file string) (*rexec.Model, *rexec.MCAConfig, []byte) {
	t.Helper()
	m := stdlibModel(t, mt)
	src := readConfig(t, file)
	mc, err := rexec.BuildMCAConfig(m, src, file, "/models/"+file, rexec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	return m, mc, src
}

func TestMCAConfigFromRealConfigs(t *testing.T) {
	cases := []struct {
		mt, file string
		lines    []string // exact lines of mca_config.json
	}{
		{"llama", "llama-3-8b.json", []string{
			`  "add_bias_linear": false,`,
			`  "add_qkv_bias": false,`,
			`  "attention_dropout": 0.0,`,
			`  "bf16": true,`,
			`  "ffn_hidden_size": 14336,`,
			`  "fp16": false,`,
			`  "hf_model_type": "llama",`,
			`  "hidden_dropout": 0.0,`,
			`  "hidden_size": 4096,`,
			`  "kv_channels": 128,`, // derived: 4096 / 32
			`  "layernorm_epsilon": 1e-05,`,
			`  "max_sequence_length": 8192,`,
			`  "name_or_path": "/models/llama-3-8b.json",`,
			`  "normalization": "RMSNorm",`,
			`  "num_attention_heads": 32,`,
			`  "num_layers": 32,`,
			`  "num_query_groups": 8,`,
			`  "padded_vocab_size": 128256,`,
			`  "position_embedding_type": "rope",`,
			`  "rope_scaling": null,`,
			`  "rotary_base": 500000.0,`,
			`  "rotary_percent": 1.0,`,
			`  "swiglu": true,`,
			`  "tensor_model_parallel_size": 1,`,
			`  "tie_embeddings_and_output_weights": false,`,
			`  "transformer_impl": "transformer_engine",`,
			`  "virtual_pipeline_model_parallel_size": null`,
		}},
		{"qwen2", "qwen2.5-0.5b.json", []string{
			`  "add_qkv_bias": true,`,
			`  "kv_channels": 64,`, // 896 / 14
			`  "layernorm_epsilon": 1e-06,`,
			`  "num_query_groups": 2,`,
			`  "rotary_base": 1000000.0,`,
			`  "tie_embeddings_and_output_weights": true,`,
		}},
		{"qwen3", "qwen3-0.6b.json", []string{
			`  "add_qkv_bias": false,`,
			`  "kv_channels": 128,`, // head_dim, not 1024 / 16
			`  "qk_layernorm": true,`,
			`  "rotary_base": 1000000,`, // an integer in the file
			`  "tie_embeddings_and_output_weights": true,`,
		}},
	}
	for _, c := range cases {
		t.Run(c.mt, func(t *testing.T) {
			_, mc, src := mcaConfig(t, c.mt, c.file)
			text := string(mc.JSON())
			lines := strings.Split(text, "\n")
			for _, want := range c.lines {
				found := false
				for _, l := range lines {
					if l == want {
						found = true
					}
				}
				if !found {
					t.Errorf("no line %q in\n%s", want, text)
				}
			}
			if !strings.HasSuffix(text, "}\n") || !strings.HasPrefix(text, "{\n  \"") {
				t.Errorf("framing: %q...", text[:20])
			}
			// hf_config_json is the source text verbatim.
			var got map[string]any
			if err := json.Unmarshal(mc.JSON(), &got); err != nil {
				t.Fatal(err)
			}
			if got["hf_config_json"] != string(src) {
				t.Errorf("hf_config_json is not the source text")
			}
			// Keys sorted.
			var keys []string
			for _, l := range lines {
				if strings.HasPrefix(l, `  "`) {
					keys = append(keys, l[3:strings.Index(l[3:], `"`)+3])
				}
			}
			for i := 1; i < len(keys); i++ {
				if keys[i-1] >= keys[i] {
					t.Errorf("keys out of order: %s, %s", keys[i-1], keys[i])
				}
			}
		})
	}
}

// TestSequenceParallel: as McaModelConfig.__post_init__ sets it, sequence
// parallelism is on exactly when tensor and expert parallelism are both
// used.
func TestSequenceParallel(t *testing.T) {
	m := stdlibModel(t, "qwen3_moe")
	src := readConfig(t, "qwen3-0.6b.json")
	for _, c := range []struct {
		l    rexec.Layout
		want bool
	}{{rexec.Layout{}, false}, {rexec.Layout{TP: 2}, false}, {rexec.Layout{EP: 2}, false}, {rexec.Layout{TP: 2, EP: 2}, true}, {rexec.Layout{TP: 4, EP: 2, ETP: 1}, true}} {
		mc, err := rexec.BuildMCAConfig(m, src, "config.json", "/m", c.l)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := mc.Bool("sequence_parallel"); got != c.want {
			t.Errorf("%+v: sequence_parallel %v, want %v", c.l, got, c.want)
		}
	}
}

// TestHFConfigRoundTrip rebuilds config.json from the MCA config: every
// source key comes back with its value; only model_type is forced.
func TestHFConfigRoundTrip(t *testing.T) {
	for _, c := range []struct{ mt, file string }{{"llama", "llama-3-8b.json"}, {"qwen2", "qwen2.5-0.5b.json"}, {"qwen3", "qwen3-0.6b.json"}} {
		m, mc, src := mcaConfig(t, c.mt, c.file)
		out, err := rexec.BuildHFConfig(m, mc, "mca_config.json")
		if err != nil {
			t.Fatal(err)
		}
		a, _ := pyjson.ParseObject(src)
		b, err := pyjson.ParseObject(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pyjson.Encode(a, 2, true), pyjson.Encode(b, 2, true)) {
			t.Errorf("%s: config.json changed:\n%s\n---\n%s", c.file, src, out)
		}
	}
}

// TestVisionConfigPrefixes checks ROLL's VisionTemplate key rule both for
// a nested config (text keys under text_config) and a flat Qwen2-VL one
// (text keys at the top level), and the reverse map back into each.
func TestVisionConfigPrefixes(t *testing.T) {
	m := stdlibModel(t, "qwen2_vl")
	flat := []byte(`{"model_type": "qwen2_vl", "hidden_size": 96, "num_hidden_layers": 2, "num_attention_heads": 12, "num_key_value_heads": 2,
 "vision_config": {"depth": 2}, "image_token_id": 151655, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
 "tie_word_embeddings": true, "torch_dtype": "float16"}`)
	mc, err := rexec.BuildMCAConfig(m, flat, "config.json", "x", rexec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"hidden_size": "96", "num_query_groups": "2", "image_token_id": "151655",
		"tie_embeddings_and_output_weights": "true", "fp16": "true", "bf16": "false", "kv_channels": "8",
		"rope_scaling": `{"mrope_section": [2, 3, 3], "type": "mrope"}`, "vision_config": `{"depth": 2}`} {
		v, ok := mc.Get(k)
		if got := string(pyjson.Encode(v, -1, true)); !ok || got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	out, err := rexec.BuildHFConfig(m, mc, "mca_config.json")
	if err != nil {
		t.Fatal(err)
	}
	o, _ := pyjson.ParseObject(out)
	if o.Has("text_config") || !o.Has("hidden_size") {
		t.Errorf("flat config rebuilt nested: %s", out)
	}
	nested := []byte(`{"model_type": "qwen3_vl", "text_config": {"hidden_size": 64, "num_attention_heads": 8, "head_dim": 16, "num_hidden_layers": 2},
 "hidden_size": 999, "tie_word_embeddings": false}`)
	m3 := stdlibModel(t, "qwen3_vl")
	mc, err = rexec.BuildMCAConfig(m3, nested, "config.json", "x", rexec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := mc.Int("hidden_size"); v != 64 {
		t.Errorf("hidden_size %d, want text_config's 64", v)
	}
	if v, _ := mc.Int("kv_channels"); v != 16 {
		t.Errorf("kv_channels %d, want 16", v)
	}
}
