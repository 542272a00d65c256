package exec

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// The expected structure of a model: what the template and the config say
// every checkpoint of the model has, checked by the planner after the op
// groups are matched (before anything is written, in both directions):
//
//   - every global op of the template (names outside the layers, without
//     "{}" wildcards) fires once: the embedding, the final norm, the
//     output layer unless the embeddings are tied (or the config does
//     not say);
//   - every op that fires in one layer fires in every layer of the same
//     kind (layers with and without experts, and the layer kinds of the
//     template's per-layer names, such as mca.layer_types), and every op
//     of one expert in every expert; and its source tensors have the same
//     shapes there;
//   - the Megatron weights whose shapes the config determines have those
//     shapes (mcaShapeRules), whatever op produced them;
//   - weights and biases are floating-point;
//   - no layer lies beyond num_layers unless all its tensors are dropped or
//     ignored by the template.
//
// Optional tensors stay optional: an op firing in no layer (q/k/v biases
// of a model without them), a wildcard op (a vision tower), a dropped
// name and the output layer of tied embeddings are not required. MTP
// layers have their own checks (checkMTP, mtp.go); the shape rules apply
// to them too. A shape the config does not determine is not checked.

// bucketOp identifies an op in a bucket.
type bucketOp struct {
	bucket string
	op     int
}

// mcaGlobal is a global (unsplit) MCA-side tensor of the plan: an op's
// output (HF -> MCA) or an input (MCA -> HF), with the inputs concerned.
type mcaGlobal struct {
	name   string
	dtype  tensor.DType
	shape  tensor.Shape
	inputs []int
	op     string
}

// valueMeta returns the dtype and logical shape of an op result without
// concatenating a stacked value.
func valueMeta(v ops.Value) (tensor.DType, tensor.Shape, bool) {
	if !v.IsStacked() {
		return v.Tensor.DType, v.Tensor.Shape, true
	}
	cs := v.Stacked.Components
	d := v.Stacked.Dim
	if len(cs) == 0 || d < 0 || d >= len(cs[0].Shape) {
		return 0, nil, false
	}
	shape := slices.Clone(cs[0].Shape)
	for _, c := range cs[1:] {
		if len(c.Shape) != len(shape) {
			return 0, nil, false
		}
		shape[d] += c.Shape[d]
	}
	return cs[0].DType, shape, true
}

// checkStructure runs the expected-structure checks.
func (pl *planner) checkStructure() {
	if pl.dir == ops.MCAToHF {
		for i, in := range pl.p.Inputs {
			if pl.consumed[i] {
				pl.mcaGlobals = append(pl.mcaGlobals, mcaGlobal{name: in.Name, dtype: in.DType, shape: in.Shape, inputs: []int{i}})
			}
		}
	}
	pl.checkDTypes()
	pl.checkGlobals()
	if !pl.m.lora { // an adapter need not cover every layer of a kind
		pl.checkPeers()
	}
	pl.checkMCAShapes()
}

// checkDTypes reports weights and biases that are not floating-point.
func (pl *planner) checkDTypes() {
	for i, in := range pl.p.Inputs {
		if !pl.consumed[i] || in.DType.IsFloat() {
			continue
		}
		last := in.Name[strings.LastIndex(in.Name, ".")+1:]
		if strings.HasSuffix(last, "weight") || strings.HasSuffix(last, "bias") {
			pl.problem(ProblemDType, Error, "", []int{i}, "the weight is %v; weights and biases are floating-point (BF16, F16, F32, F64 or F8)", in.DType)
		}
	}
}

// checkGlobals reports the global ops of the template that fired in no
// bucket: a missing embedding, final norm or (untied) output layer.
func (pl *planner) checkGlobals() {
	// Without tie_embeddings_and_output_weights the config does not say
	// whether an output layer exists: it is not required.
	tied, known := pl.p.Config.Bool("tie_embeddings_and_output_weights")
	fired := map[int]bool{}
	for _, st := range pl.p.Steps {
		if st.Bucket == "" {
			fired[st.OpIndex] = true
		}
	}
	if tied && known {
		// Tied embeddings have no output layer of their own: a checkpoint
		// with one contradicts its config (the weight would be dropped by
		// Megatron's loader, or the tie would silently replace it).
		for _, s := range pl.sides {
			if fired[s.info.index] && slices.Contains(s.info.mca, "output_layer.weight") {
				pl.problem(ProblemConfig, Error, s.info.describe(), nil,
					"the checkpoint has an output layer (%s) but its config ties the embeddings (tie_word_embeddings true): set tie_word_embeddings to false if the output layer is its own weight, or remove it", strings.Join(s.sources, ", "))
			}
		}
	}
	tied = tied || !known
	for _, s := range pl.sides {
		i := s.info.index
		if fired[i] || pl.attempted[bucketOp{"", i}] || s.info.kind == ops.KindDrop || isSplitKind(s.info.kind) {
			continue
		}
		global := len(s.sources) > 0
		for _, n := range append(slices.Clone(s.sources), s.targets...) {
			if strings.HasPrefix(n, ".") || containsWildcard(n) || n == "" {
				global = false
			}
		}
		if !global {
			continue
		}
		mcaNames := s.info.mca
		if tied && slices.Contains(mcaNames, "output_layer.weight") {
			continue
		}
		var want []string
		for _, src := range s.sources {
			w := strconv.Quote(src)
			if mn := pl.mcaNameOf(s, src); mn != "" {
				if shape, why := pl.expectedShape(mn); shape != nil {
					w += fmt.Sprintf(" of shape %s (%s)", fmtWant(shape), why)
				}
			}
			want = append(want, w)
		}
		pl.problem(ProblemMissing, Error, s.info.describe(), nil, "global weights: the checkpoint has no %s, which every %s model has",
			joinLimited(want, 8), pl.m.Template.Name)
		fired[i] = true
	}
}

// mcaNameOf returns the MCA name of an op's source (MCA -> HF: the source
// itself; HF -> MCA: the target of a one-to-one op), or "".
func (pl *planner) mcaNameOf(s *side, src string) string {
	if pl.dir == ops.MCAToHF {
		return src
	}
	if len(s.sources) == 1 && len(s.targets) == 1 {
		return s.targets[0]
	}
	return ""
}

// role is a class of buckets that must hold the same ops: layers of one
// kind, experts, or fused expert buckets.
type role struct {
	bucketKind string // "layer", "expert" or "experts"
	layerKind  string
}

// bucketInfo is what checkPeers knows of one bucket.
type bucketInfo struct {
	wp    weightPrefix
	steps map[int]*Step // by op index
}

// checkPeers reports ops that fire in some buckets of a role but not in
// others, and source shapes that differ between the buckets of a role.
func (pl *planner) checkPeers() {
	n, hasN := pl.p.Config.Int("num_layers")
	hasExperts := map[int]bool{}
	buckets := map[string]*bucketInfo{}
	var order []string
	addBucket := func(prefix string) *bucketInfo {
		b := buckets[prefix]
		if b == nil {
			wp, _, err := pl.src.split(prefix)
			if err != nil {
				return nil
			}
			if strings.HasSuffix(prefix, MCAExpertPrefix) && pl.dir == ops.MCAToHF {
				wp.Fused = true
			}
			b = &bucketInfo{wp: wp, steps: map[int]*Step{}}
			buckets[prefix] = b
			order = append(order, prefix)
		}
		return b
	}
	for i, in := range pl.p.Inputs {
		if !pl.consumed[i] {
			continue
		}
		wp, _, err := pl.src.split(in.Name)
		if err != nil || wp.Layer < 0 {
			continue
		}
		if wp.Expert >= 0 || wp.Fused {
			hasExperts[wp.Layer] = true
		}
	}
	for si := range pl.p.Steps {
		st := &pl.p.Steps[si]
		if st.Dropped || st.Bucket == "" {
			continue
		}
		if b := addBucket(st.Bucket); b != nil {
			b.steps[st.OpIndex] = st
		}
	}
	// A layer with a router has experts: one without any expert tensor
	// lost them all (the per-expert checks see only layers with some).
	for _, prefix := range order {
		b := buckets[prefix]
		if b.wp.Expert >= 0 || b.wp.Fused || hasExperts[b.wp.Layer] || hasN && b.wp.Layer >= int(n) {
			continue
		}
		for _, st := range b.steps {
			if slices.Contains(st.side.info.mca, ".mlp.router.weight") {
				e, _ := pl.p.Config.Int("num_moe_experts")
				pl.problem(ProblemMissing, Error, st.side.info.describe(), st.Inputs,
					"%s: the layer has a router but the checkpoint has none of its %d experts", bucketDesc(b.wp), e)
				break
			}
		}
	}
	// Layers with tensors but no step (everything failed) are reported
	// elsewhere; layers without tensors by checkLayers.
	conds := map[string]*ir.Expr{}
	var condKeys []string
	for _, v := range pl.variants {
		k := v.cond.String()
		if conds[k] == nil {
			conds[k] = v.cond
			condKeys = append(condKeys, k)
		}
	}
	sort.Strings(condKeys)
	layerKind := func(l int) string {
		var parts []string
		for _, k := range condKeys {
			if holds, err := pl.layerHolds(conds[k], l); err == nil {
				parts = append(parts, fmt.Sprintf("%s=%v", k, holds))
			}
		}
		if hasExperts[l] {
			parts = append(parts, "moe")
		}
		return strings.Join(parts, ",")
	}
	byRole := map[role][]string{}
	var roles []role
	for _, prefix := range order {
		b := buckets[prefix]
		if hasN && b.wp.Layer >= int(n) {
			continue // reported by checkLayers
		}
		r := role{bucketKind: "layer", layerKind: layerKind(b.wp.Layer)}
		switch {
		case b.wp.Expert >= 0:
			r = role{bucketKind: "expert"}
		case b.wp.Fused:
			r = role{bucketKind: "experts"}
		}
		if _, ok := byRole[r]; !ok {
			roles = append(roles, r)
		}
		byRole[r] = append(byRole[r], prefix)
	}
	for _, r := range roles {
		prefixes := byRole[r]
		if len(prefixes) < 2 {
			continue
		}
		// Ops of the role, in template order.
		var opIdx []int
		for _, p := range prefixes {
			for i := range buckets[p].steps {
				if !slices.Contains(opIdx, i) {
					opIdx = append(opIdx, i)
				}
			}
		}
		sort.Ints(opIdx)
		// The ops of each bucket, counting those already reported there.
		has := func(p string, oi int) bool {
			_, ok := buckets[p].steps[oi]
			return ok || pl.attempted[bucketOp{p, oi}]
		}
		// A bucket lacks an op when a peer has every op it has and more:
		// layers of kinds the template does not tell apart (linear and
		// full attention) each have ops the other lacks, and are left
		// alone. Buckets are compared by their op sets, of which there
		// are few whatever the number of buckets.
		sig := map[string]string{} // bucket → op set, one byte per op
		var sigs []string
		for _, p := range prefixes {
			b := make([]byte, len(opIdx))
			for k, oi := range opIdx {
				b[k] = '0'
				if has(p, oi) {
					b[k] = '1'
				}
			}
			sig[p] = string(b)
			if !slices.Contains(sigs, sig[p]) {
				sigs = append(sigs, sig[p])
			}
		}
		subset := func(a, b string) bool { // ops(a) ⊊ ops(b)
			for k := range a {
				if a[k] == '1' && b[k] == '0' {
					return false
				}
			}
			return a != b
		}
		// dominated reports whether op set a, lacking op k, is a strict
		// subset of an op set that has it.
		dominated := func(k int, a string) bool {
			for _, b := range sigs {
				if b[k] == '1' && subset(a, b) {
					return true
				}
			}
			return false
		}
		for k, oi := range opIdx {
			var have []string
			var example *Step
			for _, p := range prefixes {
				if st, ok := buckets[p].steps[oi]; ok {
					have = append(have, p)
					if example == nil {
						example = st
					}
				}
			}
			for _, p := range prefixes {
				if has(p, oi) || example == nil {
					continue
				}
				if !dominated(k, sig[p]) {
					continue
				}
				var want []string
				for _, src := range example.side.sources {
					if strings.HasPrefix(src, ".") {
						want = append(want, strconv.Quote(p+src))
					}
				}
				what := "the op's tensors"
				if len(want) > 0 {
					what = joinLimited(want, 8)
				}
				pl.problem(ProblemMissing, Error, example.side.info.describe(), nil, "%s: the checkpoint has no %s, which %s of the same kind have (%s)",
					bucketDesc(buckets[p].wp), what, plural(len(have), bucketNoun(r)), joinLimited(have, 4))
			}
			pl.peerShapes(r, prefixes, buckets, oi)
		}
	}
}

func bucketNoun(r role) string {
	switch r.bucketKind {
	case "expert":
		return "expert"
	case "experts":
		return "expert group"
	}
	return "layer"
}

// peerShapes reports buckets of a role whose source tensors for op oi
// differ in shape from the most common shape in the role.
func (pl *planner) peerShapes(r role, prefixes []string, buckets map[string]*bucketInfo, oi int) {
	type slot struct {
		j     int
		shape string
	}
	count := map[slot]int{}
	for _, p := range prefixes {
		st, ok := buckets[p].steps[oi]
		if !ok {
			continue
		}
		for j, i := range st.Inputs {
			count[slot{j, pl.p.Inputs[i].Shape.String()}]++
		}
	}
	for _, p := range prefixes {
		st, ok := buckets[p].steps[oi]
		if !ok {
			continue
		}
		for j, i := range st.Inputs {
			in := pl.p.Inputs[i]
			mine := count[slot{j, in.Shape.String()}]
			best, bestN := "", 0
			for s, c := range count {
				if s.j == j && (c > bestN || c == bestN && s.shape < best) {
					best, bestN = s.shape, c
				}
			}
			if best != in.Shape.String() && bestN > mine {
				pl.problem(ProblemShape, Error, st.side.info.describe(), []int{i}, "%s: the tensor has shape %v; want %s, its shape in %s of the same kind",
					bucketDesc(buckets[p].wp), in.Shape, best, plural(bestN, bucketNoun(r)))
			}
		}
	}
}

// checkMCAShapes checks the global MCA tensors against the shapes the
// config determines.
func (pl *planner) checkMCAShapes() {
	for _, g := range pl.mcaGlobals {
		want, why := pl.expectedShape(g.name)
		if want == nil {
			continue
		}
		ok := len(want) == len(g.shape)
		for d := 0; ok && d < len(want); d++ {
			ok = want[d] < 0 || want[d] == g.shape[d]
		}
		if ok {
			continue
		}
		pl.problem(ProblemShape, Error, g.op, g.inputs, "%s has shape %v; want %v (%s)", g.name, g.shape, fmtWant(want), why)
	}
}

func fmtWant(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		if d < 0 {
			parts[i] = "*"
		} else {
			parts[i] = strconv.FormatInt(d, 10)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// expectedShape returns the shape the config determines for a global
// Megatron weight name (a dimension -1 is not determined), and how it is
// derived; nil when the name is not one whose shape is known or the
// config lacks a size it needs.
func (pl *planner) expectedShape(name string) ([]int64, string) {
	c := pl.p.Config
	get := func(k string) int64 {
		v, ok := c.Int(k)
		if !ok || v <= 0 {
			return 0
		}
		return v
	}
	h := get("hidden_size")
	if h == 0 {
		return nil, ""
	}
	heads := get("num_attention_heads")
	d := get("kv_channels")
	dWhy := "kv_channels"
	if d == 0 && heads > 0 && h%heads == 0 {
		d, dWhy = h/heads, "hidden_size / num_attention_heads"
	}
	ffn := get("ffn_hidden_size")
	moeFFN, moeWhy := get("moe_ffn_hidden_size"), "moe_ffn_hidden_size"
	if moeFFN == 0 {
		moeFFN, moeWhy = ffn, "ffn_hidden_size"
	}
	shared := get("moe_shared_expert_intermediate_size")
	glu, gluKnown := c.Bool("swiglu")
	fc1 := func(f int64, what string) ([]int64, string) {
		if f == 0 || !gluKnown {
			return nil, ""
		}
		if glu {
			return []int64{2 * f, h}, "2 × " + what + " (swiglu), hidden_size"
		}
		return []int64{f, h}, what + ", hidden_size"
	}
	fc2 := func(f int64, what string) ([]int64, string) {
		if f == 0 {
			return nil, ""
		}
		return []int64{h, f}, "hidden_size, " + what
	}
	switch name {
	case "embedding.word_embeddings.weight", "output_layer.weight":
		// The rows are padded_vocab_size (written from and to
		// config.json's vocab_size): transformers requires them of the
		// embedding and the LM head, Megatron of its embedding and output
		// layer. A vocabulary padded for tensor parallelism is padded in
		// both.
		if v := get("padded_vocab_size"); v > 0 {
			return []int64{v, h}, "padded_vocab_size, hidden_size"
		}
		return []int64{-1, h}, "padded_vocab_size, hidden_size"
	case "decoder.final_layernorm.weight", "decoder.final_layernorm.bias":
		return []int64{h}, "hidden_size"
	}
	n, err := rollname.ParseMCAName(name)
	if err != nil || n.Layer < 0 {
		return nil, ""
	}
	rest := n.Pure
	if n.MTP && n.Expert < 0 { // the MTP block's own weights; its layer's are a decoder layer's
		if shape, why, ok := mtpBlockShape(rest, h); ok {
			return shape, why
		}
	}
	if n.Expert >= 0 {
		switch rest {
		case ".linear_fc1.weight":
			return fc1(moeFFN, moeWhy)
		case ".linear_fc2.weight":
			return fc2(moeFFN, moeWhy)
		}
		return nil, ""
	}
	switch rest {
	case ".self_attention.linear_qkv.layer_norm_weight", ".self_attention.in_proj.layer_norm_weight",
		".mlp.linear_fc1.layer_norm_weight", ".input_layernorm.weight", ".pre_mlp_layernorm.weight":
		return []int64{h}, "hidden_size"
	case ".self_attention.q_layernorm.weight", ".self_attention.k_layernorm.weight":
		if d == 0 {
			return nil, ""
		}
		return []int64{d}, dWhy
	case ".self_attention.linear_proj.weight":
		if mla, _ := c.Bool("multi_latent_attention"); mla || get("kv_lora_rank") > 0 {
			return nil, "" // multi-latent attention: v_head_dim, not kv_channels
		}
		if heads == 0 || d == 0 {
			return nil, ""
		}
		return []int64{h, heads * d}, "hidden_size, num_attention_heads × " + dWhy
	case ".mlp.linear_fc1.weight":
		return fc1(ffn, "ffn_hidden_size")
	case ".mlp.linear_fc2.weight":
		return fc2(ffn, "ffn_hidden_size")
	case ".mlp.shared_experts.linear_fc1.weight":
		return fc1(shared, "moe_shared_expert_intermediate_size")
	case ".mlp.shared_experts.linear_fc2.weight":
		return fc2(shared, "moe_shared_expert_intermediate_size")
	case ".mlp.router.weight":
		if e := get("num_moe_experts"); e > 0 {
			return []int64{e, h}, "num_moe_experts, hidden_size"
		}
	case ".mlp.router.expert_bias":
		if e := get("num_moe_experts"); e > 0 {
			return []int64{e}, "num_moe_experts"
		}
	}
	return mlaShape(rest, h, heads, get)
}

// mlaShape returns the shape of a multi-latent-attention weight (layer
// relative name rest) from the MLA sizes of the config (get returns 0 for
// a missing one), and how it is derived; nil for other names or when a
// size is missing.
func mlaShape(rest string, h, heads int64, get func(string) int64) ([]int64, string) {
	q, kv := get("q_lora_rank"), get("kv_lora_rank")
	qk, pos, v := get("qk_head_dim"), get("qk_pos_emb_head_dim"), get("v_head_dim")
	if kv == 0 || heads == 0 || qk == 0 || pos == 0 || v == 0 {
		return nil, ""
	}
	qOut := heads * (qk + pos)
	const qWhy = "num_attention_heads × (qk_head_dim + qk_pos_emb_head_dim)"
	switch rest {
	case ".self_attention.linear_q_down_proj.weight":
		if q > 0 {
			return []int64{q, h}, "q_lora_rank, hidden_size"
		}
	case ".self_attention.linear_q_up_proj.weight":
		if q > 0 {
			return []int64{qOut, q}, qWhy + ", q_lora_rank"
		}
	case ".self_attention.linear_q_up_proj.layer_norm_weight":
		if q > 0 {
			return []int64{q}, "q_lora_rank"
		}
	case ".self_attention.linear_q_proj.weight":
		return []int64{qOut, h}, qWhy + ", hidden_size"
	case ".self_attention.linear_kv_down_proj.weight":
		return []int64{kv + pos, h}, "kv_lora_rank + qk_pos_emb_head_dim, hidden_size"
	case ".self_attention.linear_kv_up_proj.weight":
		return []int64{heads * (qk + v), kv}, "num_attention_heads × (qk_head_dim + v_head_dim), kv_lora_rank"
	case ".self_attention.linear_kv_up_proj.layer_norm_weight":
		return []int64{kv}, "kv_lora_rank"
	case ".self_attention.linear_proj.weight":
		return []int64{h, heads * v}, "hidden_size, num_attention_heads × v_head_dim"
	}
	return nil, ""
}
