package exec

import (
	"fmt"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/lang/srcfile"
	"github.com/rolltpl/rolltpl/runtime/mcaconfig"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
)

// MCAConfig is the content of an mca_config.json (package mcaconfig).
type MCAConfig = mcaconfig.Config

// NewMCAConfig wraps a parsed mca_config.json object.
func NewMCAConfig(obj *pyjson.Object) *MCAConfig { return mcaconfig.New(obj) }

// ParseMCAConfig parses the text of an mca_config.json and validates the
// values the runtime reads; path is used in errors.
func ParseMCAConfig(path string, text []byte) (*MCAConfig, error) { return mcaconfig.Parse(path, text) }

// MaxConfigSize bounds the config files read into memory (config.json,
// mca_config.json, the tracker); real ones are a few KB.
const MaxConfigSize = 64 << 20

// ReadConfigFile reads a small config file: a regular file (a FIFO is
// refused, never waited on) of at most MaxConfigSize bytes.
func ReadConfigFile(path string) ([]byte, error) {
	return srcfile.ReadFileMax(path, MaxConfigSize)
}

// CheckHFConfig runs the template's checks of the HF config keys it maps
// ([ir.Template.CheckHFConfig], as `rolltplc check --hf-config` does):
// a mapped key missing without a schema default, of the wrong type, or
// out of range for its MCA key is an error naming the file and the key,
// all at once.
func CheckHFConfig(m *Model, hf *pyjson.Object, hfPath string) error {
	var probs []string
	for _, p := range hfConfigProblems(m.Template, hf) {
		probs = append(probs, fmt.Sprintf("%s [%s]", p, p.Code))
	}
	return mcaconfig.JoinProblems(hfPath, probs)
}

// hfValue looks up a (prefixed) dotted key in the HF config. When the
// prefix's container is missing altogether (a flat Qwen2-VL config.json,
// whose text keys sit at the top level; transformers builds text_config
// from them), the unprefixed key is read instead.
func hfValue(hf *pyjson.Object, key, plain string) (any, bool) {
	if v, ok := pyjson.Lookup(hf, key); ok {
		return v, true
	}
	if key != plain {
		first, _, _ := strings.Cut(key, ".")
		if _, ok := hf.Get(first); !ok {
			return pyjson.Lookup(hf, plain)
		}
	}
	return nil, false
}

// setHFValue is the inverse of hfValue for the reverse map: it sets the
// dotted key, or the unprefixed top-level key when the prefix's container
// does not exist.
func setHFValue(hf *pyjson.Object, key, plain string, v any) {
	parts := strings.Split(key, ".")
	cur := hf
	for _, p := range parts[:len(parts)-1] {
		next, ok := cur.Get(p)
		obj, isObj := next.(*pyjson.Object)
		if !ok || !isObj {
			hf.Set(plain, v)
			return
		}
		cur = obj
	}
	cur.Set(parts[len(parts)-1], v)
}

// configMapping is one entry of the template's config map with the key-prefix
// rules applied: HF is the (prefixed) key looked up, Plain the key as
// written.
type configMapping struct {
	HF, Plain, MCA string
}

func (m *Model) configMappings() []configMapping {
	out := make([]configMapping, len(m.Template.Config))
	for i, e := range m.Template.Config {
		out[i] = configMapping{HF: m.Template.EffectiveKey(e.HF), Plain: e.HF, MCA: e.MCA}
	}
	return out
}

// BuildMCAConfig converts an HF config.json to mca_config.json content the
// way ROLL's convert_hf_to_mca_config_kws and the config's __post_init__
// do (roll-converter-spec.md §4.1), in this order of precedence:
//
//  1. the parallel sizes of layout (1 when unset), transformer_impl,
//     bf16/fp16 from torch_dtype (or dtype);
//  2. every key of the template's config map present in the HF config
//     (dotted keys walk nested objects; missing keys are skipped and the
//     MCA default applies);
//  3. hf_model_type, name_or_path and hf_config_json (hfText verbatim),
//     and the template's name and digest (TemplateKey, TemplateDigestKey);
//  4. the template's constants;
//  5. derived values Megatron fills in when unset: num_query_groups,
//     kv_channels, ffn_hidden_size, moe_ffn_hidden_size, rotary_base from
//     rope_parameters, moe_router_dtype "fp32" for 32 experts or more;
//     sequence_parallel on exactly when TP > 1 and EP > 1; for qwen3_next,
//     layer_types from linear_attention_freq when unset.
//
// hfPath names the file in errors.
func BuildMCAConfig(m *Model, hfText []byte, hfPath, nameOrPath string, layout Layout) (*MCAConfig, error) {
	hf, err := pyjson.ParseObject(hfText)
	if err != nil {
		return nil, fmt.Errorf("%s: not a JSON object: %v", hfPath, err)
	}
	if err := CheckHFConfig(m, hf, hfPath); err != nil {
		return nil, err
	}
	layout = layout.Normalized()
	kw := pyjson.NewObject()
	kw.Set("tensor_model_parallel_size", pyjson.IntNumber(int64(layout.TP)))
	kw.Set("pipeline_model_parallel_size", pyjson.IntNumber(int64(layout.PP)))
	if layout.VPP > 1 {
		kw.Set("virtual_pipeline_model_parallel_size", pyjson.IntNumber(int64(layout.VPP)))
	} else {
		kw.Set("virtual_pipeline_model_parallel_size", nil)
	}
	kw.Set("expert_model_parallel_size", pyjson.IntNumber(int64(layout.EP)))
	kw.Set("expert_tensor_parallel_size", pyjson.IntNumber(int64(layout.ETP)))
	kw.Set("context_parallel_size", pyjson.IntNumber(1))
	// McaModelConfig.__post_init__: sequence parallelism is forced on with
	// tensor and expert parallelism together, and off without tensor
	// parallelism.
	kw.Set("sequence_parallel", layout.TP > 1 && layout.EP > 1)
	kw.Set("account_for_embedding_in_pipeline_split", layout.AccountForEmbedding)
	kw.Set("account_for_loss_in_pipeline_split", layout.AccountForLoss)
	kw.Set("pipeline_model_parallel_layout", nil)
	impl := layout.TransformerImpl
	if impl == "" {
		impl = "transformer_engine"
	}
	kw.Set("transformer_impl", impl)
	kw.Set("moe_grouped_gemm", layout.MoEGroupedGEMM)
	if layout.LegacyGroupedGEMM {
		kw.Set("moe_use_legacy_grouped_gemm", true)
	}
	dtype, _ := hf.Get("torch_dtype")
	if s, ok := hf.Get("dtype"); ok && dtype == nil {
		dtype = s
	}
	kw.Set("bf16", dtype == "bfloat16")
	kw.Set("fp16", dtype == "float16")

	for _, cm := range m.configMappings() {
		if v, ok := hfValue(hf, cm.HF, cm.Plain); ok {
			kw.Set(cm.MCA, pyjson.CloneValue(v))
		}
	}
	kw.Set("hf_model_type", m.Template.Name)
	kw.Set("name_or_path", nameOrPath)
	kw.Set("hf_config_json", string(hfText))
	recordTemplate(kw, m)
	for _, c := range m.Template.Constants {
		kw.Set(c.Key, valueToJSON(c.Value))
	}
	// set mca.KEY: after the maps and constants (the generated template
	// class applies them to the keyword arguments ROLL's
	// convert_hf_to_mca_config_kws returns), before Megatron's derived
	// values; each reads the HF config and the MCA keys so far.
	if err := applySets(m.Template, "mca", exprEnv{hf: hf, mca: kw, flags: m.Flags}, kw, hfPath); err != nil {
		return nil, err
	}
	noMTPConfig(m, kw)

	c := mcaconfig.New(kw)
	unset := func(k string) bool {
		v, ok := kw.Get(k)
		return !ok || v == nil
	}
	nh, okH := c.Int("num_attention_heads")
	h, okHidden := c.Int("hidden_size")
	if unset("num_query_groups") && okH {
		kw.Set("num_query_groups", pyjson.IntNumber(nh))
	}
	if unset("kv_channels") && okH && okHidden && nh > 0 {
		kw.Set("kv_channels", pyjson.IntNumber(h/nh))
	}
	if unset("ffn_hidden_size") && okHidden {
		kw.Set("ffn_hidden_size", pyjson.IntNumber(4*h))
	}
	if !unset("num_moe_experts") && unset("moe_ffn_hidden_size") {
		if v, ok := kw.Get("ffn_hidden_size"); ok {
			kw.Set("moe_ffn_hidden_size", pyjson.CloneValue(v))
		}
	}
	if rp, ok := kw.Get("rope_parameters"); ok {
		if o, ok := rp.(*pyjson.Object); ok {
			if th, ok := o.Get("rope_theta"); ok {
				kw.Set("rotary_base", pyjson.CloneValue(th))
			}
		}
	}
	if e, ok := c.Int("num_moe_experts"); ok && e >= 32 && unset("moe_router_dtype") {
		kw.Set("moe_router_dtype", "fp32")
	}
	// Qwen3NextConfig.__post_init__: without layer_types, every
	// linear_attention_freq-th layer is full attention, the others linear.
	// Without either, transformers' Qwen3NextConfig has already filled
	// layer_types with its default full_attention_interval of 4 by the time
	// ROLL reads the config (linear_attention_freq stays unset).
	if m.Template.Name == "qwen3_next" && unset("layer_types") {
		f, okF := c.Int("linear_attention_freq")
		if !okF && unset("linear_attention_freq") {
			f, okF = 4, true
		}
		n, okN := c.Int("num_layers")
		// A num_layers out of range is reported by Validate below,
		// before anything is sized from it.
		if okF && okN && f > 0 && n > 0 && n <= ir.MaxCount {
			types := make([]any, n)
			for i := range types {
				types[i] = "full_attention"
				if (int64(i)+1)%f != 0 {
					types[i] = "linear_attention"
				}
			}
			kw.Set("layer_types", types)
		}
	}
	hfKey := map[string]string{}
	for _, cm := range m.configMappings() {
		if _, ok := hfValue(hf, cm.HF, cm.Plain); ok {
			hfKey[cm.MCA] = cm.HF
		}
	}
	if err := c.Validate(hfPath, func(k string) string { return hfKey[k] }); err != nil {
		return nil, err
	}
	return c, nil
}

// BuildHFConfig rebuilds config.json from an MCA config the way ROLL's
// convert_mca_to_hf_config does (roll-converter-spec.md §4.2): start from
// hf_config_json, write back every key of the reversed config map (the
// last HF key mapped to an MCA key wins) whose MCA key the config holds,
// and force model_type to the template name. The result is written like
// transformers writes config.json (sorted keys, indent 2).
func BuildHFConfig(m *Model, mc *MCAConfig, mcaPath string) ([]byte, error) {
	text, ok := mc.String("hf_config_json")
	if !ok {
		return nil, fmt.Errorf("%s: hf_config_json is missing or not a string; the HF config cannot be rebuilt", mcaPath)
	}
	hf, err := pyjson.ParseObject([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("%s: hf_config_json is not a JSON object: %v", mcaPath, err)
	}
	// set hf.KEY: evaluated over the MCA config and the recorded HF
	// config before the maps write back; they win over the maps, as the
	// keyword arguments of ROLL's convert_mca_to_hf_config do.
	sets := pyjson.NewObject()
	if err := applySets(m.Template, "hf", exprEnv{hf: hf.Clone(), mca: mc.Object(), flags: m.Flags}, sets, mcaPath); err != nil {
		return nil, err
	}
	type rev struct{ hf, plain string }
	var order []string
	revMap := map[string]rev{}
	for _, cm := range m.configMappings() {
		if _, ok := revMap[cm.MCA]; !ok {
			order = append(order, cm.MCA)
		}
		revMap[cm.MCA] = rev{cm.HF, cm.Plain}
	}
	for _, k := range order {
		v, ok := mc.Get(k)
		if !ok {
			continue
		}
		r := revMap[k]
		setHFValue(hf, r.hf, r.plain, pyjson.CloneValue(noMTPHFValue(m, k, v)))
	}
	for _, k := range sets.Keys() {
		v, _ := sets.Get(k)
		hf.Set(k, v)
	}
	hf.Set("model_type", m.Template.Name)
	return append(pyjson.Encode(hf, 2, true), '\n'), nil
}

// hfConfigProblems runs the template's config checks
// ([ir.Template.CheckHFConfig]) on a parsed config.json.
func hfConfigProblems(t *ir.Template, hf *pyjson.Object) []ir.ConfigProblem {
	return t.CheckHFConfig(func(key string) (ir.ConfigValue, bool) {
		v, ok := pyjson.Lookup(hf, key)
		return mcaconfig.Value(v), ok
	})
}

// HFConfigProblems parses the text of a config.json and runs the checks
// convert runs on it ([CheckHFConfig]), for check --hf-config, which
// reports them as diagnostics at the template's config entries.
func HFConfigProblems(t *ir.Template, text []byte) ([]ir.ConfigProblem, error) {
	hf, err := pyjson.ParseObject(text)
	if err != nil {
		return nil, err
	}
	return hfConfigProblems(t, hf), nil
}
