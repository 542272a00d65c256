package exec

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/fp8"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// This file is the FP8 pre-pass of HF -> MCA conversions (lora-fp8.md
// §2.6.3): a checkpoint whose config.json says quant_method "fp8" has
// F8_E4M3 weights, each with a grid of one scale per block, named by the
// template's quant rules (ir.Template.Scales; the stdlib default names
// X.weight's grid X.weight_scale_inv). The planner sees every such pair
// as one tensor of the output dtype (BF16 unless Options.Dequantize says
// otherwise), and the scales not at all; template ops stay pure layout
// moves on dequantized values, which the executor decodes as it writes
// them, each rank file its own part (fp8decode.go). Memory is a few
// windows of codes per executor, not the model's size.
//
// Why TP splits never cut a block: the grid belongs to the HF tensor and
// the whole HF tensor is dequantized, with its own grid, before any op or
// split sees it; the rank files then receive plain BF16 rows and columns,
// so a split at row 288 of a 576-row weight (in the middle of block row 2)
// just splits values that were each computed with the right scale. Nothing
// about blocks reaches the MCA side but the sidecar (rolltpl_quantization.json
// and rolltpl_fp8_scales.safetensors), which MCA -> HF --quantize fp8 uses
// to put the grid back on the HF tensors (fp8export.go).

// Dequantize is how an HF -> MCA conversion treats an FP8 block-quantized
// checkpoint: the dtype the weights are dequantized to, or a refusal.
type Dequantize string

// The dequantization modes; the zero value is DequantBF16.
const (
	DequantBF16   Dequantize = "bf16"
	DequantF16    Dequantize = "f16"
	DequantF32    Dequantize = "f32"
	DequantRefuse Dequantize = "refuse"
)

// ParseDequantize parses a --dequantize value.
func ParseDequantize(s string) (Dequantize, error) {
	switch d := Dequantize(strings.ToLower(s)); d {
	case DequantBF16, DequantF16, DequantF32, DequantRefuse:
		return d, nil
	}
	return "", fmt.Errorf("%q is not one of bf16, f16, f32, refuse", s)
}

// dtype returns the output dtype of d.
func (d Dequantize) dtype() tensor.DType {
	switch d {
	case DequantF16:
		return tensor.F16
	case DequantF32:
		return tensor.F32
	}
	return tensor.BF16
}

// File names of the FP8 provenance sidecar in an MCA checkpoint's root.
const (
	FP8SidecarName = "rolltpl_quantization.json"
	FP8ScalesName  = "rolltpl_fp8_scales.safetensors"
)

// FP8Info describes the FP8 pre-pass of an HF -> MCA plan: what is
// dequantized, from headers only.
type FP8Info struct {
	// Config is the checkpoint's quantization_config.
	Config *fp8.Config `json:"-"`
	// DType is the dtype the weights are dequantized to; To spells it.
	DType tensor.DType `json:"-"`
	To    string       `json:"dtype"`
	// Block is weight_block_size.
	Block [2]int64 `json:"block"`
	// Weights and Scales count the pairs' tensors; InBytes are their
	// bytes (codes and scales), OutBytes the dequantized weights' bytes.
	Weights  int   `json:"weights"`
	Scales   int   `json:"scales"`
	InBytes  int64 `json:"bytes_in"`
	OutBytes int64 `json:"bytes_out"`
	// Pairs are the weight/scale pairs, in file order.
	Pairs []FP8Pair `json:"pairs"`

	// keep maps a plan input index to its source tensor index.
	keep []int
	// deq maps a plan input index to its pair.
	deq map[int]fp8.Pair
}

// FP8Pair is one quantized weight and its scale grid.
type FP8Pair struct {
	Weight     string       `json:"weight"`
	Scale      string       `json:"scale"`
	Shape      tensor.Shape `json:"shape"`
	Grid       tensor.Shape `json:"grid"`
	ScaleDType string       `json:"scale_dtype"`
	File       string       `json:"file"`
}

// fp8Prepass inspects an HF checkpoint's config and tensor list for FP8
// block quantization. It returns nil info and metas unchanged for a
// checkpoint that has none. Otherwise it returns the pre-pass, the tensor
// list the planner sees (each pair one weight of the output dtype, no
// scales), the config text to record on the MCA side (without
// quantization_config) and the problems: structural defects of the pairs
// (fp8.Pairs, by the naming rules), another quantization format, and a
// refusal when mode is DequantRefuse.
func fp8Prepass(cfgText []byte, metas []TensorMeta, mode Dequantize, naming fp8.Naming) (*FP8Info, []TensorMeta, []byte, []Problem) {
	obj, err := pyjson.ParseObject(cfgText)
	if err != nil {
		return nil, metas, cfgText, nil // BuildMCAConfig reports it
	}
	fm := make([]fp8.Meta, len(metas))
	hasF8 := false
	for i, t := range metas {
		fm[i] = fp8.Meta{Name: t.Name, DType: t.DType, Shape: t.Shape}
		hasF8 = hasF8 || t.DType == tensor.F8E4M3 || t.DType == tensor.F8E5M2
	}
	var probs []Problem
	cfg, cerr := fp8.ParseConfig(obj)
	if cerr != nil {
		// Refused; the pairing below still runs (without a config) so
		// that the F8 tensors are named and the scales kept out of the
		// planner's way.
		kind := fp8.CodeConfig
		if !strings.Contains(cerr.Error(), "fmt") && !strings.Contains(cerr.Error(), "scale_fmt") {
			kind = fp8.CodeNotBlock
		}
		probs = append(probs, Problem{Kind: ProblemKind(kind), Severity: Error, Msg: "config.json: " + cerr.Error()})
	} else if cfg == nil && !hasF8 && !keptScales(metas, naming) {
		return nil, metas, cfgText, nil
	}
	pairs, fprobs := fp8.Pairs(cfg, fm, naming)
	drop := map[int]bool{}
	byName := make(map[string]int, len(metas))
	for i, t := range metas {
		byName[t.Name] = i
	}
	for i, t := range metas {
		// The scale of an F8 tensor never reaches the planner, paired or
		// not (without a config, or with a problem, the plan is refused
		// anyway; its ops would only add noise about scale names).
		for _, wn := range naming.WeightsOf(t.Name) {
			if w, ok := byName[wn]; ok && w != i && (metas[w].DType == tensor.F8E4M3 || metas[w].DType == tensor.F8E5M2) {
				drop[i] = true
			}
		}
	}
	for _, p := range fprobs {
		pr := Problem{Kind: ProblemKind(p.Code), Severity: Error, Msg: p.Msg}
		if p.Tensor >= 0 {
			t := metas[p.Tensor]
			pr.Msg = fmt.Sprintf("%q %s", t.Name, p.Msg)
			pr.Tensors = []ProblemTensor{{Name: t.Name, File: t.File}}
			if naming.IsScale(t.Name) || p.Code == fp8.CodeNotBlock && t.DType.IsFloat() && t.DType.Size() > 1 {
				drop[p.Tensor] = true
			}
		}
		probs = append(probs, pr)
	}
	info := &FP8Info{Config: cfg, DType: mode.dtype(), deq: map[int]fp8.Pair{}}
	if cfg == nil {
		cfg = &fp8.Config{Block: [2]int64{128, 128}}
		info.Config = cfg
	}
	info.To, info.Block = info.DType.String(), cfg.Block
	pairOf := map[int]fp8.Pair{}
	for _, p := range pairs {
		pairOf[p.Weight] = p
		drop[p.Scale] = true
		w, s := metas[p.Weight], metas[p.Scale]
		grid, _ := fp8.Grid(w.Shape, cfg.Block)
		info.Pairs = append(info.Pairs, FP8Pair{Weight: w.Name, Scale: s.Name, Shape: w.Shape, Grid: grid, ScaleDType: s.DType.String(), File: w.File})
		info.Weights++
		info.Scales++
		info.InBytes += w.Size + s.Size
		info.OutBytes += w.Shape.NumElements() * int64(info.DType.Size())
	}
	// modules_to_not_convert is only cross-checked: the data decide.
	for _, p := range pairs {
		w := metas[p.Weight]
		module := strings.TrimSuffix(w.Name, ".weight")
		for _, nc := range cfg.NotConverted {
			if nc != "" && (module == nc || strings.HasSuffix(module, "."+nc) || strings.HasPrefix(module, nc+".")) {
				probs = append(probs, Problem{Kind: ProblemKind(fp8.CodeConfig), Severity: Warning, Tensors: []ProblemTensor{{Name: w.Name, File: w.File}},
					Msg: fmt.Sprintf("%q is F8_E4M3 with a scale grid, but quantization_config.modules_to_not_convert lists %q; it is dequantized (the tensors' dtypes decide)", w.Name, nc)})
				break
			}
		}
	}
	if mode == DequantRefuse && len(pairs) > 0 {
		w := metas[pairs[0].Weight]
		probs = append(probs, Problem{Kind: ProblemKind(fp8.CodeConfig), Severity: Error, Tensors: []ProblemTensor{{Name: w.Name, File: w.File}},
			Msg: fmt.Sprintf("the checkpoint is FP8 block-quantized (%d F8_E4M3 weights with scale grids, e.g. %q) and --dequantize refuse was given", len(pairs), w.Name)})
	}
	var out []TensorMeta
	for _, i := range dequantizedOrder(metas, drop, info.DType) {
		t := metas[i]
		if t.DType == tensor.F8E4M3 || t.DType == tensor.F8E5M2 {
			// Unpaired ones are already errors; the planner sees them
			// dequantized so that it reports nothing else about them.
			t.DType = info.DType
			t.Size = t.Shape.NumElements() * int64(info.DType.Size())
		}
		if p, ok := pairOf[i]; ok {
			info.deq[len(out)] = p
		}
		info.keep = append(info.keep, i)
		out = append(out, t)
	}
	if info.Config.Value != nil && mode != DequantRefuse {
		obj.Delete(fp8.ConfigKey)
		cfgText = append(pyjson.Encode(obj, 2, false), '\n')
	}
	return info, out, cfgText, probs
}

// keptScales reports whether metas has a tensor the naming rules call the
// scale of another tensor of metas: a checkpoint dequantized by a tool
// that kept the scales, which fp8.Pairs refuses (fp8-scale-orphan) rather
// than let a template's scale op copy them (lang/spec.md §7a).
func keptScales(metas []TensorMeta, naming fp8.Naming) bool {
	names := make(map[string]bool, len(metas))
	for _, t := range metas {
		names[t.Name] = true
	}
	for _, t := range metas {
		for _, w := range naming.WeightsOf(t.Name) {
			if names[w] {
				return true
			}
		}
	}
	return false
}

// dequantizedOrder returns the indices of metas not dropped in the order
// of the dequantized checkpoint: file by file, each file's tensors in the
// order the reference safetensors writer lays out the dequantized file
// (widest dtype first, then by name), which is what fp8_cast_bf16.py and
// DequantizeHF write. The one-pass conversion thus plans (and writes the
// rank files' entries) exactly as a conversion of the dequantized
// checkpoint would.
func dequantizedOrder(metas []TensorMeta, drop map[int]bool, out tensor.DType) []int {
	var files []string
	byFile := map[string][]safetensors.Spec{}
	idx := map[string]int{}
	for i, t := range metas {
		if drop[i] {
			continue
		}
		if _, ok := byFile[t.File]; !ok {
			files = append(files, t.File)
		}
		dt := t.DType
		if dt == tensor.F8E4M3 || dt == tensor.F8E5M2 {
			dt = out
		}
		byFile[t.File] = append(byFile[t.File], safetensors.Spec{Name: t.Name, DType: dt, Shape: t.Shape})
		idx[t.File+"\x00"+t.Name] = i
	}
	order := make([]int, 0, len(idx))
	for _, f := range files {
		specs := byFile[f]
		safetensors.SortSpecs(specs)
		for _, sp := range specs {
			order = append(order, idx[f+"\x00"+sp.Name])
		}
	}
	return order
}

// Summary is the one-line announcement of the pre-pass, as the plan and
// convert's summary print it.
func (f *FP8Info) Summary() string {
	return fmt.Sprintf("FP8 block-quantized (blocks %dx%d): %d weights + %d scales -> %v, %s -> %s",
		f.Config.Block[0], f.Config.Block[1], f.Weights, f.Scales, f.DType, HumanBytes(f.InBytes), HumanBytes(f.OutBytes))
}

// deqInput is an FP8 weight read by a step: its codes are inputData.data
// (the mapping of the F8 tensor), its scales the mapped grid.
type deqInput struct {
	name      string
	layout    fp8.Layout
	scaleName string
	scaleDT   tensor.DType
	grid      tensor.Shape
	scales    []byte
	out       tensor.DType
}

// input returns plan input i of an HF source: the mapped tensor, and for
// an FP8 weight what the executor needs to dequantize it.
func (s *hfSource) input(i int) inputData {
	all := s.sh.Tensors()
	f := s.plan.FP8
	j := i
	if f != nil {
		j = f.keep[i]
	}
	t := all[j]
	in := inputData{data: t.File.Data(t.TensorInfo), path: t.File.Path(), off: t.Offset, st: t.File, ti: t.TensorInfo}
	if f == nil {
		return in
	}
	if p, ok := f.deq[i]; ok {
		sc := all[p.Scale]
		grid, _ := fp8.Grid(t.Shape, f.Config.Block)
		in.deq = &deqInput{name: t.Name, layout: fp8.NewLayout(t.Shape, f.Config.Block), scaleName: sc.Name,
			scaleDT: sc.DType, grid: grid, scales: sc.File.Data(sc.TensorInfo), out: f.DType}
	}
	return in
}

// checkScales reads every scale grid of the source (1/16384 of the
// weights' bytes at 128x128 blocks) and checks each value is finite and
// positive, before anything is written. Scales below fp8.MinScale
// (2^-117), whose products with the smallest codes are float32
// subnormals that a flush-to-zero device kernel would zero, are counted
// in a warning added to the plan: the CPU result is exact, a GPU
// fp8_cast_bf16.py run may differ there.
func (s *hfSource) checkScales() error {
	f := s.plan.FP8
	if f == nil {
		return nil
	}
	all := s.sh.Tensors()
	tiny, first := 0, ""
	for _, k := range slices.Sorted(maps.Keys(f.deq)) { // the first bad one in file order
		sc := all[f.deq[k].Scale]
		data := sc.File.Data(sc.TensorInfo)
		vals, err := fp8.Scales(sc.Name, sc.DType, sc.Shape, data)
		dropPages(data)
		if err != nil {
			return fmt.Errorf("%s: %w; nothing was written", sc.File.Path(), err)
		}
		for _, v := range vals {
			if v < fp8.MinScale {
				if tiny == 0 {
					first = sc.Name
				}
				tiny++
			}
		}
	}
	if tiny > 0 {
		sc, _ := s.sh.Lookup(first)
		s.plan.Problems = append(s.plan.Problems, Problem{Kind: ProblemKind(fp8.CodeConfig), Severity: Warning,
			Tensors: []ProblemTensor{{Name: first, File: sc.File.Path()}},
			Msg:     fmt.Sprintf("%s below 2^-117 (the first in %q): their products with the smallest codes are float32 subnormals, exact here, but a GPU kernel that flushes subnormals to zero would give 0", plural(tiny, "scale"), first)})
	}
	return nil
}

// inputBytes returns the bytes of input i of a step: the mapped bytes,
// or for an FP8 weight the buffer of its dequantized values, decoded as
// they are written (fp8decode.go).
func (ex *executor) inputBytes(in inputData) []byte {
	if in.deq == nil {
		return in.data
	}
	return ex.newView(in)
}

// fp8Sidecar is the JSON of rolltpl_quantization.json.
const fp8SidecarFormat = "rolltpl-fp8-block/1"

// writeFP8Sidecar writes the provenance of an FP8 source into an MCA
// output folder dir: rolltpl_quantization.json (the original
// quantization_config, the block, the dtype the weights became, and
// every weight that was F8 with its scale's name, dtype and grid) and
// rolltpl_fp8_scales.safetensors (the scale grids, verbatim), so that
// MCA -> HF --quantize fp8 --scales reuse restores the FP8 checkpoint
// without the source. Nothing is written for a plan without FP8 weights.
func writeFP8Sidecar(dir string, p *Plan, sh *safetensors.Sharded, sync bool) error {
	f := p.FP8
	if f == nil || len(f.Pairs) == 0 {
		return nil
	}
	o := pyjson.NewObject()
	o.Set("format", fp8SidecarFormat)
	if f.Config.Value != nil {
		o.Set(fp8.ConfigKey, f.Config.Value)
	}
	o.Set("weight_block_size", []any{pyjson.IntNumber(f.Config.Block[0]), pyjson.IntNumber(f.Config.Block[1])})
	o.Set("dequantized_to", f.DType.String())
	o.Set("scales_file", FP8ScalesName)
	var ws []any
	specs := make([]safetensors.Spec, 0, len(f.Pairs))
	skipped := p.skippedInputs()
	for _, pr := range f.Pairs {
		if skipped[pr.Weight] {
			continue // ignored or dropped by the template: it does not come back
		}
		e := pyjson.NewObject()
		e.Set("weight", pr.Weight)
		e.Set("shape", shapeJSON(pr.Shape))
		e.Set("scale", pr.Scale)
		e.Set("scale_dtype", pr.ScaleDType)
		e.Set("grid", shapeJSON(pr.Grid))
		ws = append(ws, e)
		dt, _ := tensor.ParseDType(pr.ScaleDType)
		specs = append(specs, safetensors.Spec{Name: pr.Scale, DType: dt, Shape: pr.Grid})
	}
	o.Set("weights", ws)
	err := safetensors.WriteFile(filepath.Join(dir, FP8ScalesName), specs, map[string]string{"format": "pt"}, func(w *safetensors.Writer) error {
		for _, sp := range specs {
			t, ok := sh.Lookup(sp.Name)
			if !ok {
				return fmt.Errorf("scale %q is not in the source", sp.Name)
			}
			if err := w.WriteTensor(sp.Name, t.File.Data(t.TensorInfo)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return writeFileSync(filepath.Join(dir, FP8SidecarName), append(pyjson.Encode(o, 2, false), '\n'), sync)
}

// skippedInputs returns the names of the inputs the plan ignores or
// drops on purpose.
func (p *Plan) skippedInputs() map[string]bool {
	skip := map[string]bool{}
	for _, i := range p.Ignored {
		skip[p.Inputs[i].Name] = true
	}
	for _, st := range p.Steps {
		if st.Dropped {
			for _, i := range st.Inputs {
				skip[p.Inputs[i].Name] = true
			}
		}
	}
	return skip
}

// skipScales adds to skip, a set of weights that do not come back from a
// round trip, the names of their scales.
func (f *FP8Info) skipScales(skip map[string]bool) {
	if f == nil {
		return
	}
	for _, pr := range f.Pairs {
		if skip[pr.Weight] {
			skip[pr.Scale] = true
		}
	}
}

func shapeJSON(s tensor.Shape) []any {
	out := make([]any, len(s))
	for i, d := range s {
		out[i] = pyjson.IntNumber(d)
	}
	return out
}

// fp8SidecarFile reports whether name is one of the sidecar files, which
// MCA -> HF does not copy to the HF output.
func fp8SidecarFile(name string) bool { return name == FP8SidecarName || name == FP8ScalesName }
