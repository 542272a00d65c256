package exec

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
)

// Multi-token-prediction (MTP) layers (lang/spec.md §4).
//
// The planner converts an MTP layer like a decoder layer. Its tensors are
// bucketed under a canonical decoder-style prefix: MTP layer i is layer
// num_layers+i of the source side (HF: layer_prefix + (num_layers+i);
// MCA: decoder.layers.<num_layers+i>), so the template's layer-relative
// ops, per-layer names (`layer` = num_layers+i) and expert handling apply
// unchanged. Only the names change at the edges:
//
//   - reading: an HF name of MTP layer i (layer mtp_first_layer+i under
//     layer_prefix, or mtp_hf_prefix + "layers.<i>." / a block weight
//     directly under mtp_hf_prefix) or an MCA name mtp.layers.<i>.… is
//     read as its canonical name;
//   - writing: a canonical MCA output becomes mtp.layers.<i>.<name> for
//     the MTP block's own weights (enorm, hnorm, eh_proj,
//     final_layernorm) and mtp.layers.<i>.mtp_model_layer.<name> for the
//     others (rollname.AddMCAPrefix, as ROLL's DistConverter names them);
//     a canonical HF output goes back to the HF name of MTP layer i.
//
// The sharder places every mtp.* name on the last pipeline stage and
// splits a mtp_model_layer tensor by the class of its name without the
// infix, the class of the decoder-layer tensor of the same name.

// mtpMap is a plan's view of the template's MTP layers.
type mtpMap struct {
	spec *ir.MTP
	// first is the HF layer index of MTP layer 0 (mtp_first_layer).
	first int
	// decoders is num_layers: MTP layer i is canonical layer decoders+i.
	decoders int
	// num is mtp_num_layers (0 when null).
	num int
	// skip leaves MTP weights out (Model.NoMTP).
	skip bool
	// hfLayer is the HF layer prefix.
	hfLayer string
}

// newMTPMap returns the MTP view of a plan, or nil when the template has
// no MTP layers. An error means the MTP fields cannot be evaluated
// against the config.
func newMTPMap(m *Model, mc *MCAConfig) (*mtpMap, error) {
	spec := m.Template.MTP
	if spec == nil {
		return nil, nil
	}
	n, ok := mc.Int("num_layers")
	if !ok || n < 0 || n > ir.MaxCount {
		return nil, fmt.Errorf("the template has MTP layers but mca_config has no valid num_layers")
	}
	mm := &mtpMap{spec: spec, decoders: int(n), skip: m.NoMTP, hfLayer: m.Template.LayerPrefix}
	if v, ok := mc.Get("mtp_num_layers"); ok && v != nil {
		k, ok := mc.Int("mtp_num_layers")
		if !ok || k < 0 || k > ir.MaxCount {
			return nil, fmt.Errorf("mca_config mtp_num_layers is %s, not a count", pyjson.Encode(v, 0, false))
		}
		mm.num = int(k)
	}
	if spec.FirstLayer != nil {
		v, err := spec.FirstLayer.Eval(exprEnv{hf: recordedHF(mc), mca: mc.Object(), flags: m.Flags})
		if err != nil {
			return nil, fmt.Errorf("mtp_first_layer (%s): %v", spec.Span.Start, err)
		}
		f, ok := v.Int64()
		if v.Kind != ir.Int || !ok {
			return nil, fmt.Errorf("mtp_first_layer (%s) is %s, not a layer index", spec.Span.Start, v.Repr())
		}
		if f < n || f > ir.MaxCount {
			return nil, fmt.Errorf("mtp_first_layer (%s) is %d; HF keeps MTP layers after the %d decoder layers (num_layers), so it is at least %d", spec.Span.Start, f, n, n)
		}
		mm.first = int(f)
	} else if mm.num > 1 && !mm.skip {
		return nil, fmt.Errorf("mtp_num_layers is %d, but the template keeps MTP weights under %q, where the MTP block's own weights carry no layer index: one MTP layer only", mm.num, spec.HFPrefix)
	}
	return mm, nil
}

// canonicalLayer is the source-side layer index MTP layer i is bucketed
// under.
func (mm *mtpMap) canonicalLayer(i int) int { return mm.decoders + i }

// splitHF splits an HF name of an MTP layer (ok false: not one).
func (mm *mtpMap) splitHF(p prefixes, name string) (wp weightPrefix, pure string, ok bool, err error) {
	if mm.spec.FirstLayer != nil {
		wp, pure, err = p.split(name)
		if err != nil || wp.Layer < mm.first {
			return wp, pure, false, err
		}
		i := wp.Layer - mm.first
		c := mm.canonicalLayer(i)
		rest := wp.Prefix[len(p.layer)+len(strconv.Itoa(wp.Layer)):]
		wp.Prefix = p.layer + strconv.Itoa(c) + rest
		wp.Layer, wp.mtp, wp.mtpIndex = c, true, i
		return wp, pure, true, nil
	}
	pre := mm.spec.HFPrefix
	if !strings.HasPrefix(name, pre) {
		return wp, "", false, nil
	}
	i, rest := 0, "."+name[len(pre):]
	if lp := mm.spec.HFLayers(); strings.HasPrefix(name, lp) {
		comp, _, _ := strings.Cut(name[len(lp):], ".")
		var okIdx bool
		if i, okIdx = canonicalIndex(comp); !okIdx {
			return wp, "", false, fmt.Errorf("the MTP layer index %q after %q is not an integer", comp, lp)
		}
		rest = name[len(lp)+len(comp):]
		if rest == "" {
			return wp, "", false, fmt.Errorf("the name has nothing after the MTP layer prefix %q", lp+comp)
		}
	}
	wp, pure, err = p.split(p.layer + strconv.Itoa(mm.canonicalLayer(i)) + rest)
	if err != nil {
		return wp, "", false, err
	}
	wp.mtp, wp.mtpIndex = true, i
	return wp, pure, true, nil
}

// splitMCA splits an MCA name of an MTP layer (ok false: not one).
func (mm *mtpMap) splitMCA(p prefixes, name string) (wp weightPrefix, pure string, ok bool, err error) {
	if !strings.HasPrefix(name, "mtp.") {
		return wp, "", false, nil
	}
	n, err := rollname.ParseMCAName(name)
	if err != nil {
		return wp, "", false, err
	}
	if !n.MTP || n.Layer < 0 {
		return wp, "", false, fmt.Errorf("an MTP weight outside mtp.layers.<i>: ROLL and megatron-core keep every MTP weight in an MTP layer")
	}
	wp, pure, err = p.split(rollname.AddMCAPrefix(n.Pure, false, mm.canonicalLayer(n.Layer), n.Expert))
	if err != nil {
		return wp, "", false, err
	}
	wp.mtp, wp.mtpIndex = true, n.Layer
	return wp, pure, true, nil
}

// outName turns the canonical name of an output of an MTP bucket into
// its real name. HF -> MCA it is the megatron-core MTP name; MCA -> HF
// the HF name of the MTP layer, where block says the step converted the
// MTP block's own weights (under mtp_hf_prefix they have no layer).
func (mm *mtpMap) outName(dir ops.Direction, wp weightPrefix, canonical string, block bool) (string, error) {
	if dir == ops.HFToMCA {
		n, err := rollname.ParseMCAName(canonical)
		if err != nil {
			return "", err
		}
		if n.Layer < 0 || n.MTP {
			return "", fmt.Errorf("MTP layer %d: the op produced %q, not a layer-relative name", wp.mtpIndex, canonical)
		}
		if n.Expert < 0 && !rollname.IsMTPBlockWeight(n.Pure) && !rollname.MTPInner(n.Pure) {
			return "", fmt.Errorf("MTP layer %d: %q is neither a weight of the MTP block (%s) nor one ROLL's DistConverter puts under mtp_model_layer (a name with self_attention, mlp or input_layernorm)",
				wp.mtpIndex, n.Pure, strings.Join(rollname.MTPBlockWeights, ", "))
		}
		return rollname.AddMCAPrefix(n.Pure, true, wp.mtpIndex, n.Expert), nil
	}
	lp := mm.hfLayer + strconv.Itoa(mm.canonicalLayer(wp.mtpIndex))
	if !strings.HasPrefix(canonical, lp) {
		return "", fmt.Errorf("MTP layer %d: the op produced %q, not a layer-relative name", wp.mtpIndex, canonical)
	}
	rest := canonical[len(lp):]
	switch {
	case mm.spec.FirstLayer != nil:
		return mm.hfLayer + strconv.Itoa(mm.first+wp.mtpIndex) + rest, nil
	case block:
		return mm.spec.HFPrefix + strings.TrimPrefix(rest, "."), nil
	}
	return mm.spec.HFLayers() + strconv.Itoa(wp.mtpIndex) + rest, nil
}

// hfName is the HF name (or prefix) of MTP layer i, for messages.
func (mm *mtpMap) hfName(i int) string {
	if mm.spec.FirstLayer != nil {
		return mm.hfLayer + strconv.Itoa(mm.first+i)
	}
	return mm.spec.HFLayers() + strconv.Itoa(i)
}

// admit decides what the planner does with input i of MTP layer wp: false
// means it is not planned (skipped with --no-mtp, or reported).
func (pl *planner) admitMTP(i int, wp weightPrefix) bool {
	mm := pl.mtp
	if mm.skip {
		pl.p.SkippedMTP = append(pl.p.SkippedMTP, i)
		return false
	}
	if wp.mtpIndex >= mm.num {
		if mm.num == 0 {
			pl.problem(ProblemLayers, Error, "", []int{i}, "an MTP weight (MTP layer %d), but mtp_num_layers is %s: map the HF key of mtp_num_layers, or convert with --no-mtp to leave MTP weights out",
				wp.mtpIndex, pl.mtpNumText())
		} else {
			pl.problem(ProblemLayers, Error, "", []int{i}, "MTP layer %d is beyond mtp_num_layers %d", wp.mtpIndex, mm.num)
		}
		return false
	}
	return true
}

func (pl *planner) mtpNumText() string {
	if v, ok := pl.p.Config.Get("mtp_num_layers"); ok && v != nil {
		return string(pyjson.Encode(v, 0, false))
	}
	return "null"
}

// stepIsMTPBlock reports whether every source of a step is a weight of
// the MTP block itself (MCA -> HF: its sources are MCA names).
func stepIsMTPBlock(s *side) bool {
	for _, src := range s.sources {
		if !rollname.IsMTPBlockWeight(src) {
			return false
		}
	}
	return len(s.sources) > 0
}

// checkMTP is the expected structure of MTP layers: each of the
// mtp_num_layers layers is in the checkpoint, has every weight of the MTP
// block, and runs every op that runs in all decoder layers of its kind
// (with or without experts).
func (pl *planner) checkMTP() {
	mm := pl.mtp
	if mm == nil || mm.skip || mm.num == 0 {
		return
	}
	type mtpLayer struct {
		seen   bool
		block  map[string]bool // MCA block weight names present
		ops    map[int]bool
		mca    map[string]bool // MCA names (patterns) of the ops run
		expert bool
		inputs []int
	}
	layers := make([]mtpLayer, mm.num)
	for i := range layers {
		layers[i].block = map[string]bool{}
		layers[i].ops = map[int]bool{}
		layers[i].mca = map[string]bool{}
	}
	// Decoder layers: the ops that run in every layer of each kind.
	decoderOps := map[bool]map[int]int{} // experts? → op → layers running it
	decoderN := map[bool]int{}
	layerOps := map[int]map[int]bool{}
	layerExperts := map[int]bool{}
	for i, in := range pl.p.Inputs {
		wp, _, err := pl.src.split(in.Name)
		if err != nil || wp.Layer < 0 || !pl.consumed[i] {
			continue
		}
		if wp.Expert >= 0 || wp.Fused {
			layerExperts[wp.Layer] = true
		}
	}
	plain := pl.src
	plain.mtp = nil
	for si := range pl.p.Steps {
		st := &pl.p.Steps[si]
		if st.Dropped || st.Bucket == "" {
			continue
		}
		wp, _, err := plain.split(st.Bucket) // canonical prefixes
		if err != nil || wp.Layer < 0 {
			continue
		}
		if wp.Layer >= mm.decoders {
			i := wp.Layer - mm.decoders
			if i < 0 || i >= mm.num {
				continue
			}
			l := &layers[i]
			l.seen = true
			l.ops[st.OpIndex] = true
			for _, n := range st.side.info.mca {
				l.mca[n] = true
			}
			l.inputs = append(l.inputs, st.Inputs...)
			names := st.side.targets
			if pl.dir == ops.MCAToHF {
				names = st.side.sources
			}
			for _, n := range names {
				if rollname.IsMTPBlockWeight(n) {
					l.block[n] = true
				}
			}
			continue
		}
		if layerOps[wp.Layer] == nil {
			layerOps[wp.Layer] = map[int]bool{}
		}
		layerOps[wp.Layer][st.OpIndex] = true
	}
	for l, opsRun := range layerOps {
		e := layerExperts[l]
		decoderN[e]++
		if decoderOps[e] == nil {
			decoderOps[e] = map[int]int{}
		}
		for o := range opsRun {
			decoderOps[e][o]++
		}
	}
	for i := range layers {
		l := &layers[i]
		l.expert = layerExperts[mm.canonicalLayer(i)]
		if !l.seen {
			pl.problem(ProblemMissing, Error, "", nil, "mtp_num_layers is %d but the checkpoint has no tensors of MTP layer %d (%s)", mm.num, i, pl.mtpLayerNames(i))
			continue
		}
		var missing []string
		for _, w := range rollname.MTPBlockWeights {
			if !l.block[w] {
				missing = append(missing, w+pl.mtpBlockOp(w))
			}
		}
		if len(missing) > 0 {
			pl.problem(ProblemMissing, Error, "", l.inputs[:min(len(l.inputs), 4)], "MTP layer %d (%s) has no %s, which every megatron-core MTP layer has",
				i, pl.mtpLayerNames(i), joinLimited(missing, 4))
		}
		n := decoderN[l.expert]
		if n == 0 {
			continue
		}
		var lacks []string
		for o, cnt := range decoderOps[l.expert] {
			if cnt == n && !l.ops[o] && !pl.attempted[bucketOp{pl.mtpBucket(i), o}] && !producesAny(l.mca, pl.sides[o].info.mca) {
				s := pl.sides[o]
				lacks = append(lacks, fmt.Sprintf("%s (%s)", s.info.describe(), strings.Join(s.sources, ", ")))
			}
		}
		if len(lacks) > 0 {
			sort.Strings(lacks)
			pl.problem(ProblemMissing, Error, "", l.inputs[:min(len(l.inputs), 4)], "MTP layer %d (%s) lacks what every decoder layer of its kind has: %s",
				i, pl.mtpLayerNames(i), joinLimited(lacks, 8))
		}
	}
}

// mtpBlockOp names, for a message, the op that converts MTP block weight
// w (an MCA name such as ".eh_proj.weight") and the source names it wants,
// or "" when no op does.
func (pl *planner) mtpBlockOp(w string) string {
	for _, s := range pl.sides {
		names := s.targets
		if pl.dir == ops.MCAToHF {
			names = s.sources
		}
		for _, n := range names {
			if n == w {
				return fmt.Sprintf(" (from %s of the %s)", strings.Join(s.sources, ", "), s.info.describe())
			}
		}
	}
	return ""
}

// producesAny reports whether an op with MCA names names produced one of
// them already (done): a fused-expert split op and the per-expert ops
// produce the same MCA names from the two HF layouts of the same experts,
// and an MTP layer may keep its experts in the other layout than the
// decoder layers (Qwen3.5-MoE: fused decoder experts, MTP experts one by
// one).
func producesAny(done map[string]bool, names []string) bool {
	for _, n := range names {
		if done[n] {
			return true
		}
	}
	return false
}

// mtpBucket is the canonical bucket prefix of MTP layer i on the source
// side.
func (pl *planner) mtpBucket(i int) string {
	return pl.src.layer + strconv.Itoa(pl.mtp.canonicalLayer(i))
}

// mtpLayerNames describes where MTP layer i's tensors are on the source
// side.
func (pl *planner) mtpLayerNames(i int) string {
	if pl.dir == ops.MCAToHF {
		return fmt.Sprintf("names mtp.layers.%d.*", i)
	}
	if pl.mtp.spec.FirstLayer != nil {
		return fmt.Sprintf("names %s.*", pl.mtp.hfName(i))
	}
	return fmt.Sprintf("names %s.* and %s*", pl.mtp.hfName(i), pl.mtp.spec.HFPrefix)
}

// noMTPConfig applies Model.NoMTP to the MCA config being built: no MTP
// layers (ROLL writes null for 0).
func noMTPConfig(m *Model, kw *pyjson.Object) {
	if m.NoMTP && m.Template.MTP != nil {
		kw.Set("mtp_num_layers", nil)
	}
}

// noMTPHFValue is the value BuildHFConfig writes back for an MCA key:
// with Model.NoMTP the HF key of mtp_num_layers says 0 MTP layers.
func noMTPHFValue(m *Model, mcaKey string, v any) any {
	if m.NoMTP && m.Template.MTP != nil && mcaKey == "mtp_num_layers" {
		return pyjson.IntNumber(0)
	}
	return v
}

// splitMTP splits a name of an MTP layer when p reads MTP layers (ok
// false: not one, split it as a decoder name).
func (p prefixes) splitMTP(name string) (wp weightPrefix, pure string, ok bool, err error) {
	if p.mtp == nil {
		return wp, "", false, nil
	}
	plain := p
	plain.mtp = nil
	if p.hf {
		return p.mtp.splitHF(plain, name)
	}
	return p.mtp.splitMCA(plain, name)
}

// mtpBlockShape is the shape megatron-core gives a weight of an MTP block
// (ok false: not one): the norms [hidden_size], eh_proj
// [hidden_size, 2 × hidden_size] (it projects the concatenated embedding
// and hidden state).
func mtpBlockShape(pure string, h int64) (shape []int64, why string, ok bool) {
	switch pure {
	case ".enorm.weight", ".hnorm.weight", ".final_layernorm.weight":
		return []int64{h}, "hidden_size", true
	case ".eh_proj.weight":
		return []int64{h, 2 * h}, "hidden_size, 2 × hidden_size", true
	}
	return nil, "", false
}
