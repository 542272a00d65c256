package ir

import (
	"fmt"
	"slices"
	"strings"

	"github.com/rolltpl/rolltpl/lang/diag"
)

// The config checks shared by `rolltplc check --hf-config` and the
// runtime's HF → MCA conversion: each HF config key a template maps must be
// present (or defaulted by the schema), of its schema type, and, for the
// MCA keys the runtime sizes things from, in range. The compiler fills
// [ConfigEntry.Type] from the model type's config schema; the value rules
// of the MCA keys ([MCARules]) are fixed.

// ConfigType is the JSON type the config schema gives an HF key.
type ConfigType struct {
	// Kinds are the alternatives: int, float, bool, str, dict, list, any,
	// ignored, or object (a nested schema).
	Kinds []string
	// Nullable is set when null is allowed.
	Nullable bool
	// Default is set when the schema gives the key a default, so that a
	// config.json may leave it out.
	Default bool
}

func (t *ConfigType) String() string {
	s := strings.Join(t.Kinds, " | ")
	if t.Nullable {
		s += "?"
	}
	return s
}

// fits reports whether a value of kind fits t: an int fits float, null
// fits only a nullable type, any and ignored fit everything.
func (t *ConfigType) fits(kind string) bool {
	for _, k := range t.Kinds {
		switch {
		case k == "any" || k == "ignored":
			return true
		case kind == "null":
			continue
		case k == kind, k == "float" && kind == "int", k == "str" && kind == "string",
			(k == "dict" || k == "object") && kind == "object":
			return true
		}
	}
	return kind == "null" && t.Nullable
}

// ConfigValue is a decoded JSON value as the config checks see it.
type ConfigValue struct {
	// Kind is null, bool, int, float, string, list or object. A number
	// written without a fraction or exponent is an int, however large.
	Kind string
	// Int is the value of an int that fits in 64 bits (IntOK).
	Int   int64
	IntOK bool
	// Str is the value of a string.
	Str string
	// Text is the value as JSON, for messages (shortened).
	Text string
}

// ConfigProblem is a mapped HF config key whose value the checks refuse.
type ConfigProblem struct {
	Entry ConfigEntry
	// Key is the key looked up: Entry.HF after the key-prefix rules.
	Key string
	// Code is hf-config-missing, hf-config-type or hf-config-range.
	Code string
	// Value is the value as JSON ("" when missing).
	Value string
	// Msg says what is wrong: "got string, want int".
	Msg string
}

func (p ConfigProblem) String() string {
	if p.Value == "" {
		return fmt.Sprintf("%s: %s", p.Key, p.Msg)
	}
	return fmt.Sprintf("%s is %s: %s", p.Key, p.Value, p.Msg)
}

// CheckHFConfig checks the keys t maps in an HF config. get looks up a
// dotted key (false when absent). A key the prefix rules place in a
// container the config lacks altogether (a flat Qwen2-VL config.json) is
// read unprefixed, as the conversion reads it. Problems come in the order
// of t.Config:
//
//   - hf-config-missing: absent, and the schema gives no default (ROLL
//     would skip it and leave the MCA key at Megatron's default);
//   - hf-config-type: not of the schema type, or, for an MCA key of
//     [MCARules], not of the rule's kind (true/false for a flag);
//   - hf-config-range: an integer out of the MCA key's rule range
//     (num_hidden_layers 0 or 1e9 for num_layers).
//
// Without a schema type (Entry.Type nil) only the MCA rules apply.
func (t *Template) CheckHFConfig(get func(key string) (ConfigValue, bool)) []ConfigProblem {
	var out []ConfigProblem
	for _, e := range t.Config {
		key := t.EffectiveKey(e.HF)
		v, ok := get(key)
		if !ok && key != e.HF {
			first, _, _ := strings.Cut(key, ".")
			if _, has := get(first); !has {
				key = e.HF
				v, ok = get(key)
			}
		}
		p := ConfigProblem{Entry: e, Key: key, Value: v.Text}
		switch {
		case !ok:
			p.Value = ""
			if e.Type != nil && !e.Type.Default {
				p.Code, p.Msg = diag.HFConfigMissing, "missing, and the schema gives it no default"
				out = append(out, p)
			}
			continue
		case e.Type != nil && !e.Type.fits(v.Kind):
			p.Code, p.Msg = diag.HFConfigType, fmt.Sprintf("got %s, want %s", v.Kind, e.Type)
			out = append(out, p)
			continue
		}
		r, ok := MCARuleFor(e.MCA)
		if !ok {
			continue
		}
		if code, msg := r.Check(v); code != "" {
			p.Code, p.Msg = code, fmt.Sprintf("%s (for MCA %s)", msg, e.MCA)
			out = append(out, p)
		}
	}
	return out
}

// Bounds of the MCA config values: counts (parallel sizes, layers,
// experts) at most MaxCount, which also bounds the tables sized from
// them; model sizes (hidden size, head counts and dimensions, vocabulary)
// at most MaxModelSize, so that the product of two cannot overflow.
const (
	MaxCount     = 1 << 16
	MaxModelSize = 1 << 26
)

// MCARule is what the runtime accepts for one MCA config key.
type MCARule struct {
	Key string
	// Kind is int, bool, string, or strings (a list of strings); IntOrAny
	// is an int when a number, else not checked (linear_attention_freq).
	Kind     string
	Min, Max int64
	// Nullable is set when null is allowed; Required when the key must be
	// present in an mca_config.json.
	Nullable, Required bool
	// OneOf lists the allowed strings (none: any).
	OneOf []string
}

// MCARules lists every MCA config key the runtime reads.
var MCARules = []MCARule{
	{Key: "tensor_model_parallel_size", Kind: "int", Min: 1, Max: MaxCount, Nullable: true},
	{Key: "pipeline_model_parallel_size", Kind: "int", Min: 1, Max: MaxCount, Nullable: true},
	{Key: "virtual_pipeline_model_parallel_size", Kind: "int", Min: 1, Max: MaxCount, Nullable: true},
	{Key: "expert_model_parallel_size", Kind: "int", Min: 1, Max: MaxCount, Nullable: true},
	{Key: "expert_tensor_parallel_size", Kind: "int", Min: 1, Max: MaxCount, Nullable: true},
	{Key: "context_parallel_size", Kind: "int", Min: 1, Max: MaxCount, Nullable: true},
	{Key: "num_layers", Kind: "int", Min: 1, Max: MaxCount, Required: true},
	{Key: "num_moe_experts", Kind: "int", Min: 0, Max: MaxCount, Nullable: true},
	{Key: "mtp_num_layers", Kind: "int", Min: 0, Max: MaxCount, Nullable: true},
	{Key: "linear_attention_freq", Kind: "IntOrAny", Min: 1, Max: MaxCount, Nullable: true},
	{Key: "hidden_size", Kind: "int", Min: 1, Max: MaxModelSize, Required: true},
	{Key: "num_attention_heads", Kind: "int", Min: 1, Max: MaxModelSize, Required: true},
	{Key: "num_query_groups", Kind: "int", Min: 1, Max: MaxModelSize, Nullable: true},
	{Key: "kv_channels", Kind: "int", Min: 1, Max: MaxModelSize, Nullable: true},
	{Key: "ffn_hidden_size", Kind: "int", Min: 1, Max: MaxModelSize, Nullable: true},
	{Key: "moe_ffn_hidden_size", Kind: "int", Min: 1, Max: MaxModelSize, Nullable: true},
	{Key: "padded_vocab_size", Kind: "int", Min: 1, Max: MaxModelSize, Nullable: true},
	{Key: "vocab_size", Kind: "int", Min: 1, Max: MaxModelSize, Nullable: true},
	{Key: "linear_num_key_heads", Kind: "int", Min: 1, Max: MaxModelSize, Nullable: true},
	{Key: "linear_num_value_heads", Kind: "int", Min: 1, Max: MaxModelSize, Nullable: true},
	{Key: "linear_key_head_dim", Kind: "int", Min: 1, Max: MaxModelSize, Nullable: true},
	{Key: "linear_value_head_dim", Kind: "int", Min: 1, Max: MaxModelSize, Nullable: true},
	{Key: "swiglu", Kind: "bool", Nullable: true},
	{Key: "tie_embeddings_and_output_weights", Kind: "bool", Nullable: true},
	{Key: "moe_grouped_gemm", Kind: "bool", Nullable: true},
	{Key: "moe_use_legacy_grouped_gemm", Kind: "bool", Nullable: true},
	{Key: "account_for_embedding_in_pipeline_split", Kind: "bool", Nullable: true},
	{Key: "account_for_loss_in_pipeline_split", Kind: "bool", Nullable: true},
	{Key: "sequence_parallel", Kind: "bool", Nullable: true},
	{Key: "transformer_impl", Kind: "string", Nullable: true, OneOf: []string{"transformer_engine", "local"}},
	{Key: "pipeline_model_parallel_layout", Kind: "string", Nullable: true},
	{Key: "hf_model_type", Kind: "string", Nullable: true},
	{Key: "hf_config_json", Kind: "string", Nullable: true},
	{Key: "layer_types", Kind: "strings", Nullable: true},
}

// MCARuleFor returns the rule of an MCA key.
func MCARuleFor(key string) (MCARule, bool) {
	for _, r := range MCARules {
		if r.Key == key {
			return r, true
		}
	}
	return MCARule{}, false
}

// Want describes the values r accepts.
func (r MCARule) Want() string {
	var s string
	switch r.Kind {
	case "int", "IntOrAny":
		s = fmt.Sprintf("an integer from %d to %d", r.Min, r.Max)
	case "bool":
		s = "true or false"
	case "string":
		s = "a string"
		if len(r.OneOf) > 0 {
			s = fmt.Sprintf("one of %q", r.OneOf)
		}
	case "strings":
		s = "a list of strings"
	}
	if r.Nullable {
		s += " or null"
	}
	return s
}

// Check checks one value against r and returns its code
// (diag.HFConfigType or diag.HFConfigRange) with a
// message ("got string, want an integer from 1 to 65536"), or "" when
// the value is accepted. The elements of a list are not looked at.
func (r MCARule) Check(v ConfigValue) (code, msg string) {
	if v.Kind == "null" {
		if r.Nullable {
			return "", ""
		}
		return diag.HFConfigType, "got null, want " + r.Want()
	}
	switch r.Kind {
	case "int", "IntOrAny":
		if v.Kind != "int" {
			if r.Kind == "IntOrAny" && v.Kind != "float" {
				return "", ""
			}
			return diag.HFConfigType, fmt.Sprintf("got %s, want %s", v.Kind, r.Want())
		}
		if !v.IntOK || v.Int < r.Min || v.Int > r.Max {
			return diag.HFConfigRange, "want " + r.Want()
		}
	case "bool":
		if v.Kind != "bool" {
			return diag.HFConfigType, fmt.Sprintf("got %s, want %s", v.Kind, r.Want())
		}
	case "string":
		if v.Kind != "string" {
			return diag.HFConfigType, fmt.Sprintf("got %s, want %s", v.Kind, r.Want())
		}
		if len(r.OneOf) > 0 && !slices.Contains(r.OneOf, v.Str) {
			return diag.HFConfigRange, "want " + r.Want()
		}
	case "strings":
		if v.Kind != "list" {
			return diag.HFConfigType, fmt.Sprintf("got %s, want %s", v.Kind, r.Want())
		}
	}
	return "", ""
}
