package exec

import (
	"fmt"
	"maps"
	"regexp"
	"strconv"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/runtime/fp8"
	"github.com/rolltpl/rolltpl/runtime/ops"
)

// Model is a compiled template ready to run: the template, its merged
// parallel classification and the build flags its names depend on.
type Model struct {
	Template *ir.Template
	// Parallel is the template's effective parallel classification.
	Parallel ir.Effective
	// Flags are the build flags names are resolved with (e.g.
	// "megatron_llama"); nil means all false.
	Flags map[string]bool
	// NoMTP leaves the template's multi-token-prediction layers out of
	// conversions (convert --no-mtp): their weights are skipped and
	// counted (Plan.SkippedMTP), the MCA config says no MTP layers
	// (mtp_num_layers null) and the HF config 0 (mtp.go).
	NoMTP bool

	digest string // TemplateDigest, set by NewModel
	lora   bool   // a LoRA adapter model (lora.go): no per-layer coverage checks
}

// NewModel returns the model for the template named modelType in prog. It
// checks that every op kind has a runtime implementation and that the
// declared names fit the kind's arity.
func NewModel(prog *ir.Program, modelType string, flags map[string]bool) (*Model, error) {
	if prog == nil {
		return nil, fmt.Errorf("no templates")
	}
	t := prog.Template(modelType)
	if t == nil {
		var names []string
		for _, t := range prog.Templates {
			names = append(names, t.Name)
		}
		return nil, fmt.Errorf("no template for model type %q (templates: %v)", modelType, names)
	}
	ps := t.Parallel
	if flags["megatron_llama"] && prog.ParallelSet("megatron_llama") != nil && ps != nil {
		// ROLL's DistConverter merges megatron_llama_config when
		// is_megatron_llama() holds.
		merged := *ps
		merged.Parts = append(append([]ir.ParallelPart(nil), ps.Parts...), ir.ParallelPart{Use: "megatron_llama"})
		ps = &merged
	}
	m := &Model{Template: t, Parallel: prog.Effective(ps), Flags: flags, digest: templateDigest(t, prog.Effective(t.Parallel))}
	for i, o := range t.Ops {
		if _, err := m.opInfo(i, o); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// scaleNaming returns the template's FP8 scale naming rules (its quant
// section, or the stdlib default it got; lang/spec.md §7a), which pair
// each F8_E4M3 weight of an HF checkpoint with its scale grid.
func (m *Model) scaleNaming() fp8.Naming { return scaleNaming(m.Template.Scales) }

// scaleNaming converts a template's (or a program's default) scale
// rules to the runtime's.
func scaleNaming(rules []ir.ScaleRule) fp8.Naming {
	out := make(fp8.Naming, len(rules))
	for i, r := range rules {
		out[i] = fp8.Rule{Weight: r.Weight, Scale: r.Scale}
	}
	return out
}

// opInfo is one op of the template with its names resolved and its
// runtime op built.
type opInfo struct {
	ir    *ir.Op
	index int
	kind  string
	hf    []string // declared HF names
	mca   []string // declared MCA names (split kinds: the single per-expert name)
	op    ops.Op
	// comp is the op with its tensor steps (ir.Op.Inputs), set per plan
	// once their sizes are evaluated; nil for a plain catalog op.
	comp *ops.Composite
}

func (m *Model) opInfo(i int, o *ir.Op) (*opInfo, error) {
	return m.opInfoWith(i, o, nil)
}

// layerConds returns the per-layer conditions of o's names.
func layerConds(o *ir.Op) []*ir.Expr {
	var out []*ir.Expr
	for _, n := range append(append([]ir.Name{}, o.HF...), o.MCA...) {
		out = append(out, n.LayerConds()...)
	}
	return out
}

// opInfoWith is opInfo with extra flags (a per-layer condition taken as
// met) on top of the model's build flags.
func (m *Model) opInfoWith(i int, o *ir.Op, extra map[string]bool) (*opInfo, error) {
	flags := m.Flags
	if len(extra) > 0 {
		flags = maps.Clone(m.Flags)
		if flags == nil {
			flags = map[string]bool{}
		}
		maps.Copy(flags, extra)
	}
	hf, mca := o.Resolved(flags)
	oi := &opInfo{ir: o, index: i, kind: o.Kind, hf: hf, mca: mca}
	if _, ok := ops.Lookup(o.Kind); !ok {
		return nil, fmt.Errorf("%s: op kind %q has no runtime implementation", o.Span.Start, o.Kind)
	}
	nhf := len(hf)
	if len(o.Inputs) > 0 {
		nhf = -1 // the parts of its tensor steps, checked per plan
	}
	op, err := catalogOp(o, nhf, len(mca))
	if err != nil {
		return nil, err
	}
	oi.op = op
	return oi, nil
}

// catalogOp builds the runtime catalog op of o, taking nhf HF and nmca
// MCA tensors, and checks its arity. For a composed op (o.Inputs) nhf is
// the number of parts its tensor steps yield, known once their sizes are
// evaluated; NewModel passes -1 and the arity is checked per plan
// (Model.compose).
func catalogOp(o *ir.Op, nhf, nmca int) (ops.Op, error) {
	op := ops.Op{Kind: o.Kind, NumHF: nhf, NumMCA: nmca}
	if v, ok := o.Param("dim"); ok && v.Kind == ir.Int {
		d, err := strconv.Atoi(v.Text)
		if err != nil {
			return ops.Op{}, fmt.Errorf("%s: %s: bad dim %q", o.Span.Start, o.Kind, v.Text)
		}
		op.Dim = d
	}
	if v, ok := o.Param("transpose"); ok && v.Kind == ir.Bool {
		op.Transpose = v.Bool
	}
	if v, ok := o.Param("hidden_size"); ok && v.Kind == ir.Int {
		h, err := strconv.ParseInt(v.Text, 10, 64)
		if err != nil {
			return ops.Op{}, fmt.Errorf("%s: %s: bad hidden_size %q", o.Span.Start, o.Kind, v.Text)
		}
		op.HiddenSize = h
	}
	if isSplitKind(o.Kind) {
		op.NumMCA = 0
		if nmca != 1 {
			return ops.Op{}, fmt.Errorf("%s: %s declares %d MCA names, want 1 (it is expanded per expert)", o.Span.Start, o.Kind, nmca)
		}
	}
	if nhf < 0 {
		return op, nil
	}
	if _, _, err := op.Arity(); err != nil {
		return ops.Op{}, fmt.Errorf("%s: %v", o.Span.Start, err)
	}
	return op, nil
}

func isSplitKind(kind string) bool {
	return kind == ops.KindSplitExperts || kind == ops.KindSplitStackExperts
}

// describe names the op for messages: kind and source position.
func (oi *opInfo) describe() string {
	return fmt.Sprintf("%s op #%d (%s)", oi.kind, oi.index+1, oi.ir.Span.Start)
}

// side is one direction's view of an op: the names it gathers (sources)
// and produces (targets), and the compiled patterns.
type side struct {
	info    *opInfo
	sources []string
	targets []string
	require []*regexp.Regexp // start-anchored, per source (nil: literal only)
	gather  []*regexp.Regexp // unanchored, per source with "{}" (else nil)
}

// requires reports whether the op claims a buffered name: the name is one
// of its sources, or matches one at the start (ROLL's is_required_name;
// so ".gate_proj.weight" also claims ".gate_proj.weight_scale_inv"; an
// FP8 checkpoint's scales never get here: the pre-pass consumes them).
func (s *side) requires(name string) bool {
	for i, src := range s.sources {
		if src == name {
			return true
		}
		if re := s.require[i]; re != nil && re.MatchString(name) {
			return true
		}
	}
	return false
}

func newSide(info *opInfo, sources, targets []string) *side {
	s := &side{info: info, sources: sources, targets: targets}
	s.require = make([]*regexp.Regexp, len(sources))
	s.gather = make([]*regexp.Regexp, len(sources))
	for i, n := range sources {
		// A name that does not compile is a literal only (nil).
		s.require[i], _ = rollname.OpNameRegexp(n, true)
		if containsWildcard(n) {
			s.gather[i], _ = rollname.OpNameRegexp(n, false)
		}
	}
	return s
}

func containsWildcard(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '{' && s[i+1] == '}' {
			return true
		}
	}
	return false
}

// opTable is ROLL's hf_name_to_converter / mca_name_to_converter: keys in
// first-insertion order, each mapped to the last op declaring it — except
// that, on the MCA side, a fused-expert split op keeps an MCA name a later
// per-expert op also declares (qwen3_5_moe registers both, as ROLL does):
// converting back then writes each layer's experts fused, the HF layout of
// Qwen3.5/3.6-MoE, where ROLL's lookup takes the per-expert op and writes
// them one by one (a documented departure, stdlib/templates/qwen3_5_moe),
// unless the MCA config records which op converted the layer
// (LayerOpsKey, layerops.go).
type opTable struct {
	keys  *rollname.OpTable
	op    map[string]int // key → index into sides
	sides []*side
}

func newOpTable(sides []*side, keysOf func(*side) []string, mcaSide bool) *opTable {
	t := &opTable{op: map[string]int{}, sides: sides}
	var keys []string
	for i, s := range sides {
		for _, k := range keysOf(s) {
			keys = append(keys, k)
			if j, ok := t.op[k]; ok && mcaSide && isSplitKind(sides[j].info.kind) && !isSplitKind(s.info.kind) {
				continue
			}
			t.op[k] = i
		}
	}
	t.keys = rollname.NewOpTable(keys)
	return t
}

// lookup finds the op for a pure name: an exact key first, then the first
// key (in insertion order) whose pattern matches at the start of name.
func (t *opTable) lookup(name string) (*side, bool) {
	s, _, ok := t.lookupKey(name)
	return s, ok
}

// lookupKey is lookup that also returns the key that matched.
func (t *opTable) lookupKey(name string) (*side, string, bool) {
	if k, ok := t.keys.Lookup(name); ok {
		return t.sides[t.op[k]], k, true
	}
	return nil, "", false
}
