// Package vocab is the language's vocabulary: the op kinds with their
// arity, parameters, the config they read at run time and the layout they
// produce, the template fields, the parallel classes and the build flags,
// and the "did you mean" over names. The config schemas templates are
// checked against are compiler/schema's.
package vocab

import (
	"fmt"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/rollname"
)

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
	// ROLLModule is the Python module defining ROLLClass when ROLL defines
	// it beside a model rather than in its converter's template.py; ""
	// for mcore_adapter.models.converter.template. Unused when ROLLBy is
	// set.
	ROLLModule string
	// ROLLBy, when set, names the bool parameter that selects where ROLL
	// defines the op's class: ROLLVariants[value] (ROLL's two fused-expert
	// layouts are classes of one name in two model modules).
	ROLLBy       string
	ROLLVariants map[bool]ROLLVariant
	// Produces is the form of the tensor the op hands ROLL's
	// DistConverter for its MCA name (see [Layout]).
	Produces Layout
	// LossyIn lists the dtypes (safetensors names: "BF16", ...) in which
	// the op's round trip HF → MCA → HF may not give a tensor's bytes
	// back because the op computes in that dtype; nil for an op that only
	// moves bytes. runtime/ops derives and tests the same table.
	LossyIn []string
	Doc     string
}

// ROLLVariant is one of the model modules defining an op's class, chosen
// by the op's ROLLBy parameter.
type ROLLVariant struct {
	Module string
	// As is the name the class is imported under when it is not
	// ROLLClass (variants of one op share the class name).
	As string
	// Template is the template class ROLL defines in Module that
	// converting MCA -> HF with the op needs: it gathers a layer's
	// per-expert weights under one prefix so that the split op can stack
	// them back into the fused tensor. "" when the op needs none
	// (qwen3_5_moe's splits: ROLL's per-expert ops take the MCA names).
	Template string
}

// ROLLImport returns the module defining the op's ROLL class for the
// value of its ROLLBy parameter (ignored without one), the name the class
// is imported under, and the template class the op needs ("" for none);
// module is "" for ROLL's template.py.
func (o *OpSpec) ROLLImport(by bool) (module, name, template string) {
	if o.ROLLBy == "" {
		return o.ROLLModule, o.ROLLClass, ""
	}
	v := o.ROLLVariants[by]
	name = v.As
	if name == "" {
		name = o.ROLLClass
	}
	return v.Module, name, v.Template
}

// ROLLTemplateClass is a template class of ROLL's converter/template.py
// chosen by a template's HF config key-prefix rule.
type ROLLTemplateClass struct {
	Class  string
	Prefix string
	Unless []string
}

// ROLLTemplateClasses are ROLL's template classes that prefix HF config
// keys. VisionTemplate is also the base of the template classes ROLL
// defines beside its fused-expert models ([ROLLVariant].Template).
var ROLLTemplateClasses = []ROLLTemplateClass{
	{Class: "VisionTemplate", Prefix: "text_config.", Unless: []string{"*_token_id", "vision_config", "tie_word_embeddings"}},
}

// Form is the kind of object an op hands ROLL's DistConverter for one MCA
// weight name.
type Form string

// The forms.
const (
	// FormPlain is an ordinary tensor, copied or computed element-wise.
	FormPlain Form = "plain"
	// FormQKV is Megatron's fused QKV projection: q, k and v interleaved by
	// query group (heads of one group, then its k and v).
	FormQKV Form = "qkv"
	// FormStacked is ROLL's StackedTensors: parts the DistConverter splits
	// per tensor-parallel rank separately (swiglu gate/up, GDN
	// components). Only the swiglu, gdn and (with swiglu) grouped_column
	// classes accept it; the other classes call torch.chunk on a tensor.
	FormStacked Form = "stacked"
)

// Layout is what an op produces for one MCA name, or what a weight
// requires: a form and, for stacked tensors, the number of parts (0: one
// per HF name, or any when required) and the dimension they are stacked
// along.
type Layout struct {
	Form  Form
	Parts int
	Dim   int
}

// String describes the layout in words.
func (l Layout) String() string {
	switch l.Form {
	case FormQKV:
		return "Megatron's fused QKV layout"
	case FormStacked:
		if l.Parts > 0 {
			return fmt.Sprintf("a stack of %d parts along dim %d", l.Parts, l.Dim)
		}
		return fmt.Sprintf("a stack along dim %d", l.Dim)
	}
	return "a plain tensor"
}

// Satisfies reports whether a tensor of layout l may be given where want
// is required: same form and, for stacks, the same dim and (when want
// counts them) parts.
func (l Layout) Satisfies(want Layout) bool {
	if l.Form != want.Form {
		return false
	}
	if l.Form != FormStacked {
		return true
	}
	return l.Dim == want.Dim && (want.Parts == 0 || l.Parts == 0 || l.Parts == want.Parts)
}

// LayoutOf returns the layout an op of this kind produces for its MCA
// names given how many HF operands it takes (hf; 0 when unknown, e.g.
// operands built from tensor steps), how many MCA names it has, and its
// dim parameter. A stack of one HF tensor into several MCA names (ROLL's
// StackConverOp in the other direction) hands plain tensors on.
func (o *OpSpec) LayoutOf(hf, mca, dim int) Layout {
	l := o.Produces
	if l.Form == "" {
		return Layout{Form: FormPlain}
	}
	if o.Kind == "stack" {
		if mca > 1 {
			return Layout{Form: FormPlain}
		}
		l.Parts, l.Dim = hf, dim
	}
	return l
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
var qkvLayout = Layout{Form: FormQKV}
var gdnReads = []string{"linear_key_head_dim", "linear_value_head_dim", "linear_num_key_heads", "linear_num_value_heads"}

// Ops lists every op kind, in the order of roll-converter-spec.md §2.3.
var Ops = []*OpSpec{
	{Kind: "rename", Arity: Fixed, HF: 1, MCA: 1, ROLLClass: "RenameConverOp",
		Doc: "Copies one tensor under a new name. `{}` in both names is a wildcard carried across."},
	{Kind: "copy", Arity: OneSide, ROLLClass: "CopyConverOp",
		Doc: "Fans one tensor out to several names (one HF name to N MCA names, or back)."},
	{Kind: "concat", Arity: OneSide, Params: []ParamSpec{dimParam}, ROLLClass: "ConcatConverOp",
		Doc: "Concatenates N tensors along dim into one, or chunks one into N equal pieces."},
	{Kind: "stack", Arity: OneSide, Params: []ParamSpec{dimParam}, ROLLClass: "StackConverOp", Produces: Layout{Form: FormStacked},
		Doc: "Joins N tensors (e.g. gate and up) into one whose parts are split per tensor-parallel rank separately."},
	{Kind: "drop", Arity: DropArity, ROLLClass: "DropConverOp",
		Doc: "Discards the named HF weights on purpose."},
	{Kind: "qkv", Arity: Fixed, HF: 3, MCA: 1, ROLLClass: "QKVConverOp", Reads: qkvReads, Produces: qkvLayout,
		Params: []ParamSpec{{Name: "hidden_size", Type: "int?", Doc: "the input size; default: the model's hidden_size"}},
		Doc:    "Fuses q, k, v weights into Megatron's group-interleaved QKV layout."},
	{Kind: "qkv_bias", Arity: Fixed, HF: 3, MCA: 1, ROLLClass: "QKVBiasConverOp", Reads: qkvReads[:3], Produces: qkvLayout,
		Doc: "Fuses q, k, v biases into Megatron's group-interleaved layout."},
	{Kind: "gated_qkv", Arity: Fixed, HF: 3, MCA: 1, ROLLClass: "GatedQKVConverOp", Reads: qkvReads, Produces: qkvLayout,
		Params: []ParamSpec{{Name: "hidden_size", Type: "int?", Doc: "the input size; default: the model's hidden_size"}},
		Doc:    "Fuses a gated q (query and gate per head), k and v into the layout Q, Z, K, V per query group."},
	{Kind: "zero_centered_rmsnorm", Arity: Fixed, HF: 1, MCA: 1, ROLLClass: "ZeroCenteredRMSNormConverOp",
		LossyIn: []string{"BF16", "F16", "F32", "F64"},
		Doc:     "Stores an RMSNorm weight as w - 1 (MCA) and w + 1 (HF), computed in the weight's dtype: (w - 1) + 1 rounds twice, so a weight small next to 1 does not come back bit for bit."},
	{Kind: "gdn_conv1d", Arity: Fixed, HF: 1, MCA: 1, ROLLClass: "GDNConv1dConverOp", Reads: gdnReads, Produces: Layout{Form: FormStacked, Parts: 3},
		Doc: "Splits a Gated-DeltaNet conv1d weight into its q, k, v parts."},
	{Kind: "next_gdn", Arity: Fixed, HF: 2, MCA: 1, ROLLClass: "NextGDNConverOp", ROLLModule: "mcore_adapter.models.qwen3_next", Produces: Layout{Form: FormStacked, Parts: 6}, Reads: append([]string{"hidden_size"}, gdnReads...),
		Doc: "Regroups Qwen3-Next's in_proj_qkvz and in_proj_ba into Megatron's GDN in_proj."},
	{Kind: "qwen3_5_gdn", Arity: Fixed, HF: 4, MCA: 1, ROLLClass: "Qwen3_5_GDNConverOp", ROLLModule: "mcore_adapter.models.qwen3_5", Reads: gdnReads, Produces: Layout{Form: FormStacked, Parts: 6},
		Doc: "Joins Qwen3.5's in_proj_qkv, z, b and a into Megatron's GDN in_proj."},
	{Kind: "split_experts", Arity: Fixed, HF: 1, MCA: 1, ROLLClass: "SplitConverOp", ROLLBy: "transpose", ROLLVariants: map[bool]ROLLVariant{
		true:  {Module: "mcore_adapter.models.qwen3_vl_moe", As: "TransposedSplitConverOp", Template: "Qwen3VLMoeTemplate"},
		false: {Module: "mcore_adapter.models.qwen3_5_moe"}}, Reads: []string{"num_moe_experts"},
		Params: []ParamSpec{transposeParam},
		Doc:    "Splits a fused [E, ...] expert tensor into one tensor per expert."},
	{Kind: "split_stack_experts", Arity: Fixed, HF: 1, MCA: 1, ROLLClass: "SplitStackConverOp", ROLLBy: "transpose", ROLLVariants: map[bool]ROLLVariant{
		true:  {Module: "mcore_adapter.models.qwen3_vl_moe", As: "TransposedSplitStackConverOp", Template: "Qwen3VLMoeTemplate"},
		false: {Module: "mcore_adapter.models.qwen3_5_moe"}}, Produces: Layout{Form: FormStacked, Parts: 2}, Reads: []string{"num_moe_experts"},
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

// ParallelClassDoc documents the parallel classes (ir.ParallelClasses and
// ir.ParallelMaps).
var ParallelClassDoc = map[string]string{
	rollname.KeyPreProcess:        "weights living on the first pipeline stage",
	rollname.KeyPostProcess:       "weights living on the last pipeline stage",
	rollname.KeyDuplicated:        "weights identical on every tensor-parallel rank",
	rollname.KeyColumn:            "weights split along dim 0 across tensor-parallel ranks",
	rollname.KeyRow:               "weights split along dim 1 across tensor-parallel ranks",
	rollname.KeySwiglu:            "stacked gate/up weights, each part split along dim 0",
	rollname.KeyGDN:               "stacked Gated-DeltaNet weights, each part split along dim 0",
	rollname.KeyGroupedDuplicated: "per-expert name -> grouped-GEMM name, duplicated",
	rollname.KeyGroupedColumn:     "per-expert name -> grouped-GEMM name, column parallel",
	rollname.KeyGroupedRow:        "per-expert name -> grouped-GEMM name, row parallel",
	rollname.KeyTEToLocal:         "Transformer Engine fused name -> local (non-TE) name",
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

// FusedQKVSuffix ends the MCA pure name (".bias" read as ".weight") of
// Megatron's fused QKV projection: its tensor must have [FormQKV], which
// only the qkv-family ops produce. The parallel classes call it column
// like any projection, so the name is the only mark of the layout.
const FusedQKVSuffix = ".linear_qkv.weight"

// GDNParts returns how many parts ROLL's DistConverter splits a gdn-class
// weight into when converting it back (handle_gdn): 6 (q, k, v, z, b, a)
// for an in_proj, 3 (q, k, v) for a conv1d, 0 for a name it has no split
// for.
func GDNParts(pureName string) int {
	switch {
	case strings.Contains(pureName, "in_proj"):
		return 6
	case strings.Contains(pureName, "conv1d"):
		return 3
	}
	return 0
}

// Producing returns the op kinds that can produce layout want, in catalog
// order.
func Producing(want Layout) []string {
	var out []string
	for _, o := range Ops {
		l := o.Produces
		if l.Form == "" {
			l.Form = FormPlain
		}
		if l.Form == FormStacked && l.Parts == 0 {
			l.Parts = want.Parts // a stack takes as many operands as given
		}
		if l.Satisfies(want) {
			out = append(out, o.Kind)
		}
	}
	return out
}

// The default quant section: a template that names no quant section
// pairs the scale tensors of a block-quantized checkpoint by the rules of
// `quant DefaultQuant` in the library module DefaultQuantModule (the
// stdlib's fp8_block: X.weight <-> X.weight_scale_inv, lora-fp8.md §2.6.4).
const (
	DefaultQuantModule = "common"
	DefaultQuant       = "fp8_block"
)
