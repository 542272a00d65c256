// Package schema describes what templates are checked against: the op
// kinds with their arity, parameters and the config they read at run time,
// the template fields, the parallel classes and the build flags.
package schema

// Arity says how many HF and MCA names an op takes.
type Arity int

// The arity rules of ROLL's ops (roll-converter-spec.md §2.3).
const (
	// Fixed: exactly HF names and MCA names.
	Fixed Arity = iota
	// OneSide: exactly one side has a single name (ROLL's XOR rule).
	OneSide
	// DropArity: one or more HF names and no MCA names.
	DropArity
)

// ParamSpec is one op parameter.
type ParamSpec struct {
	Name string
	// Type is "int", "bool" or "int?" (an int that may be null).
	Type     string
	Required bool
	Doc      string
}

// OpSpec describes one op kind.
type OpSpec struct {
	Kind  string
	Arity Arity
	// HF and MCA are the exact name counts when Arity is Fixed.
	HF, MCA int
	Params  []ParamSpec
	// Reads lists the MCA config keys the op reads at run time.
	Reads []string
	// ROLLClass is the ConverOp class name in ROLL.
	ROLLClass string
	Doc       string
}

// Param returns the named parameter spec, or nil.
func (o *OpSpec) Param(name string) *ParamSpec {
	for i := range o.Params {
		if o.Params[i].Name == name {
			return &o.Params[i]
		}
	}
	return nil
}

var dimParam = ParamSpec{Name: "dim", Type: "int", Doc: "the dimension to concatenate along (default 0)"}
var transposeParam = ParamSpec{Name: "transpose", Type: "bool", Required: true,
	Doc: "whether HF stores experts as [E, in, out] (qwen3_vl_moe: true) or [E, out, in] (qwen3_5_moe: false)"}
var qkvReads = []string{"num_attention_heads", "num_query_groups", "kv_channels", "hidden_size"}
var gdnReads = []string{"linear_key_head_dim", "linear_value_head_dim", "linear_num_key_heads", "linear_num_value_heads"}

// Ops lists every op kind, in the order of roll-converter-spec.md §2.3.
var Ops = []*OpSpec{
	{Kind: "rename", Arity: Fixed, HF: 1, MCA: 1, ROLLClass: "RenameConverOp",
		Doc: "Copies one tensor under a new name. `{}` in both names is a wildcard carried across."},
	{Kind: "copy", Arity: OneSide, ROLLClass: "CopyConverOp",
		Doc: "Fans one tensor out to several names (one HF name to N MCA names, or back)."},
	{Kind: "concat", Arity: OneSide, Params: []ParamSpec{dimParam}, ROLLClass: "ConcatConverOp",
		Doc: "Concatenates N tensors along dim into one, or chunks one into N equal pieces."},
	{Kind: "stack", Arity: OneSide, Params: []ParamSpec{dimParam}, ROLLClass: "StackConverOp",
		Doc: "Joins N tensors (e.g. gate and up) into one whose parts are split per tensor-parallel rank separately."},
	{Kind: "drop", Arity: DropArity, ROLLClass: "DropConverOp",
		Doc: "Discards the named HF weights on purpose."},
	{Kind: "qkv", Arity: Fixed, HF: 3, MCA: 1, ROLLClass: "QKVConverOp", Reads: qkvReads,
		Params: []ParamSpec{{Name: "hidden_size", Type: "int?", Doc: "the input size; default: the model's hidden_size"}},
		Doc:    "Fuses q, k, v weights into Megatron's group-interleaved QKV layout."},
	{Kind: "qkv_bias", Arity: Fixed, HF: 3, MCA: 1, ROLLClass: "QKVBiasConverOp", Reads: qkvReads[:3],
		Doc: "Fuses q, k, v biases into Megatron's group-interleaved layout."},
	{Kind: "gated_qkv", Arity: Fixed, HF: 3, MCA: 1, ROLLClass: "GatedQKVConverOp", Reads: qkvReads,
		Params: []ParamSpec{{Name: "hidden_size", Type: "int?", Doc: "the input size; default: the model's hidden_size"}},
		Doc:    "Fuses a gated q (query and gate per head), k and v into the layout Q, Z, K, V per query group."},
	{Kind: "zero_centered_rmsnorm", Arity: Fixed, HF: 1, MCA: 1, ROLLClass: "ZeroCenteredRMSNormConverOp",
		Doc: "Stores an RMSNorm weight as w - 1 (MCA) and w + 1 (HF)."},
	{Kind: "gdn_conv1d", Arity: Fixed, HF: 1, MCA: 1, ROLLClass: "GDNConv1dConverOp", Reads: gdnReads,
		Doc: "Splits a Gated-DeltaNet conv1d weight into its q, k, v parts."},
	{Kind: "next_gdn", Arity: Fixed, HF: 2, MCA: 1, ROLLClass: "NextGDNConverOp", Reads: append([]string{"hidden_size"}, gdnReads...),
		Doc: "Regroups Qwen3-Next's in_proj_qkvz and in_proj_ba into Megatron's GDN in_proj."},
	{Kind: "qwen3_5_gdn", Arity: Fixed, HF: 4, MCA: 1, ROLLClass: "Qwen3_5_GDNConverOp", Reads: gdnReads,
		Doc: "Joins Qwen3.5's in_proj_qkv, z, b and a into Megatron's GDN in_proj."},
	{Kind: "split_experts", Arity: Fixed, HF: 1, MCA: 1, ROLLClass: "SplitConverOp", Reads: []string{"num_moe_experts"},
		Params: []ParamSpec{transposeParam},
		Doc:    "Splits a fused [E, ...] expert tensor into one tensor per expert."},
	{Kind: "split_stack_experts", Arity: Fixed, HF: 1, MCA: 1, ROLLClass: "SplitStackConverOp", Reads: []string{"num_moe_experts"},
		Params: []ParamSpec{transposeParam},
		Doc:    "Splits a fused gate_up expert tensor into per-expert gate/up stacks."},
}

// Op returns the spec of an op kind, or nil.
func Op(kind string) *OpSpec {
	for _, o := range Ops {
		if o.Kind == kind {
			return o
		}
	}
	return nil
}

// OpKinds returns every op kind name.
func OpKinds() []string {
	out := make([]string, len(Ops))
	for i, o := range Ops {
		out[i] = o.Kind
	}
	return out
}

// BuildFlags are the predeclared names a weight name may depend on.
var BuildFlags = map[string]string{
	"megatron_llama": "true when the installed Megatron is megatron-llama-core (ROLL's is_megatron_llama())",
}

// TemplateFields are the fields a template may set.
var TemplateFields = map[string]string{
	"layer_prefix":    "the HF prefix of decoder layers, e.g. \"model.layers.\" (ROLL's hf_layer_prefix)",
	"expert_prefix":   "the HF prefix of MoE experts inside a layer, e.g. \".mlp.experts.\" (ROLL's hf_moe_prefix)",
	"mtp_first_layer": "the HF layer index of the first multi-token-prediction layer, when HF keeps MTP layers after the decoder layers under layer_prefix (e.g. hf.num_hidden_layers)",
	"mtp_hf_prefix":   "the HF prefix of multi-token-prediction weights when HF keeps them apart from the decoder layers, e.g. \"mtp.\" (mtp.layers.<i>.* and the MTP block's own weights)",
}

// TemplateFieldType is the kind of value a template field takes:
// "expression" for mtp_first_layer, "string" for the others.
func TemplateFieldType(name string) string {
	if name == "mtp_first_layer" {
		return "expression"
	}
	return "string"
}

// ParallelClassDoc documents the parallel classes.
var ParallelClassDoc = map[string]string{
	"pre_process":        "weights living on the first pipeline stage",
	"post_process":       "weights living on the last pipeline stage",
	"duplicated":         "weights identical on every tensor-parallel rank",
	"column":             "weights split along dim 0 across tensor-parallel ranks",
	"row":                "weights split along dim 1 across tensor-parallel ranks",
	"swiglu":             "stacked gate/up weights, each part split along dim 0",
	"gdn":                "stacked Gated-DeltaNet weights, each part split along dim 0",
	"grouped_duplicated": "per-expert name -> grouped-GEMM name, duplicated",
	"grouped_column":     "per-expert name -> grouped-GEMM name, column parallel",
	"grouped_row":        "per-expert name -> grouped-GEMM name, row parallel",
	"te_to_local":        "Transformer Engine fused name -> local (non-TE) name",
}

// Levenshtein returns the edit distance between a and b.
func Levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// Suggest returns the candidate closest to s within a small edit distance,
// or "".
func Suggest(s string, candidates []string) string {
	best, bestD := "", len(s)/2+2
	for _, c := range candidates {
		if d := Levenshtein(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}
