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
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TensorMeta describes a source tensor without its data.
type TensorMeta struct {
	Name  string
	DType tensor.DType
	Shape tensor.Shape
	Size  int64  // bytes
	File  string // the file holding it, for messages
}

// Step is one op application: an op of the template applied to one
// bucket's tensors (one layer, one expert, or the global weights).
type Step struct {
	// OpIndex is the op's index in Template.Ops.
	OpIndex int
	Kind    string
	// Bucket is the weight prefix of the sources, "" for global weights.
	Bucket string
	// Inputs are indices into Plan.Inputs in the op's declared source
	// order.
	Inputs []int
	// Captures are the values "{}" wildcards matched.
	Captures []string
	// Outputs are the tensors the step writes, in order.
	Outputs []Output
	// Dropped is set for a drop op: the inputs are discarded on purpose.
	Dropped bool

	side *side
}

// Output is one tensor a step writes.
type Output struct {
	Name  string
	DType tensor.DType
	Shape tensor.Shape
	Size  int64
	// Class is the MCA name's parallel class (HF → MCA only).
	Class string
}

// Plan is the result of matching a checkpoint's tensor list against a
// template: which op groups run, in which order, what they produce, and
// every problem found. It is computed from names, dtypes and shapes only.
type Plan struct {
	Dir    ops.Direction
	Model  *Model
	Config *MCAConfig
	// Inputs are the source tensors in the order they were matched (file
	// order).
	Inputs []TensorMeta
	// Steps are the op groups in execution order: a group runs as soon as
	// its last source tensor has been seen, as in ROLL's streaming
	// converter.
	Steps []Step
	// Ignored are indices into Inputs of tensors skipped on purpose: HF
	// names in the template's ignore list, MCA "._extra_state" entries.
	Ignored []int
	// SkippedMTP are indices into Inputs of the MTP weights left out
	// with Model.NoMTP.
	SkippedMTP []int
	Problems   []Problem
	// FP8 is the FP8 dequantization pre-pass of an HF -> MCA plan (nil
	// when the checkpoint is not FP8 block-quantized; fp8.go).
	FP8 *FP8Info

	// stacks joins and cuts the stacked swiglu and gdn weights.
	stacks *shard.Stacks
	// layerOps are, HF -> MCA, the layers each alternative op converted
	// (layerops.go), recorded in the MCA config by recordLayerOps.
	layerOps map[int][]int
}

// Err returns nil when the plan has no error-severity problems, else a
// *PlanError listing them.
func (p *Plan) Err() error {
	var errs []Problem
	for _, pr := range p.Problems {
		if pr.Severity == Error {
			errs = append(errs, pr)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &PlanError{Problems: errs}
}

// InBytes returns the bytes of all source tensors.
func (p *Plan) InBytes() int64 {
	var n int64
	for _, t := range p.Inputs {
		n += t.Size
	}
	return n
}

// OutBytes returns the bytes of all outputs.
func (p *Plan) OutBytes() int64 {
	var n int64
	for _, s := range p.Steps {
		for _, o := range s.Outputs {
			n += o.Size
		}
	}
	return n
}

// NumOutputs returns the number of output tensors.
func (p *Plan) NumOutputs() int {
	n := 0
	for _, s := range p.Steps {
		n += len(s.Outputs)
	}
	return n
}

// Outputs returns every output in write order.
func (p *Plan) Outputs() []Output {
	out := make([]Output, 0, p.NumOutputs())
	for _, s := range p.Steps {
		out = append(out, s.Outputs...)
	}
	return out
}

// PlanHFToMCA matches HF tensors (in file order) against m for a
// conversion to MCA with the config mc (built by [BuildMCAConfig]).
func PlanHFToMCA(m *Model, mc *MCAConfig, inputs []TensorMeta) *Plan {
	return plan(m, mc, inputs, ops.HFToMCA)
}

// PlanMCAToHF matches MCA tensors (names without the "model/" path, in
// file order) against m for a conversion back to HF.
func PlanMCAToHF(m *Model, mc *MCAConfig, inputs []TensorMeta) *Plan {
	return plan(m, mc, inputs, ops.MCAToHF)
}

type bucket struct {
	wp   weightPrefix
	keys []string       // buffered names (pure names), in insertion order
	idx  map[string]int // name → input index
}

func (b *bucket) add(key string, i int) {
	if _, ok := b.idx[key]; !ok {
		b.keys = append(b.keys, key)
	}
	b.idx[key] = i
}

type planner struct {
	p        *Plan
	m        *Model
	dir      ops.Direction
	cfg      ops.Config
	src, dst prefixes
	table    *opTable
	stacks   *shard.Stacks
	buckets  map[string]*bucket
	order    []string
	virt     []byte
	invalid  map[string]bool
	seen     map[string]bool // input names, to catch duplicates
	// variants maps the side of an op with a per-layer name to the side
	// with the other choice and its condition (HF -> MCA: used for the
	// layers meeting it, as ROLL's template class does in add_hf_weight).
	variants map[*side]layerVariant
	condEnv  *exprEnv // what per-layer name conditions read (built on first use)
	// holds memoizes layerHolds: every tensor of a layer (each expert's
	// included) asks the same question of the same config.
	holds map[condLayer]condResult

	// For the expected-structure checks (structure.go):
	sides      []*side           // one per template op (MCA -> HF: and per-layer variants)
	attempted  map[bucketOp]bool // op groups that ran or were reported in a bucket
	consumed   map[int]bool      // inputs that reached an op other than drop
	dropped    map[int]bool      // inputs of drop ops
	mcaGlobals []mcaGlobal       // HF -> MCA: the global MCA outputs

	mtp *mtpMap // the template's MTP layers; nil without

	// alt maps each alternative op (ops sharing MCA names) to its group;
	// recorded is, MCA -> HF, the op the MCA config records for a
	// {layer, group} (layerops.go), nil without a record.
	alt      map[int]int
	recorded map[[2]int]int
}

// layerVariant is the side an op takes in the layers meeting cond.
type layerVariant struct {
	cond *ir.Expr
	side *side
}

// layerHolds evaluates a per-layer name condition for one layer, over
// the MCA config (and the HF config recorded in it) and the build flags.
func (pl *planner) layerHolds(cond *ir.Expr, layer int) (bool, error) {
	key := condLayer{cond, layer}
	if r, ok := pl.holds[key]; ok {
		return r.holds, r.err
	}
	if pl.condEnv == nil {
		pl.condEnv = &exprEnv{mca: pl.p.Config.Object(), hf: recordedHF(pl.p.Config), hasLayer: true, flags: pl.m.Flags}
		pl.holds = map[condLayer]condResult{}
	}
	env := *pl.condEnv
	env.layer = int64(layer)
	var r condResult
	v, err := cond.Eval(env)
	if err != nil {
		r.err = err
	} else {
		r.holds = v.Truthy()
	}
	pl.holds[key] = r
	return r.holds, r.err
}

// condLayer is a per-layer name condition and a layer.
type condLayer struct {
	cond  *ir.Expr
	layer int
}

// condResult is what layerHolds found for a condLayer.
type condResult struct {
	holds bool
	err   error
}

func plan(m *Model, mc *MCAConfig, inputs []TensorMeta, dir ops.Direction) *Plan {
	p := &Plan{Dir: dir, Model: m, Config: mc, Inputs: inputs}
	t := m.Template
	pl := &planner{
		p: p, m: m, dir: dir, cfg: mc.OpsConfig(),
		buckets:   map[string]*bucket{},
		invalid:   map[string]bool{},
		seen:      map[string]bool{},
		variants:  map[*side]layerVariant{},
		attempted: map[bucketOp]bool{},
		consumed:  map[int]bool{},
		dropped:   map[int]bool{},
	}
	stacks, err := newStacks(m, mc)
	if err != nil {
		p.Problems = append(p.Problems, Problem{Kind: ProblemUnclassified, Severity: Error, Msg: fmt.Sprintf("parallel set: %v", err)})
		return p
	}
	p.stacks, pl.stacks = stacks, stacks
	hfp := prefixes{layer: t.LayerPrefix, expert: t.ExpertPrefix}
	mcap := prefixes{layer: MCALayerPrefix, expert: MCAExpertPrefix}
	if t.ExpertPrefix == "" {
		mcap.expert = ""
	}
	if dir == ops.HFToMCA {
		pl.src, pl.dst = hfp, mcap
	} else {
		pl.src, pl.dst = mcap, hfp
		// MCA names always carry the MCA expert prefix.
		pl.src.expert = MCAExpertPrefix
	}
	for _, inv := range t.Invalid {
		pl.invalid[inv.Value] = true
	}
	if pl.mtp, err = newMTPMap(m, mc); err != nil {
		p.Problems = append(p.Problems, Problem{Kind: ProblemConfig, Severity: Error, Msg: err.Error()})
		return p
	}
	pl.src.mtp, pl.src.hf = pl.mtp, dir == ops.HFToMCA

	// Sides and the lookup table.
	var sides []*side
	experts := pl.cfg.NumMoEExperts
	for i, o := range t.Ops {
		if t.ScaleOp(o) {
			// ROLL's renames of FP8 scales (deepseek_v3): never planned,
			// in either direction; the FP8 pre-pass consumes the scales
			// (lang/spec.md §7a).
			continue
		}
		info, err := m.opInfo(i, o)
		if err == nil {
			err = m.compose(info, mc)
		}
		if err != nil {
			p.Problems = append(p.Problems, Problem{Kind: ProblemConfig, Severity: Error, Msg: err.Error()})
			return p
		}
		mca := info.mca
		if isSplitKind(info.kind) {
			if experts <= 0 {
				p.Problems = append(p.Problems, Problem{Kind: ProblemConfig, Severity: Error, Op: info.describe(),
					Msg: "the op splits fused experts but the config has no num_moe_experts"})
			} else {
				mca = make([]string, experts)
				for e := range experts {
					mca[e] = strconv.FormatInt(e, 10) + info.mca[0]
				}
			}
		}
		var sd *side
		if dir == ops.HFToMCA {
			sd = newSide(info, info.hf, mca)
		} else {
			sd = newSide(info, mca, info.hf)
		}
		sides = append(sides, sd)
		// A per-layer name: a second side for the layers meeting the
		// condition. MCA -> HF its names are keys like any other (ROLL's
		// add_mca_weight maps them back whatever the layer).
		for _, lc := range layerConds(o) {
			alt, err := m.opInfoWith(i, o, map[string]bool{ir.CondKey(lc): true})
			if err == nil {
				err = m.compose(alt, mc)
			}
			if err != nil {
				p.Problems = append(p.Problems, Problem{Kind: ProblemConfig, Severity: Error, Msg: err.Error()})
				return p
			}
			var as *side
			if dir == ops.HFToMCA {
				as = newSide(alt, alt.hf, alt.mca)
			} else {
				as = newSide(alt, alt.mca, alt.hf)
				sides = append(sides, as)
			}
			pl.variants[sd] = layerVariant{cond: lc, side: as}
		}
	}
	pl.sides = sides
	pl.alt = altGroups(sides)
	if dir == ops.MCAToHF {
		pl.readLayerOps()
	}
	if dir == ops.HFToMCA {
		pl.table = newOpTable(sides, func(s *side) []string { return s.info.hf }, false)
	} else {
		pl.table = newOpTable(sides, func(s *side) []string { return s.info.mca }, true)
	}

	var maxSize int64
	for _, in := range inputs {
		maxSize = max(maxSize, in.Size)
	}
	virt, release, err := virtualRegion(maxSize)
	if err != nil {
		p.Problems = append(p.Problems, Problem{Kind: ProblemConfig, Severity: Error,
			Msg: fmt.Sprintf("cannot reserve %d bytes of address space for planning: %v", maxSize, err)})
		return p
	}
	defer release()
	pl.virt = virt

	for i := range inputs {
		pl.add(i)
	}
	pl.leftovers()
	pl.checkOutputs()
	pl.checkLayers()
	pl.checkStructure()
	pl.checkMTP()
	if dir == ops.HFToMCA {
		p.layerOps = pl.layerOps()
	}
	return p
}

func (pl *planner) problem(kind ProblemKind, sev Severity, op string, idx []int, format string, args ...any) {
	pr := Problem{Kind: kind, Severity: sev, Op: op, Msg: fmt.Sprintf(format, args...)}
	for _, i := range idx {
		in := pl.p.Inputs[i]
		pr.Tensors = append(pr.Tensors, ProblemTensor{Name: in.Name, File: in.File})
	}
	pl.p.Problems = append(pl.p.Problems, pr)
}

func (pl *planner) add(i int) {
	in := pl.p.Inputs[i]
	if pl.seen[in.Name] {
		pl.problem(ProblemDuplicate, Error, "", []int{i}, "the tensor name occurs twice in the checkpoint")
		return
	}
	pl.seen[in.Name] = true
	if pl.dir == ops.MCAToHF && strings.HasSuffix(in.Name, "._extra_state") {
		pl.p.Ignored = append(pl.p.Ignored, i)
		return
	}
	wp, pure, err := pl.src.split(in.Name)
	if err != nil {
		pl.problem(ProblemBadName, Error, "", []int{i}, "%v", err)
		return
	}
	if wp.mtp && !pl.admitMTP(i, wp) {
		return
	}
	if pl.dir == ops.HFToMCA && pl.invalid[pure] {
		pl.p.Ignored = append(pl.p.Ignored, i)
		return
	}
	s, opKey, ok := pl.table.lookupKey(pure)
	if !ok {
		pl.problem(ProblemUnmatched, Error, "", []int{i}, "no op of template %s matches the name (pure name %q)", pl.m.Template.Name, pure)
		return
	}
	if pl.dir == ops.MCAToHF {
		s = pl.recordedSide(s, opKey, wp.Layer)
	}
	if v, ok := pl.variants[s]; ok && pl.dir == ops.HFToMCA && wp.Layer >= 0 {
		holds, err := pl.layerHolds(v.cond, wp.Layer)
		if err != nil {
			pl.problem(ProblemConfig, Error, s.info.describe(), []int{i}, "layer %d: %v", wp.Layer, err)
			return
		}
		if holds {
			s = v.side
		}
	}
	if s.info.kind == ops.KindDrop {
		// ROLL filters dropped names out before conversion (their op has
		// no MCA names, so they are on no rank): they never reach a
		// bucket, whatever the drop op's declared names.
		pl.p.Steps = append(pl.p.Steps, Step{OpIndex: s.info.index, Kind: s.info.kind, Bucket: wp.Prefix, Inputs: []int{i}, Dropped: true, side: s})
		pl.dropped[i] = true
		return
	}
	pl.consumed[i] = true
	key := pure
	if pl.dir == ops.MCAToHF && isSplitKind(s.info.kind) && wp.Expert >= 0 {
		// Qwen3VLMoeTemplate: all experts of a layer share a bucket, keyed
		// "<e><pure>", matching the split op's expanded MCA names.
		cut := strings.LastIndex(wp.Prefix, MCAExpertPrefix)
		key = strconv.Itoa(wp.Expert) + pure
		wp = weightPrefix{Prefix: wp.Prefix[:cut+len(MCAExpertPrefix)], Layer: wp.Layer, Expert: -1, Fused: true, splitKeyed: true, mtp: wp.mtp, mtpIndex: wp.mtpIndex}
	}
	b := pl.buckets[wp.Prefix]
	if b == nil {
		b = &bucket{wp: wp, idx: map[string]int{}}
		pl.buckets[wp.Prefix] = b
		pl.order = append(pl.order, wp.Prefix)
	}
	b.add(key, i)

	// Pop every buffered name the op claims.
	var cands []string
	for _, k := range b.keys {
		if s.requires(k) {
			cands = append(cands, k)
		}
	}
	if len(cands) < len(s.sources) {
		return // not complete yet
	}
	candIdx := make(map[string]int, len(cands))
	for _, k := range cands {
		candIdx[k] = b.idx[k]
		delete(b.idx, k)
	}
	b.keys = slices.DeleteFunc(b.keys, func(k string) bool { _, claimed := candIdx[k]; return claimed })

	// Gather the sources in declared order.
	used := map[string]bool{}
	var inputs []int
	var captures []string
	for j, src := range s.sources {
		if _, ok := candIdx[src]; ok {
			inputs = append(inputs, candIdx[src])
			used[src] = true
			continue
		}
		found := false
		if re := s.gather[j]; re != nil {
			for _, k := range cands {
				m := re.FindStringSubmatch(k)
				if m != nil && m[0] != "" {
					inputs = append(inputs, candIdx[k])
					captures = append(captures, m[1:]...)
					used[k] = true
					found = true
					break
				}
			}
		}
		if !found {
			idx := make([]int, len(cands))
			for c, k := range cands {
				idx[c] = candIdx[k]
			}
			pl.attempted[bucketOp{b.wp.Prefix, s.info.index}] = true
			pl.problem(ProblemGather, Error, s.info.describe(), idx,
				"%s: the op has %d tensors but not its source %q", bucketDesc(b.wp), len(cands), fullName(b.wp.Prefix, src))
			return
		}
	}
	var unused []int
	for _, k := range cands {
		if !used[k] {
			unused = append(unused, candIdx[k])
		}
	}
	if len(unused) > 0 {
		pl.problem(ProblemUnconsumed, Error, s.info.describe(), unused,
			"%s: the op claims these tensors (its source names match their start) but does not use them", bucketDesc(b.wp))
	}
	pl.emit(s, b.wp, inputs, captures)
}

func fullName(prefix, name string) string { return prefix + name }

func bucketDesc(wp weightPrefix) string {
	switch {
	case wp.Prefix == "":
		return "global weights"
	case wp.Expert >= 0:
		return fmt.Sprintf("layer %d expert %d (%s)", wp.Layer, wp.Expert, wp.Prefix)
	case wp.Fused:
		return fmt.Sprintf("layer %d experts (%s)", wp.Layer, wp.Prefix)
	}
	return fmt.Sprintf("layer %d (%s)", wp.Layer, wp.Prefix)
}

// fake returns a stand-in tensor for input i: its dtype and shape over
// never-touched address space.
func (pl *planner) fake(i int) (tensor.Tensor, error) {
	in := pl.p.Inputs[i]
	return tensor.New(in.DType, in.Shape, pl.virt[:in.Size:in.Size])
}

// emit records a step and computes its outputs' shapes by running the op
// on stand-in tensors.
func (pl *planner) emit(s *side, wp weightPrefix, inputs []int, captures []string) {
	st := Step{OpIndex: s.info.index, Kind: s.info.kind, Bucket: wp.Prefix, Inputs: inputs, Captures: captures, side: s}
	desc := s.info.describe()
	pl.attempted[bucketOp{wp.Prefix, s.info.index}] = true
	if s.info.kind == ops.KindDrop {
		st.Dropped = true
		pl.p.Steps = append(pl.p.Steps, st)
		return
	}
	vals := make([]ops.Value, len(inputs))
	for j, i := range inputs {
		t, err := pl.fake(i)
		if err != nil {
			pl.problem(ProblemShape, Error, desc, []int{i}, "%v", err)
			return
		}
		if pl.dir == ops.MCAToHF {
			v, err := cutStack(pl.stacks, pl.p.Inputs[i].Name, t)
			if err != nil {
				kind := ProblemShape
				if pl.stacks.Class(pl.p.Inputs[i].Name) == shard.Unclassified {
					kind = ProblemUnclassified
				}
				pl.problem(kind, Error, desc, []int{i}, "%v", err)
				return
			}
			vals[j] = v
		} else {
			vals[j] = ops.TensorValue(t)
		}
	}
	if pl.dir == ops.HFToMCA && s.info.kind == ops.KindStack && len(inputs) > 1 {
		first := pl.p.Inputs[inputs[0]]
		for _, i := range inputs[1:] {
			if in := pl.p.Inputs[i]; !in.Shape.Equal(first.Shape) {
				pl.problem(ProblemShape, Error, desc, inputs, "%s: stacked parts differ in shape: %v is %v but %v is %v (gate and up must agree)",
					bucketDesc(wp), first.Name, first.Shape, in.Name, in.Shape)
				return
			}
		}
	}
	var outs []ops.Value
	var err error
	if s.info.comp != nil {
		outs, err = s.info.comp.Plan(pl.dir, pl.cfg, vals, planApply)
	} else {
		outs, err = planApply(s.info.op, pl.dir, pl.cfg, vals)
	}
	if err != nil {
		pl.problem(ProblemShape, Error, desc, inputs, "%s: %v", bucketDesc(wp), err)
		return
	}
	targets, err := rollname.FormatNames(s.targets, captures)
	if err == nil && len(outs) != len(targets) {
		err = fmt.Errorf("the op produced %d tensors for %d target names", len(outs), len(targets))
	}
	if err != nil {
		pl.problem(ProblemShape, Error, desc, inputs, "%s: %v", bucketDesc(wp), err)
		return
	}
	prefix := convertPrefix(wp.Prefix, pl.src, pl.dst)
	for k, v := range outs {
		name := prefix + targets[k]
		if wp.mtp {
			if name, err = pl.mtp.outName(pl.dir, wp, name, stepIsMTPBlock(s)); err != nil {
				pl.problem(ProblemBadName, Error, desc, inputs, "%v", err)
				return
			}
		}
		if pl.dir == ops.HFToMCA {
			if dt, shape, ok := valueMeta(v); ok {
				pl.mcaGlobals = append(pl.mcaGlobals, mcaGlobal{name: name, dtype: dt, shape: shape, inputs: inputs, op: desc})
			}
			t, err := joinStack(pl.stacks, name, v)
			if err != nil {
				kind := ProblemShape
				if pl.stacks.Class(name) == shard.Unclassified {
					kind = ProblemUnclassified
				}
				pl.problem(kind, Error, desc, inputs, "%v", err)
				return
			}
			st.Outputs = append(st.Outputs, Output{Name: name, DType: t.DType, Shape: t.Shape,
				Size: t.Len(), Class: pl.stacks.Class(name).String()})
			continue
		}
		t, err := v.Flatten()
		if err != nil {
			pl.problem(ProblemShape, Error, desc, inputs, "%s: %v", name, err)
			return
		}
		st.Outputs = append(st.Outputs, Output{Name: name, DType: t.DType, Shape: t.Shape, Size: t.Len()})
	}
	pl.p.Steps = append(pl.p.Steps, st)
}

// planApply runs op for shapes only. Ops that only slice run as they are
// on the stand-ins; the two that compute new bytes are replaced by
// equivalent slicing: the zero-centred norm keeps its input's shape, and a
// transposing expert split runs untransposed on the transposed shape.
func planApply(op ops.Op, dir ops.Direction, cfg ops.Config, in []ops.Value) ([]ops.Value, error) {
	switch {
	case op.Kind == ops.KindZeroCenteredRMSNorm:
		if len(in) != 1 || in[0].IsStacked() {
			return nil, fmt.Errorf("ops: %s %v: want one plain tensor", op.Kind, dir)
		}
		if !in[0].Tensor.DType.IsFloat() || in[0].Tensor.DType.Size() < 2 {
			return nil, fmt.Errorf("ops: %s %v: weight is %v; the zero-centred norm needs a floating-point tensor (BF16, F16, F32 or F64)", op.Kind, dir, in[0].Tensor.DType)
		}
		return in, nil
	case isSplitKind(op.Kind) && op.Transpose:
		plain := op
		plain.Transpose = false
		if dir == ops.HFToMCA {
			if len(in) == 1 && !in[0].IsStacked() && len(in[0].Tensor.Shape) == 3 {
				t := in[0].Tensor
				sw, err := t.Reshape(tensor.Shape{t.Shape[0], t.Shape[2], t.Shape[1]})
				if err != nil {
					return nil, err
				}
				in = []ops.Value{ops.TensorValue(sw)}
			}
			return plain.Apply(dir, cfg, in)
		}
		out, err := plain.Apply(dir, cfg, in)
		if err != nil || len(out) != 1 {
			return out, err
		}
		t := out[0].Tensor
		sw, err := t.Reshape(tensor.Shape{t.Shape[0], t.Shape[2], t.Shape[1]})
		if err != nil {
			return nil, err
		}
		return []ops.Value{ops.TensorValue(sw)}, nil
	}
	return op.Apply(dir, cfg, in)
}

// leftovers reports what is still buffered: incomplete op groups.
func (pl *planner) leftovers() {
	for _, key := range pl.order {
		b := pl.buckets[key]
		if len(b.keys) == 0 {
			continue
		}
		type group struct {
			s    *side
			keys []string
		}
		var groups []*group
		byOp := map[*side]*group{}
		for _, k := range b.keys {
			pure := k
			if b.wp.splitKeyed {
				pure = strings.TrimLeft(k, "0123456789")
			}
			s, _ := pl.table.lookup(pure)
			g := byOp[s]
			if g == nil {
				g = &group{s: s}
				byOp[s] = g
				groups = append(groups, g)
			}
			g.keys = append(g.keys, k)
		}
		for _, g := range groups {
			idx := make([]int, len(g.keys))
			for i, k := range g.keys {
				idx[i] = b.idx[k]
			}
			if g.s == nil {
				pl.problem(ProblemIncomplete, Error, "", idx, "%s: tensors left unconverted", bucketDesc(b.wp))
				continue
			}
			pl.attempted[bucketOp{b.wp.Prefix, g.s.info.index}] = true
			var missing []string
			for _, src := range g.s.sources {
				if _, ok := b.idx[src]; !ok {
					missing = append(missing, strconv.Quote(fullName(b.wp.Prefix, src)))
				}
			}
			pl.problem(ProblemIncomplete, Error, g.s.info.describe(), idx,
				"%s: incomplete op group, %d of %d source tensors present; missing %s",
				bucketDesc(b.wp), len(g.keys), len(g.s.sources), joinLimited(missing, 8))
		}
	}
}

func joinLimited(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(" and %d more", len(s)-n)
}

// checkOutputs reports duplicate outputs and, for HF → MCA, a missing
// output layer when embeddings are not tied.
func (pl *planner) checkOutputs() {
	first := map[string]int{}
	for si, st := range pl.p.Steps {
		for _, o := range st.Outputs {
			if prev, ok := first[o.Name]; ok {
				idx := append(slices.Clone(pl.p.Steps[prev].Inputs), st.Inputs...)
				pl.problem(ProblemDuplicate, Error, st.side.info.describe(), idx, "two op groups produce %q", o.Name)
				continue
			}
			first[o.Name] = si
		}
	}
	if pl.dir != ops.HFToMCA || len(pl.p.Steps) == 0 {
		return
	}
	declared := false // then checkGlobals reports it missing
	for _, s := range pl.sides {
		declared = declared || slices.Contains(s.info.mca, "output_layer.weight")
	}
	if tied, ok := pl.p.Config.Bool("tie_embeddings_and_output_weights"); ok && !tied && !declared {
		if _, ok := first["output_layer.weight"]; !ok {
			pl.problem(ProblemConfig, Warning, "", nil, "the embeddings are not tied (tie_word_embeddings is false) but no tensor becomes output_layer.weight")
		}
	}
}

// checkLayers compares the layer and expert indices seen with num_layers
// and num_moe_experts.
func (pl *planner) checkLayers() {
	layers := map[int][]int{}          // layer → inputs
	experts := map[int]map[int][]int{} // layer → expert → inputs
	for i, in := range pl.p.Inputs {
		wp, _, err := pl.src.split(in.Name)
		if err != nil || wp.Layer < 0 {
			continue
		}
		if !wp.mtp { // MTP layers: checkMTP
			layers[wp.Layer] = append(layers[wp.Layer], i)
		}
		if wp.Expert >= 0 {
			if experts[wp.Layer] == nil {
				experts[wp.Layer] = map[int][]int{}
			}
			experts[wp.Layer][wp.Expert] = append(experts[wp.Layer][wp.Expert], i)
		}
	}
	prefix := pl.src.layer
	if n, ok := pl.p.Config.Int("num_layers"); ok {
		var missing []string
		for l := range int(n) {
			if _, ok := layers[l]; !ok {
				missing = append(missing, strconv.Itoa(l))
			}
		}
		if len(missing) > 0 && !pl.m.lora { // an adapter may target modules some layers lack
			pl.problem(ProblemLayers, Error, "", nil, "num_layers is %d but the checkpoint has no tensors for layer %s (names %s<layer>.*)",
				n, joinLimited(missing, 16), prefix)
		}
		var beyond []int
		for l := range layers {
			if l >= int(n) {
				beyond = append(beyond, l)
			}
		}
		sort.Ints(beyond)
		ignored := map[int]bool{}
		for _, i := range pl.p.Ignored {
			ignored[i] = true
		}
		for _, l := range beyond {
			// A layer the template drops or ignores entirely (a
			// multi-token-prediction layer) is only noted; any tensor of
			// it that would be converted is an error.
			var kept []int
			for _, i := range layers[l] {
				if !ignored[i] && !pl.dropped[i] {
					kept = append(kept, i)
				}
			}
			if len(kept) == 0 {
				pl.problem(ProblemLayers, Warning, "", layers[l][:min(len(layers[l]), 4)],
					"layer %d is beyond num_layers %d; the template drops or ignores all its tensors", l, n)
				continue
			}
			pl.problem(ProblemLayers, Error, "", kept[:min(len(kept), 4)],
				"layer %d is beyond num_layers %d (num_hidden_layers in config.json): an extra layer, or a config for another model; %d of its tensors would be converted", l, n, len(kept))
		}
	}
	if len(experts) == 0 {
		return
	}
	e, ok := pl.p.Config.Int("num_moe_experts")
	if !ok {
		var idx []int
		for _, m := range experts {
			for _, ii := range m {
				idx = append(idx, ii[0])
				break
			}
			break
		}
		pl.problem(ProblemExperts, Error, "", idx, "the checkpoint has per-expert tensors but the config has no num_moe_experts")
		return
	}
	ls := make([]int, 0, len(experts))
	for l := range experts {
		ls = append(ls, l)
	}
	sort.Ints(ls)
	for _, l := range ls {
		var missing []string
		for x := range int(e) {
			if _, ok := experts[l][x]; !ok {
				missing = append(missing, strconv.Itoa(x))
			}
		}
		if len(missing) > 0 {
			pl.problem(ProblemExperts, Error, "", nil, "layer %d has %d of %d experts (num_moe_experts); missing expert %s",
				l, len(experts[l]), e, joinLimited(missing, 16))
		}
		var beyond []int
		for x := range experts[l] {
			if x >= int(e) {
				beyond = append(beyond, x)
			}
		}
		sort.Ints(beyond)
		for _, x := range beyond {
			pl.problem(ProblemExperts, Error, "", experts[l][x], "layer %d expert %d is beyond num_moe_experts %d", l, x, e)
		}
	}
}
