package schema_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler/schema"
)

const omniLike = `{
  "architectures": ["Qwen3OmniMoeForConditionalGeneration"],
  "model_type": "qwen3_omni_moe",
  "enable_audio_output": false,
  "quantization_config": {"quant_method": "fp8"},
  "thinker_config": {
    "audio_token_id": 151646,
    "text_config": {
      "hidden_size": 2048,
      "rms_norm_eps": 1e-06,
      "rope_theta": 1000000.0,
      "rope_scaling": {"mrope_section": [24, 20, 20], "rope_type": "default"},
      "sliding_window": null,
      "mlp_only_layers": [],
      "eos_token_id": [151645, 151643],
      "mixed": [1, 2.5],
      "odd": [1, "a"],
      "maybe": [1, null],
      "grid": [[1, 2], [3]],
      "layers": [{"a": 1}]
    },
    "vision_config": {"depth": 27, "hidden_act": "gelu_pytorch_tanh"}
  },
  "talker_config": {"use": 1, "bad-key": 2},
  "name\"quoted": "x\ty"
}`

func TestInfer(t *testing.T) {
	cfg := decode(t, omniLike).(map[string]any)
	got := schema.Infer("qwen3_omni_moe", cfg)
	want := `# Inferred by ` + "`rolltplc schema infer`" + ` from a config.json: review the types and defaults.
# Left out key "name\"quoted": not a field name.
schema qwen3_omni_moe {
    architectures: list[str]
    enable_audio_output: bool = false
    model_type: str = "qwen3_omni_moe"
    quantization_config: dict
    talker_config: qwen3_omni_moe_talker_config
    thinker_config: qwen3_omni_moe_thinker_config
}

# Inferred by ` + "`rolltplc schema infer`" + ` from talker_config in a config.json: review the types and defaults.
# Left out key "bad-key": not a field name.
schema qwen3_omni_moe_talker_config {
    use: int = 1
}

# Inferred by ` + "`rolltplc schema infer`" + ` from thinker_config in a config.json: review the types and defaults.
schema qwen3_omni_moe_thinker_config {
    audio_token_id: int = 151646
    text_config: qwen3_omni_moe_thinker_config_text_config
    vision_config: qwen3_omni_moe_thinker_config_vision_config
}

# Inferred by ` + "`rolltplc schema infer`" + ` from thinker_config.text_config in a config.json: review the types and defaults.
schema qwen3_omni_moe_thinker_config_text_config {
    eos_token_id: list[int]
    grid: list[list[int]]
    hidden_size: int = 2048
    layers: list[dict]
    maybe: list[int?]
    mixed: list[float]
    mlp_only_layers: list[any]
    odd: list[any]
    rms_norm_eps: float = 1e-06
    rope_scaling: dict
    rope_theta: float = 1000000.0
    sliding_window: any? = null
}

# Inferred by ` + "`rolltplc schema infer`" + ` from thinker_config.vision_config in a config.json: review the types and defaults.
schema qwen3_omni_moe_thinker_config_vision_config {
    depth: int = 27
    hidden_act: str = "gelu_pytorch_tanh"
}
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Infer mismatch (-want +got):\n%s", diff)
	}
}

// TestInferRoundTrip: the inferred text parses and loads, and the config it
// came from validates against it.
func TestInferRoundTrip(t *testing.T) {
	for name, src := range map[string]string{
		"omni":   omniLike,
		"empty":  `{}`,
		"scalar": `{"a": -1, "b": -0.5, "c": 1E5, "d": "\u00e9\\\"", "e": true, "f": null}`,
		"nested": `{"x_config": {"y": 1, "z_config": {}}, "x": {"config": 2}}`,
	} {
		t.Run(name, func(t *testing.T) {
			cfg := decode(t, src).(map[string]any)
			text := schema.Infer("m", cfg)
			set := loadSet(t, text)
			if p := set.Validate("m", cfg); len(p) != 0 {
				t.Errorf("config does not validate against its inferred schema: %v\n%s", p, text)
			}
			if u := set.UnknownKeys("m", cfg); name != "omni" && len(u) != 0 {
				t.Errorf("unknown keys %v\n%s", u, text)
			}
		})
	}
}

func TestInferUseKeyIsAField(t *testing.T) {
	set := loadSet(t, schema.Infer("m", map[string]any{"use": json.Number("1")}))
	if f := set.Schema("m").Field("use"); f == nil || f.Type.String() != "int" || f.Default != "1" {
		t.Errorf("field use = %+v", f)
	}
}

// TestInferNameClash: a nested schema name that is already taken gets a
// number.
func TestInferNameClash(t *testing.T) {
	got := schema.Infer("a", map[string]any{
		"b_config":          map[string]any{"c_config": map[string]any{"x": json.Number("1")}},
		"b_config_c_config": map[string]any{"y": json.Number("2")},
	})
	set := loadSet(t, got)
	for name, field := range map[string]string{"a_b_config_c_config": "y", "a_b_config_c_config_2": "x"} {
		if set.Schema(name).Field(field) == nil {
			t.Errorf("schema %s has no field %s in\n%s", name, field, got)
		}
	}
}

// TestInferPlainDecode: numbers decoded without UseNumber are float64; the
// integral ones infer int, the others float literals that stay floats.
func TestInferPlainDecode(t *testing.T) {
	var cfg map[string]any
	if err := json.Unmarshal([]byte(`{"a": 3, "b": 0.5, "c": 1e-6, "d": 1e300}`), &cfg); err != nil {
		t.Fatal(err)
	}
	set := loadSet(t, schema.Infer("m", cfg))
	got := map[string]string{}
	for name, f := range set.Schema("m").Fields {
		got[name] = f.Type.String() + " = " + f.Default
	}
	want := map[string]string{"a": "int = 3", "b": "float = 0.5", "c": "float = 1e-06", "d": "float = 1e+300"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
