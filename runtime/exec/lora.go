package exec

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
)

// LoRA adapters (lora-fp8.md Part 1). ROLL saves a LoRA training run as
// one folder per adapter, each an MCA checkpoint of the adapter tensors
// alone (SAVE/<adapter>/{adapter_config.json, mca_config.json,
// latest_checkpointed_iteration.txt, iter_*/mp_rank_*/model_optim_rng.pt})
// with names such as decoder.layers.0.self_attention.linear_qkv.lora_A.weight.
//
// The conversion needs no template change: [LoRAModel] derives, from the
// base model, a model whose ops convert the adapter tensors (the rule of
// each op kind, ops.LoRA: B through the base op with hidden size := rank,
// A copied to every HF name) and whose parallel classes are derived from
// the base weights' classes ([DeriveLoRAParallel], §1.5.3). That model
// then runs through the ordinary MCA -> HF path (rank files merged, with
// TP copies checked bitwise), and the result is written as a PEFT adapter
// (lora_peft.go).

// Adapter file names.
const (
	AdapterConfigName = "adapter_config.json"
	AdapterModelName  = "adapter_model.safetensors"
)

// ProblemLoRAUnderivable is the problem kind of a LoRA target whose base
// op has no LoRA rule (or whose base weight's parallel class has none).
const ProblemLoRAUnderivable ProblemKind = "lora-underivable"

// LoRAAdapter is one ROLL adapter folder.
type LoRAAdapter struct {
	// Name is the adapter name (the folder's name).
	Name string
	// Dir is the adapter folder, an MCA checkpoint of the adapter tensors.
	Dir string
	// ConfigPath and Config are its adapter_config.json.
	ConfigPath string
	Config     *pyjson.Object
	// R and Alpha are the config's r and lora_alpha; RSLoRA its
	// use_rslora.
	R      int64
	Alpha  float64
	RSLoRA bool
	// Targets are the MCA module names of target_modules.
	Targets []string
	// RankPattern and AlphaPattern are the config's patterns, keyed by
	// bare MCA module names.
	RankPattern  map[string]int64
	AlphaPattern map[string]float64

	// Set by LoRAModel: the HF layer prefix and the MCA module of each
	// HF module (last name segment).
	hfLayerPrefix string
	hfToMCA       map[string]string
}

// mcaModuleOf returns the MCA module an HF module name (full or its last
// segment) belongs to.
func (ad *LoRAAdapter) mcaModuleOf(hfModule string) string {
	last := hfModule[strings.LastIndex(hfModule, ".")+1:]
	if m, ok := ad.hfToMCA[last]; ok {
		return m
	}
	return last
}

// IsLoRAAdapter reports whether dir is one ROLL adapter folder: an
// adapter_config.json and an MCA checkpoint (mca_config.json).
func IsLoRAAdapter(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, AdapterConfigName))
	return err == nil && IsMCA(dir)
}

// IsLoRA reports whether dir is a ROLL LoRA checkpoint: an adapter folder,
// or a folder with at least one adapter folder in it.
func IsLoRA(dir string) bool {
	if IsLoRAAdapter(dir) {
		return true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.IsDir() && IsLoRAAdapter(filepath.Join(dir, e.Name())) {
			return true
		}
	}
	return false
}

// FindLoRAAdapters returns the adapters of the LoRA checkpoint in dir (one
// adapter folder, or a folder of them, sorted with "default" first), or
// only the one named name when name is not empty.
func FindLoRAAdapters(dir, name string) ([]*LoRAAdapter, error) {
	var dirs []string
	if IsLoRAAdapter(dir) {
		dirs = []string{dir}
	} else {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() && IsLoRAAdapter(filepath.Join(dir, e.Name())) {
				dirs = append(dirs, filepath.Join(dir, e.Name()))
			}
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("%s: no LoRA adapter folder (%s with an MCA checkpoint) in it", dir, AdapterConfigName)
	}
	var out []*LoRAAdapter
	for _, d := range dirs {
		base := filepath.Base(filepath.Clean(d))
		if len(dirs) == 1 && d == dir {
			base = "default"
		}
		if name != "" && base != name {
			continue
		}
		ad, err := ReadLoRAAdapter(d, base)
		if err != nil {
			return nil, err
		}
		out = append(out, ad)
	}
	if len(out) == 0 {
		var names []string
		for _, d := range dirs {
			names = append(names, filepath.Base(d))
		}
		return nil, fmt.Errorf("%s: no adapter %q (adapters: %s)", dir, name, strings.Join(names, ", "))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].Name == "default") != (out[j].Name == "default") {
			return out[i].Name == "default"
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// ReadLoRAAdapter reads the adapter folder dir, named name: its
// adapter_config.json, refusing what v1 does not support (DoRA, LoRA
// biases, layer selections, patterns keyed by anything but a bare MCA
// module name, a target_modules regex).
func ReadLoRAAdapter(dir, name string) (*LoRAAdapter, error) {
	ad := &LoRAAdapter{Name: name, Dir: dir, ConfigPath: filepath.Join(dir, AdapterConfigName)}
	text, err := ReadConfigFile(ad.ConfigPath)
	if err != nil {
		return nil, err
	}
	if ad.Config, err = pyjson.ParseObject(text); err != nil {
		return nil, fmt.Errorf("%s: %v", ad.ConfigPath, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s", ad.ConfigPath, fmt.Sprintf(format, args...))
	}
	if v, ok := ad.Config.Get("peft_type"); ok && v != "LORA" {
		return nil, bad("peft_type is %v, not LORA", v)
	}
	r, ok := jsonInt(ad.Config, "r")
	if !ok || r <= 0 {
		return nil, bad("r must be a positive integer")
	}
	ad.R = r
	ad.Alpha = float64(r)
	if v, ok := ad.Config.Get("lora_alpha"); ok && v != nil {
		f, ok := jsonFloat(v)
		if !ok {
			return nil, bad("lora_alpha is not a number")
		}
		ad.Alpha = f
	}
	if v, ok := ad.Config.Get("use_rslora"); ok {
		ad.RSLoRA = v == true
	}
	if v, ok := ad.Config.Get("use_dora"); ok && v == true {
		return nil, bad("lora-unsupported: use_dora (DoRA adapters are not supported, as in ROLL)")
	}
	if v, ok := ad.Config.Get("bias"); ok && v != nil && v != "none" {
		return nil, bad("lora-unsupported: bias %v (LoRA biases are not supported)", v)
	}
	if v, ok := ad.Config.Get("layers_to_transform"); ok && v != nil {
		return nil, bad("lora-unsupported: layers_to_transform")
	}
	switch t, _ := ad.Config.Get("target_modules"); t := t.(type) {
	case []any:
		for _, x := range t {
			s, ok := x.(string)
			if !ok {
				return nil, bad("target_modules holds a non-string %v", x)
			}
			ad.Targets = append(ad.Targets, s)
		}
	default:
		return nil, bad("lora-unsupported: target_modules must be a list of MCA module names, got %v", t)
	}
	ad.RankPattern = map[string]int64{}
	ad.AlphaPattern = map[string]float64{}
	for _, key := range []string{"rank_pattern", "alpha_pattern"} {
		v, _ := ad.Config.Get(key)
		o, ok := v.(*pyjson.Object)
		if v == nil {
			continue
		}
		if !ok {
			return nil, bad("%s is not an object", key)
		}
		for _, k := range o.Keys() {
			if !bareModule(k) {
				return nil, bad("lora-unsupported: %s key %q is not a bare MCA module name", key, k)
			}
			x, _ := o.Get(k)
			f, ok := jsonFloat(x)
			if !ok {
				return nil, bad("%s[%q] is not a number", key, k)
			}
			if key == "rank_pattern" {
				if f != float64(int64(f)) || f <= 0 {
					return nil, bad("rank_pattern[%q] must be a positive integer", k)
				}
				ad.RankPattern[k] = int64(f)
			} else {
				ad.AlphaPattern[k] = f
			}
		}
	}
	return ad, nil
}

// bareModule reports whether k is a plain module name such as linear_qkv.
func bareModule(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// jsonInt returns the integer o[key].
func jsonInt(o *pyjson.Object, key string) (int64, bool) {
	v, ok := o.Get(key)
	if !ok {
		return 0, false
	}
	n, ok := v.(pyjson.Number)
	if !ok {
		return 0, false
	}
	return n.Int()
}

// jsonFloat returns the JSON number v as a float64.
func jsonFloat(v any) (float64, bool) {
	n, ok := v.(pyjson.Number)
	if !ok {
		return 0, false
	}
	return n.Float64()
}

// ModuleRank returns the training rank r_m and alpha α_m of the MCA module
// named module (rank_pattern / alpha_pattern applied).
func (ad *LoRAAdapter) ModuleRank(module string) (int64, float64) {
	r, a := ad.R, ad.Alpha
	if v, ok := ad.RankPattern[module]; ok {
		r = v
	}
	if v, ok := ad.AlphaPattern[module]; ok {
		a = v
	}
	return r, a
}

// Scale returns the training scale s_m = α_m / r_m (α_m/√r_m with
// rsLoRA) of the MCA module (§1.5.4).
func (ad *LoRAAdapter) Scale(module string) float64 {
	r, a := ad.ModuleRank(module)
	if ad.RSLoRA {
		return a / math.Sqrt(float64(r))
	}
	return a / float64(r)
}

// targets reports whether module is one of the adapter's targets.
func (ad *LoRAAdapter) targets(module string) bool {
	return slices.Contains(ad.Targets, module)
}

// moduleOf returns the module of a weight name: the segment before its
// last ".weight" (".self_attention.linear_qkv.weight" -> "linear_qkv").
func moduleOf(name string) string {
	name = strings.TrimSuffix(name, ".weight")
	if i := strings.LastIndex(name, "."); i >= 0 {
		return name[i+1:]
	}
	return name
}

// loraName returns name with its last ".weight" replaced by
// ".lora_<ab>.weight" (ROLL replaces every ".weight"; §1.5.2), and whether
// name ends in ".weight".
func loraName(name, ab string) (string, bool) {
	if !strings.HasSuffix(name, ".weight") {
		return "", false
	}
	return strings.TrimSuffix(name, ".weight") + ".lora_" + ab + ".weight", true
}

// loraIRName rewrites a template name (with its conditions) for LoRA
// tensor ab. Computed names are resolved with the build flags first.
func loraIRName(n ir.Name, ab string, flags map[string]bool) (ir.Name, bool) {
	switch {
	case n.Computed != nil:
		s, ok := loraName(n.Resolve(flags), ab)
		return ir.Name{Value: s, Span: n.Span}, ok
	case n.Cond == nil:
		s, ok := loraName(n.Value, ab)
		return ir.Name{Value: s, Span: n.Span}, ok
	}
	t, ok1 := loraIRName(*n.Then, ab, flags)
	e, ok2 := loraIRName(*n.Else, ab, flags)
	return ir.Name{Cond: n.Cond, Then: &t, Else: &e, Span: n.Span}, ok1 && ok2
}

// LoRAOp is one base op's LoRA derivation.
type LoRAOp struct {
	// Base is the base op; Module its MCA module name.
	Base   *ir.Op
	Module string
	// A and B are the derived ops; nil when Err is set.
	A, B *ir.Op
	// Err says why the op has no LoRA rule.
	Err error
}

// DeriveLoRAOps derives the LoRA ops of every op of m whose single MCA
// name is a weight (ends in ".weight"), at rank rank for B ops that need
// it (qkv-like ops take the rank as their hidden size). Ops without a rule
// come back with Err set.
func DeriveLoRAOps(m *Model, rank func(module string) int64) []LoRAOp {
	var out []LoRAOp
	for i, o := range m.Template.Ops {
		if len(o.MCA) != 1 {
			continue
		}
		mcaName := o.MCA[0].Resolve(m.Flags)
		if !strings.HasSuffix(mcaName, ".weight") {
			continue
		}
		lo := LoRAOp{Base: o, Module: moduleOf(mcaName)}
		fail := func(err error) {
			lo.Err = fmt.Errorf("%s op #%d (%s): %v", o.Kind, i+1, o.Span.Start, err)
			out = append(out, lo)
		}
		if len(o.Inputs) > 0 {
			fail(fmt.Errorf("an op with tensor steps has no LoRA rule"))
			continue
		}
		oi, err := m.opInfo(i, o)
		if err != nil {
			fail(err)
			continue
		}
		pair, err := ops.LoRA(oi.op, len(oi.hf), rank(lo.Module))
		if err != nil {
			fail(err)
			continue
		}
		a, b := &ir.Op{Kind: pair.A.Kind, Span: o.Span, Params: map[string]ir.Value{}}, &ir.Op{Kind: pair.B.Kind, Span: o.Span, Params: map[string]ir.Value{}}
		for k, v := range o.Params {
			b.Params[k] = v
		}
		if pair.B.HiddenSize > 0 {
			b.Params["hidden_size"] = ir.Value{Kind: ir.Int, Text: strconv.FormatInt(pair.B.HiddenSize, 10)}
		}
		ok := true
		for _, x := range []struct {
			op *ir.Op
			ab string
		}{{a, "A"}, {b, "B"}} {
			for _, n := range o.HF {
				ln, k := loraIRName(n, x.ab, m.Flags)
				ok = ok && k
				x.op.HF = append(x.op.HF, ln)
			}
			ln, k := loraIRName(o.MCA[0], x.ab, m.Flags)
			ok = ok && k
			x.op.MCA = append(x.op.MCA, ln)
		}
		if !ok {
			fail(fmt.Errorf("an HF name does not end in .weight"))
			continue
		}
		lo.A, lo.B = a, b
		out = append(out, lo)
	}
	return out
}

// DeriveLoRAParallel derives the parallel classes of LoRA tensors from the
// base classification (§1.5.3): column -> A duplicated, B column; row -> A
// row, B duplicated; swiglu and gdn -> A duplicated, B the same class
// (swiglu B also column, as ROLL lists it);
// duplicated -> both duplicated; grouped_column X -> G -> A
// grouped_duplicated, B grouped_column; grouped_row -> A grouped_row, B
// grouped_duplicated; grouped_duplicated -> both. Names of the embedding
// and output layer (pre_process, post_process), names that are not
// weights and LoRA names already in the base get no LoRA class.
func DeriveLoRAParallel(base ir.Effective) ir.Effective {
	out := ir.Effective{Lists: map[string][]string{}, Maps: map[string][]ir.MapEntry{}}
	edge := map[string]bool{}
	for _, k := range []string{"pre_process", "post_process"} {
		for _, n := range base.Lists[k] {
			edge[n] = true
		}
	}
	addList := func(class, name string) {
		if !slices.Contains(out.Lists[class], name) {
			out.Lists[class] = append(out.Lists[class], name)
		}
	}
	rules := []struct{ base, a, b string }{
		{"duplicated", "duplicated", "duplicated"},
		{"column", "duplicated", "column"},
		{"row", "row", "duplicated"},
		{"swiglu", "duplicated", "swiglu"},
		{"swiglu", "duplicated", "column"}, // a swiglu weight is column-split (ROLL lists both)
		{"gdn", "duplicated", "gdn"},
	}
	for _, r := range rules {
		for _, n := range base.Lists[r.base] {
			if edge[n] || strings.Contains(n, ".lora_") {
				continue
			}
			a, ok := loraName(n, "A")
			if !ok {
				continue
			}
			b, _ := loraName(n, "B")
			addList(r.a, a)
			addList(r.b, b)
		}
	}
	addMap := func(class string, me ir.MapEntry) {
		for i, x := range out.Maps[class] {
			if x.From == me.From {
				out.Maps[class][i] = me
				return
			}
		}
		out.Maps[class] = append(out.Maps[class], me)
	}
	mrules := []struct{ base, a, b string }{
		{"grouped_duplicated", "grouped_duplicated", "grouped_duplicated"},
		{"grouped_column", "grouped_duplicated", "grouped_column"},
		{"grouped_row", "grouped_row", "grouped_duplicated"},
	}
	for _, r := range mrules {
		for _, me := range base.Maps[r.base] {
			if strings.Contains(me.From, ".lora_") {
				continue
			}
			fa, ok1 := loraName(me.From, "A")
			ta, ok2 := loraName(me.To, "A")
			if !ok1 || !ok2 {
				continue
			}
			fb, _ := loraName(me.From, "B")
			tb, _ := loraName(me.To, "B")
			addMap(r.a, ir.MapEntry{From: fa, To: ta, Span: me.Span})
			addMap(r.b, ir.MapEntry{From: fb, To: tb, Span: me.Span})
		}
	}
	return out
}

// LoRAModel returns the model converting the adapter ad's tensors: the
// LoRA ops of the base ops whose module ad targets, and the derived
// parallel classes. A target module whose ops have no LoRA rule, or whose
// weight is the embedding or output layer, is an error naming the op and
// its source line.
func LoRAModel(base *Model, ad *LoRAAdapter) (*Model, error) {
	return loraModel(base, ad, false)
}

// loraModel is LoRAModel; for an import (HF -> MCA) the A op of a fused
// module reads only the first HF name (the caller has checked or stacked
// the others), where MCA -> HF copies the A to every HF name.
func loraModel(base *Model, ad *LoRAAdapter, importing bool) (*Model, error) {
	t := *base.Template
	t.Ops = nil
	t.Parallel = nil
	seen := map[string]bool{}
	hfToMCA := map[string]string{}
	var errs []string
	edge := map[string]bool{}
	for _, k := range []string{"pre_process", "post_process"} {
		for _, n := range base.Parallel.Lists[k] {
			edge[moduleOf(n)] = true
		}
	}
	for _, lo := range DeriveLoRAOps(base, func(mod string) int64 { r, _ := ad.ModuleRank(mod); return r }) {
		if !ad.targets(lo.Module) {
			continue
		}
		seen[lo.Module] = true
		if lo.Err != nil {
			errs = append(errs, fmt.Sprintf("%s: target module %s: %v", ProblemLoRAUnderivable, lo.Module, lo.Err))
			continue
		}
		if edge[lo.Module] {
			errs = append(errs, fmt.Sprintf("lora-unsupported: target module %s is the embedding or output layer (%s op at %s); ROLL has no LoRA layer for it", lo.Module, lo.Base.Kind, lo.Base.Span.Start))
			continue
		}
		a := lo.A
		if importing && a.Kind == ops.KindCopy {
			c := *a
			c.Kind, c.HF = ops.KindRename, c.HF[:1]
			a = &c
		}
		t.Ops = append(t.Ops, a, lo.B)
		for _, n := range lo.Base.HF {
			hfToMCA[moduleOf(n.Resolve(base.Flags))] = lo.Module
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s", ad.ConfigPath, strings.Join(errs, "; "))
	}
	var missing []string
	for _, tm := range ad.Targets {
		if !seen[tm] {
			missing = append(missing, tm)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: target_modules %s match no weight op of template %s", ad.ConfigPath, strings.Join(missing, ", "), base.Template.Name)
	}
	ad.hfLayerPrefix, ad.hfToMCA = base.Template.LayerPrefix, hfToMCA
	par := DeriveLoRAParallel(base.Parallel)
	// The derived model records (and checks) the base template's digest:
	// an adapter is converted with its base template.
	m := &Model{Template: &t, Parallel: par, Flags: base.Flags, digest: base.digest, lora: true}
	for i, o := range t.Ops {
		if _, err := m.opInfo(i, o); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ProblemLoRARank is the problem kind of LoRA A and B tensors whose ranks
// do not agree (lora-fp8.md §1.5.4).
const ProblemLoRARank ProblemKind = "lora-rank-mismatch"

// checkLoRARanks adds a problem to p for every LoRA pair of its (merged,
// global) inputs whose A [ρ, I] and B [O, ρ'] disagree (ρ ≠ ρ', or not
// 2-D), and for an A without its B or a B without its A.
func checkLoRARanks(p *Plan) {
	idx := map[string]int{}
	for i, in := range p.Inputs {
		idx[in.Name] = i
	}
	for _, in := range p.Inputs {
		stem, j, ok := strings.Cut(in.Name, ".lora_A.weight")
		if !ok {
			if stem, j, ok := strings.Cut(in.Name, ".lora_B.weight"); ok {
				if _, has := idx[stem+".lora_A.weight"+j]; !has {
					p.Problems = append(p.Problems, Problem{Kind: ProblemLoRARank, Severity: Error,
						Tensors: []ProblemTensor{{Name: in.Name, File: in.File}}, Msg: "a LoRA B tensor without its A"})
				}
			}
			continue
		}
		bi, has := idx[stem+".lora_B.weight"+j]
		if !has {
			p.Problems = append(p.Problems, Problem{Kind: ProblemLoRARank, Severity: Error,
				Tensors: []ProblemTensor{{Name: in.Name, File: in.File}}, Msg: "a LoRA A tensor without its B"})
			continue
		}
		b := p.Inputs[bi]
		if len(in.Shape) != 2 || len(b.Shape) != 2 || in.Shape[0] != b.Shape[1] || in.Shape[0] <= 0 {
			p.Problems = append(p.Problems, Problem{Kind: ProblemLoRARank, Severity: Error,
				Tensors: []ProblemTensor{{Name: in.Name, File: in.File}, {Name: b.Name, File: b.File}},
				Msg:     fmt.Sprintf("LoRA A %v and B %v: A must be [rank, in] and B [out, rank]", in.Shape, b.Shape)})
		}
	}
}
