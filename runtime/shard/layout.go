package shard

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
)

// Layout is the parallel layout of an MCA checkpoint and the few model
// facts that decide where each weight goes: the MCA config fields ROLL's
// DistConverter reads (roll-converter-spec.md §5.3).
//
// Zero sizes mean the Megatron defaults: TP, PP and EP 1, ETP = TP, VPP 1
// (or, with a PipelineLayout, the number of stages divided by PP).
type Layout struct {
	TP  int // tensor_model_parallel_size
	PP  int // pipeline_model_parallel_size
	VPP int // virtual_pipeline_model_parallel_size; 0 or 1: no virtual pipeline
	EP  int // expert_model_parallel_size
	ETP int // expert_tensor_parallel_size; must divide TP (see Validate)

	AccountForEmbedding bool // account_for_embedding_in_pipeline_split
	AccountForLoss      bool // account_for_loss_in_pipeline_split
	// PipelineLayout is Megatron's pipeline_model_parallel_layout, such as
	// "Et*3|(tt|)*29,m|L"; it replaces the even split and the two
	// AccountFor flags.
	PipelineLayout string

	NumLayers    int // num_layers (decoder layers, MTP excluded)
	NumExperts   int // num_moe_experts; 0 for a dense model
	MTPNumLayers int // mtp_num_layers

	TiedEmbeddings bool // tie_embeddings_and_output_weights
	Swiglu         bool // swiglu: fc1 weights hold gate and up

	// MoEGroupedGEMM is moe_grouped_gemm. With it, experts are stored in
	// grouped form: TE GroupedLinear names "….mlp.experts.linear_fc1.weight<k>"
	// when TEGroupedMoE is set, else the legacy GroupedMLP tensors
	// "….mlp.experts.weight1" / "weight2".
	MoEGroupedGEMM bool
	// TEGroupedMoE is ROLL's use_te_grouped_moe: moe_grouped_gemm, not
	// moe_use_legacy_grouped_gemm, transformer_impl "transformer_engine",
	// and Transformer Engine ≥ 1.9 on the converting machine. The caller
	// decides the last condition; set it to write what a machine with TE
	// writes.
	TEGroupedMoE bool
	// LegacyGroupedGEMM is moe_use_legacy_grouped_gemm; it only serves to
	// reject TEGroupedMoE.
	LegacyGroupedGEMM bool
	// TransformerImpl is "transformer_engine" (the default when empty) or
	// "local", which stores the fused TE norm weights under local names.
	TransformerImpl string
	// MegatronLlama selects the megatron-llama-core variant: its dist
	// config is merged into the classification (§5.2).
	MegatronLlama bool

	// Gated-DeltaNet sizes (linear_num_key_heads, linear_num_value_heads,
	// linear_key_head_dim, linear_value_head_dim): needed to cut a merged
	// gdn weight back into its components.
	LinearNumKeyHeads   int
	LinearNumValueHeads int
	LinearKeyHeadDim    int
	LinearValueHeadDim  int
}

// TransformerImpl values.
const (
	ImplTransformerEngine = "transformer_engine"
	ImplLocal             = "local"
)

// ExpertNaming is how expert weights are named in the rank files.
type ExpertNaming int

const (
	// PerExpert: decoder.layers.L.mlp.experts.local_experts.e.linear_fc1.weight
	PerExpert ExpertNaming = iota
	// TEGrouped: decoder.layers.L.mlp.experts.linear_fc1.weight<e>
	TEGrouped
	// LegacyGrouped: decoder.layers.L.mlp.experts.weight1 / weight2, all
	// local experts in one tensor, transposed.
	LegacyGrouped
)

func (n ExpertNaming) String() string {
	switch n {
	case PerExpert:
		return "per-expert"
	case TEGrouped:
		return "TE grouped"
	case LegacyGrouped:
		return "legacy grouped"
	}
	return fmt.Sprintf("ExpertNaming(%d)", int(n))
}

// ExpertNaming returns the expert naming scheme the layout selects.
func (l Layout) ExpertNaming() ExpertNaming {
	switch {
	case !l.MoEGroupedGEMM:
		return PerExpert
	case l.TEGroupedMoE:
		return TEGrouped
	}
	return LegacyGrouped
}

// Normalized returns l with the defaults filled in: TP, PP, EP at least 1,
// ETP = TP when 0, VPP from the pipeline layout when 0, VPP 1 when still 0,
// TransformerImpl "transformer_engine" when empty. It does not validate.
func (l Layout) Normalized() Layout {
	if l.TP <= 0 {
		l.TP = 1
	}
	if l.PP <= 0 {
		l.PP = 1
	}
	if l.EP <= 0 {
		l.EP = 1
	}
	if l.ETP <= 0 {
		l.ETP = l.TP
	}
	if l.VPP <= 0 && l.PipelineLayout != "" {
		if pl, err := parsePipelineLayout(l.PipelineLayout); err == nil && len(pl.stages)%l.PP == 0 {
			l.VPP = len(pl.stages) / l.PP
		}
	}
	if l.VPP <= 0 {
		l.VPP = 1
	}
	if l.TransformerImpl == "" {
		l.TransformerImpl = ImplTransformerEngine
	}
	return l
}

// Stages returns the number of pipeline stages PP × VPP.
func (l Layout) Stages() int {
	n := l.Normalized()
	return n.PP * n.VPP
}

// Validate reports whether the layout is usable, with an error that names
// the offending value.
func (l Layout) Validate() error {
	_, err := l.geometry()
	return err
}

// CheckProducts checks the rank-file count TP×PP×EP and the stage count
// PP×VPP against ir.MaxCount, naming the sizes by their mca_config.json keys.
// Each factor must already be at most ir.MaxCount (so the products cannot
// overflow).
func (l Layout) CheckProducts() error { return l.checkProducts(configNames) }

// sizeNames names the parallel sizes in messages: by config key
// ("tensor_model_parallel_size 2") or by flag ("tp=2").
type sizeNames struct {
	tp, pp, vpp, ep, etp string
	sep                  string // between name and value
}

var (
	configNames = sizeNames{"tensor_model_parallel_size", "pipeline_model_parallel_size",
		"virtual_pipeline_model_parallel_size", "expert_model_parallel_size", "expert_tensor_parallel_size", " "}
	flagNames = sizeNames{"tp", "pp", "vpp", "ep", "etp", "="}
)

func (l Layout) checkProducts(nm sizeNames) error {
	n := l.Normalized()
	if r := int64(n.TP) * int64(n.PP) * int64(n.EP); r > ir.MaxCount {
		return fmt.Errorf("%s%s%d × %s%s%d × %s%s%d = %d rank files, more than %d",
			nm.tp, nm.sep, n.TP, nm.pp, nm.sep, n.PP, nm.ep, nm.sep, n.EP, r, ir.MaxCount)
	}
	if s := int64(n.PP) * int64(n.VPP); s > ir.MaxCount {
		return fmt.Errorf("%s%s%d × %s%s%d = %d pipeline stages, more than %d",
			nm.pp, nm.sep, n.PP, nm.vpp, nm.sep, n.VPP, s, ir.MaxCount)
	}
	return nil
}

// Check reports a layout no rank file set can have, before the model is
// known (the parallel sizes as given on a command line, named by flag):
// sizes below 0 or above ir.MaxCount, more than ir.MaxCount rank files
// (TP×PP×EP) or pipeline stages (PP×VPP), legacy grouped GEMM without
// moe_grouped_gemm, an unknown transformer_impl. Divisibility by the
// model's sizes is checked by [Layout.Validate] and the planner.
func (l Layout) Check() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"tp", l.TP}, {"pp", l.PP}, {"vpp", l.VPP}, {"ep", l.EP}, {"etp", l.ETP}} {
		if f.v < 0 {
			return fmt.Errorf("parallel layout: %s=%d is negative", f.name, f.v)
		}
		if f.v > ir.MaxCount {
			return fmt.Errorf("parallel layout: %s=%d is larger than %d", f.name, f.v, ir.MaxCount)
		}
	}
	if err := l.checkProducts(flagNames); err != nil {
		return fmt.Errorf("parallel layout: %w", err)
	}
	if l.LegacyGroupedGEMM && !l.MoEGroupedGEMM {
		return errors.New("parallel layout: legacy grouped GEMM needs moe_grouped_gemm")
	}
	switch l.TransformerImpl {
	case "", ImplTransformerEngine, ImplLocal:
	default:
		return fmt.Errorf("parallel layout: transformer_impl %q is neither %q nor %q", l.TransformerImpl, ImplTransformerEngine, ImplLocal)
	}
	return nil
}

// expertSplit checks the experts of a normalized layout against EP.
func (l Layout) expertSplit() error {
	if l.EP > 1 && l.NumExperts == 0 {
		return fmt.Errorf("expert_model_parallel_size %d needs num_moe_experts", l.EP)
	}
	if l.NumExperts > 0 && l.NumExperts%l.EP != 0 {
		return fmt.Errorf("num_moe_experts %d is not divisible by EP = %d", l.NumExperts, l.EP)
	}
	return nil
}

// layerSplit checks the even pipeline split of a normalized layout
// without a pipeline layout string: num_layers, plus one for the
// embedding and one for the loss when they are accounted, divides into
// PP×VPP stages. It returns that layer count.
func (l Layout) layerSplit() (int, error) {
	stages := l.PP * l.VPP
	total := l.NumLayers
	var extra []string
	if l.AccountForEmbedding {
		total++
		extra = append(extra, "+1 embedding")
	}
	if l.AccountForLoss {
		total++
		extra = append(extra, "+1 loss")
	}
	if total%stages != 0 {
		what := fmt.Sprintf("num_layers %d", l.NumLayers)
		if len(extra) > 0 {
			what += fmt.Sprintf(" (%s = %d)", strings.Join(extra, " "), total)
		}
		return 0, fmt.Errorf("%s is not divisible by PP×VPP = %d", what, stages)
	}
	return total, nil
}

// DivisibilityProblems returns, all at once, every way the model does not
// divide by the layout, before any tensor is planned: the model sizes
// size reports by mca_config.json key (attention heads, query groups, the
// FFN sizes and the padded vocabulary by TP, the expert FFN by ETP), the
// layers by PP×VPP (the even split; a pipeline layout string is checked
// by [Layout.Validate]) and the experts by EP. It is the one owner of these
// rules; the planner then checks each tensor's own dimensions.
func (l Layout) DivisibilityProblems(size func(key string) (int64, bool)) []string {
	n := l.Normalized()
	var out []string
	check := func(key string, by int, what string) {
		if by <= 1 {
			return
		}
		if v, ok := size(key); ok && v%int64(by) != 0 {
			out = append(out, fmt.Sprintf("%s %d is not divisible by %s %d", key, v, what, by))
		}
	}
	for _, k := range []string{"num_attention_heads", "num_query_groups", "ffn_hidden_size", "padded_vocab_size", "moe_shared_expert_intermediate_size"} {
		check(k, n.TP, "tp")
	}
	check("moe_ffn_hidden_size", n.ETP, "etp")
	if n.PipelineLayout == "" && n.NumLayers > 0 {
		if _, err := n.layerSplit(); err != nil {
			out = append(out, err.Error())
		}
	}
	if err := n.expertSplit(); err != nil {
		out = append(out, err.Error())
	}
	return out
}

// geometry is a validated, normalized layout with its stage table.
type geometry struct {
	Layout
	pl          *pipelineLayout // nil without a layout string
	perChunk    int             // layers per virtual chunk (no layout string)
	perEP       int             // experts per EP rank (0 for a dense model)
	stageOffset []int           // first global decoder layer of stage s = vp·PP + pp
	stageCount  []int           // decoder layers of stage s
}

func (l Layout) geometry() (*geometry, error) {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"tensor_model_parallel_size", l.TP}, {"pipeline_model_parallel_size", l.PP},
		{"virtual_pipeline_model_parallel_size", l.VPP}, {"expert_model_parallel_size", l.EP},
		{"expert_tensor_parallel_size", l.ETP}, {"num_moe_experts", l.NumExperts},
		{"mtp_num_layers", l.MTPNumLayers},
		{"linear_num_key_heads", l.LinearNumKeyHeads}, {"linear_num_value_heads", l.LinearNumValueHeads},
		{"linear_key_head_dim", l.LinearKeyHeadDim}, {"linear_value_head_dim", l.LinearValueHeadDim},
	} {
		if f.v < 0 {
			return nil, fmt.Errorf("%s %d is negative", f.name, f.v)
		}
		if f.v > ir.MaxCount {
			return nil, fmt.Errorf("%s %d is larger than %d", f.name, f.v, ir.MaxCount)
		}
	}
	if l.NumLayers <= 0 {
		return nil, fmt.Errorf("num_layers %d must be positive", l.NumLayers)
	}
	if l.NumLayers > ir.MaxCount {
		return nil, fmt.Errorf("num_layers %d is larger than %d", l.NumLayers, ir.MaxCount)
	}
	if err := l.CheckProducts(); err != nil {
		return nil, err
	}
	explicitVPP := l.VPP
	g := &geometry{Layout: l.Normalized()}
	n := &g.Layout
	if n.ETP > n.TP || n.TP%n.ETP != 0 {
		return nil, fmt.Errorf("expert_tensor_parallel_size %d does not divide tensor_model_parallel_size %d: "+
			"the legacy rank directories mp_rank_TT[_PPP][_EEE] have no expert-tensor component, "+
			"so expert shards can only be stored when ETP divides TP (Megatron uses torch_dist otherwise)", n.ETP, n.TP)
	}
	if err := n.expertSplit(); err != nil {
		return nil, err
	}
	if n.NumExperts > 0 {
		g.perEP = n.NumExperts / n.EP
	}
	switch n.TransformerImpl {
	case ImplTransformerEngine, ImplLocal:
	default:
		return nil, fmt.Errorf("transformer_impl %q is neither %q nor %q", n.TransformerImpl, ImplTransformerEngine, ImplLocal)
	}
	if n.TEGroupedMoE {
		switch {
		case !n.MoEGroupedGEMM:
			return nil, errors.New("TE grouped MoE names need moe_grouped_gemm")
		case n.LegacyGroupedGEMM:
			return nil, errors.New("TE grouped MoE names and moe_use_legacy_grouped_gemm exclude each other")
		case n.TransformerImpl == ImplLocal:
			return nil, errors.New(`TE grouped MoE names need transformer_impl "transformer_engine", not "local"`)
		}
	}
	stages := n.PP * n.VPP
	g.stageOffset = make([]int, stages)
	g.stageCount = make([]int, stages)
	if n.PipelineLayout != "" {
		if n.AccountForEmbedding || n.AccountForLoss {
			return nil, errors.New("account_for_embedding_in_pipeline_split and account_for_loss_in_pipeline_split " +
				"cannot be combined with pipeline_model_parallel_layout (the layout places E and L itself)")
		}
		pl, err := parsePipelineLayout(n.PipelineLayout)
		if err != nil {
			return nil, err
		}
		if len(pl.stages)%n.PP != 0 {
			return nil, fmt.Errorf("pipeline_model_parallel_layout %q has %d stages, which is not divisible by PP = %d",
				n.PipelineLayout, len(pl.stages), n.PP)
		}
		if v := len(pl.stages) / n.PP; explicitVPP > 0 && explicitVPP != v {
			return nil, fmt.Errorf("pipeline_model_parallel_layout %q has %d stages = PP %d × VPP %d, but VPP is %d",
				n.PipelineLayout, len(pl.stages), n.PP, v, explicitVPP)
		}
		if err := pl.validate(n.NumLayers, n.MTPNumLayers, n.PP); err != nil {
			return nil, err
		}
		g.pl = pl
		off := 0
		for s := range stages {
			g.stageOffset[s] = off
			g.stageCount[s] = pl.count(s, layerDecoder)
			off += g.stageCount[s]
		}
		return g, nil
	}
	total, err := n.layerSplit()
	if err != nil {
		return nil, err
	}
	g.perChunk = total / stages
	off := 0
	if n.AccountForEmbedding {
		off = 1
	}
	for s := range stages {
		first := s*g.perChunk - off
		count := g.perChunk
		if s == 0 {
			first, count = 0, g.perChunk-off
		}
		if s == stages-1 && n.AccountForLoss {
			count--
		}
		g.stageOffset[s], g.stageCount[s] = first, count
	}
	return g, nil
}

// stage returns the stage index s = vp·PP + pp.
func (g *geometry) stage(pp, vp int) int { return vp*g.PP + pp }

func (g *geometry) isFirst(pp, vp int) bool { return pp == 0 && vp == 0 }
func (g *geometry) isLast(pp, vp int) bool  { return pp == g.PP-1 && vp == g.VPP-1 }

// layerStage returns the pipeline rank, virtual stage and local index of
// global decoder layer gl (§5.5).
func (g *geometry) layerStage(gl int) (pp, vp, local int, err error) {
	if gl < 0 || gl >= g.NumLayers {
		return 0, 0, 0, fmt.Errorf("layer %d is out of range for num_layers %d", gl, g.NumLayers)
	}
	for s, off := range g.stageOffset {
		if gl >= off && gl < off+g.stageCount[s] {
			return s % g.PP, s / g.PP, gl - off, nil
		}
	}
	return 0, 0, 0, fmt.Errorf("layer %d is on no pipeline stage", gl)
}

// globalLayer is the inverse of layerStage.
func (g *geometry) globalLayer(pp, vp, local int) (int, error) {
	s := g.stage(pp, vp)
	if local < 0 || local >= g.stageCount[s] {
		if len(g.stageCount) == 1 {
			return 0, fmt.Errorf("layer %d is beyond num_layers %d", local, g.NumLayers)
		}
		return 0, fmt.Errorf("local layer %d is out of range: pipeline rank %d, virtual stage %d holds %d layers", local, pp, vp, g.stageCount[s])
	}
	return g.stageOffset[s] + local, nil
}

// LayerPlacement says where a global decoder layer lives.
type LayerPlacement struct {
	PP, VP, Local int
}

// LayerPlacements returns, for every global decoder layer, its pipeline
// rank, virtual stage and local index.
func (l Layout) LayerPlacements() ([]LayerPlacement, error) {
	g, err := l.geometry()
	if err != nil {
		return nil, err
	}
	out := make([]LayerPlacement, g.NumLayers)
	for i := range out {
		pp, vp, local, err := g.layerStage(i)
		if err != nil {
			return nil, err
		}
		out[i] = LayerPlacement{pp, vp, local}
	}
	return out, nil
}
