package mcaconfig

import (
	"fmt"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
	"github.com/rolltpl/rolltpl/runtime/shard"
)

// Config is the content of an mca_config.json: a JSON object written
// with sorted keys and an indent of 2, as ROLL's to_json_string does.
type Config struct {
	obj *pyjson.Object
}

// New wraps a parsed mca_config.json object.
func New(obj *pyjson.Object) *Config { return &Config{obj: obj} }

// Parse parses the text of an mca_config.json and validates the values
// the runtime reads ([Config.Validate]); path is used in errors.
func Parse(path string, text []byte) (*Config, error) {
	obj, err := pyjson.ParseObject(text)
	if err != nil {
		return nil, fmt.Errorf("%s: not a JSON object: %v", path, err)
	}
	c := &Config{obj: obj}
	if err := c.Validate(path, nil); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the values of the config the runtime reads against
// [ir.MCARules]: each has the right JSON type (an integer is written
// without a fraction: 3.0 and "3" are not integers) and, for a size or
// count, is in range; num_layers, hidden_size and num_attention_heads,
// which every Megatron model has and the shape checks need, are present;
// the rank files TP×PP×EP and the pipeline stages PP×VPP number at most
// ir.MaxCount; layer_types is a list of strings, one per layer. path
// names the file in the error; from, when not nil, names the HF key a
// value was copied from (for an mca_config.json built from config.json).
// All problems are reported at once.
func (c *Config) Validate(path string, from func(mcaKey string) string) error {
	var probs []string
	bad := func(key, format string, args ...any) {
		what := key
		if from != nil {
			if hf := from(key); hf != "" && hf != key {
				what = fmt.Sprintf("%s (mca_config %s)", hf, key)
			}
		}
		probs = append(probs, what+" "+fmt.Sprintf(format, args...))
	}
	for _, r := range ir.MCARules {
		v, ok := c.obj.Get(r.Key)
		if !ok {
			if r.Required {
				bad(r.Key, "is missing; want %s", r.Want())
			}
			continue
		}
		cv := Value(v)
		if code, msg := r.Check(cv); code != "" {
			bad(r.Key, "is %s: %s", cv.Text, msg)
			continue
		}
		if r.Kind != "strings" || cv.Kind != "list" {
			continue
		}
		l := v.([]any)
		for i, e := range l {
			if _, ok := e.(string); !ok {
				bad(r.Key, "[%d] is %s; want a string", i, shortJSON(e))
				break
			}
		}
		if n, ok := c.Int("num_layers"); ok && int64(len(l)) != n {
			bad(r.Key, "has %d entries but num_layers is %d; want one per layer", len(l), n)
		}
	}
	if len(probs) == 0 {
		if err := c.Layout().CheckProducts(); err != nil {
			probs = append(probs, err.Error())
		}
	}
	return JoinProblems(path, probs)
}

// JoinProblems joins the problems found in the file at path into one
// error (nil for none).
func JoinProblems(path string, probs []string) error {
	switch len(probs) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("%s: %s", path, probs[0])
	}
	return fmt.Errorf("%s: %d invalid values:\n  %s", path, len(probs), strings.Join(probs, "\n  "))
}

// Value describes a JSON value for the config checks of package ir.
func Value(v any) ir.ConfigValue {
	cv := ir.ConfigValue{Text: shortJSON(v)}
	switch v := v.(type) {
	case nil:
		cv.Kind = "null"
	case bool:
		cv.Kind = "bool"
	case string:
		cv.Kind, cv.Str = "string", v
	case []any:
		cv.Kind = "list"
	case *pyjson.Object:
		cv.Kind = "object"
	case pyjson.Number:
		cv.Kind, cv.Text = "float", v.Text
		if !v.Float {
			cv.Kind = "int"
			cv.Int, cv.IntOK = v.Int()
		}
	}
	return cv
}

// shortJSON renders a JSON value for a message, cut to 40 bytes.
func shortJSON(v any) string {
	b := pyjson.Encode(v, -1, false)
	if len(b) > 40 {
		return string(b[:37]) + "..."
	}
	return string(b)
}

// Object returns the underlying JSON object.
func (c *Config) Object() *pyjson.Object { return c.obj }

// JSON returns the file content: json.dumps(config, indent=2,
// sort_keys=True) + "\n".
func (c *Config) JSON() []byte { return append(pyjson.Encode(c.obj, 2, true), '\n') }

// Get returns the value of key.
func (c *Config) Get(key string) (any, bool) { return c.obj.Get(key) }

// Int returns the integer value of key; false when absent, null or not an
// integer.
func (c *Config) Int(key string) (int64, bool) {
	v, ok := c.obj.Get(key)
	if !ok {
		return 0, false
	}
	n, ok := v.(pyjson.Number)
	if !ok {
		return 0, false
	}
	return n.Int()
}

// Bool returns the boolean value of key.
func (c *Config) Bool(key string) (bool, bool) {
	v, ok := c.obj.Get(key)
	if !ok {
		return false, false
	}
	b, ok := v.(bool)
	return b, ok
}

// String returns the string value of key.
func (c *Config) String(key string) (string, bool) {
	v, ok := c.obj.Get(key)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// LayerValues returns the per-layer string list key (layer_types): one
// entry per layer.
func (c *Config) LayerValues(key string) ([]string, error) {
	v, ok := c.Get(key)
	if !ok || v == nil {
		return nil, fmt.Errorf("mca_config has no %s, which a per-layer name of the template needs", key)
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("mca_config %s is not a list", key)
	}
	out := make([]string, len(l))
	for i, x := range l {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("mca_config %s[%d] is not a string", key, i)
		}
		out[i] = s
	}
	return out, nil
}

// OpsConfig returns the configuration values the ops read.
func (c *Config) OpsConfig() ops.Config {
	get := func(k string) int64 {
		v, _ := c.Int(k)
		return v
	}
	return ops.Config{
		HiddenSize:          get("hidden_size"),
		NumAttentionHeads:   get("num_attention_heads"),
		NumQueryGroups:      get("num_query_groups"),
		KVChannels:          get("kv_channels"),
		LinearNumKeyHeads:   get("linear_num_key_heads"),
		LinearNumValueHeads: get("linear_num_value_heads"),
		LinearKeyHeadDim:    get("linear_key_head_dim"),
		LinearValueHeadDim:  get("linear_value_head_dim"),
		NumMoEExperts:       get("num_moe_experts"),
	}
}

// Layout returns the parallel layout recorded in the config and the model
// facts placement depends on (sizes absent or null are 0, which
// [shard.Layout.Normalized] reads as the Megatron defaults). TEGroupedMoE
// is set as a machine with Transformer Engine >= 1.9 writes (ROLL's
// use_te_grouped_moe).
func (c *Config) Layout() shard.Layout {
	geti := func(k string) int {
		v, _ := c.Int(k)
		return int(v)
	}
	getb := func(k string) bool { v, _ := c.Bool(k); return v }
	l := shard.Layout{
		TP:                  geti("tensor_model_parallel_size"),
		PP:                  geti("pipeline_model_parallel_size"),
		VPP:                 geti("virtual_pipeline_model_parallel_size"),
		EP:                  geti("expert_model_parallel_size"),
		ETP:                 geti("expert_tensor_parallel_size"),
		AccountForEmbedding: getb("account_for_embedding_in_pipeline_split"),
		AccountForLoss:      getb("account_for_loss_in_pipeline_split"),
		NumLayers:           geti("num_layers"),
		NumExperts:          geti("num_moe_experts"),
		MTPNumLayers:        geti("mtp_num_layers"),
		TiedEmbeddings:      getb("tie_embeddings_and_output_weights"),
		Swiglu:              getb("swiglu"),
		MoEGroupedGEMM:      getb("moe_grouped_gemm"),
		LegacyGroupedGEMM:   getb("moe_use_legacy_grouped_gemm"),
		LinearNumKeyHeads:   geti("linear_num_key_heads"),
		LinearNumValueHeads: geti("linear_num_value_heads"),
		LinearKeyHeadDim:    geti("linear_key_head_dim"),
		LinearValueHeadDim:  geti("linear_value_head_dim"),
	}
	l.TransformerImpl, _ = c.String("transformer_impl")
	l.PipelineLayout, _ = c.String("pipeline_model_parallel_layout")
	l.TEGroupedMoE = l.MoEGroupedGEMM && !l.LegacyGroupedGEMM && l.TransformerImpl != shard.ImplLocal
	return l
}

// The keys rolltpl adds to mca_config.json to record the template it was
// converted with.
const (
	// TemplateKey records the name of the template (its HF model type).
	TemplateKey = "rolltpl_template"
	// TemplateDigestKey records the template's digest.
	TemplateDigestKey = "rolltpl_template_sha256"
)

// RecordedTemplate returns the template name and digest recorded in the
// config; ok is false when the config records none (a checkpoint written
// by ROLL, by Megatron in training, or by an older rolltpl).
func (c *Config) RecordedTemplate() (name, digest string, ok bool) {
	name, okN := c.String(TemplateKey)
	digest, okD := c.String(TemplateDigestKey)
	return name, digest, okN && okD && name != ""
}
