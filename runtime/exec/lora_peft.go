package exec

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/pyjson"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// PEFTPrefix is the prefix PEFT's PeftModel gives every adapter tensor.
const PEFTPrefix = "base_model.model."

// LoRAOptions configure a LoRA adapter export.
type LoRAOptions struct {
	// Options are the conversion options (Force, Sync, Notice,
	// Progress); Layout is not used.
	Options
	// Adapter, when set, converts only the adapter of that name.
	Adapter string
	// DType is the output dtype of the adapter tensors: "keep", "f32"
	// (the default, what ROLL's PEFT export writes), "bf16" or "f16".
	DType string
	// BaseNameOrPath is base_model_name_or_path in adapter_config.json;
	// empty means mca_config.json's name_or_path.
	BaseNameOrPath string
}

// LoRAResult describes a finished export.
type LoRAResult struct {
	Adapters []LoRAExported
}

// LoRAExported is one adapter written.
type LoRAExported struct {
	// Name is the adapter name, Dir its folder relative to the output
	// ("" for the root).
	Name, Dir string
	// Tensors and Bytes count the tensors and tensor bytes written.
	Tensors int
	Bytes   int64
	// Modules are the HF target modules; RankPattern the ranks that
	// differ from r.
	Modules     []string
	RankPattern map[string]int64
	// Plan is the plan of the adapter's tensors.
	Plan *Plan
}

// loraDType returns the output dtype of a tensor of dtype dt.
func loraDType(opt string, dt tensor.DType) (tensor.DType, error) {
	switch opt {
	case "", "f32":
		return tensor.F32, nil
	case "keep":
		return dt, nil
	case "bf16":
		return tensor.BF16, nil
	case "f16":
		return tensor.F16, nil
	}
	return 0, fmt.Errorf("--lora-dtype %q: want keep, f32, bf16 or f16", opt)
}

// ConvertLoRAToPEFT converts the ROLL LoRA checkpoint in src (one adapter
// folder, or a folder of them) to PEFT adapters in dst: the "default"
// adapter (or a single one) at the root, the others in dst/<name>/, each
// adapter_model.safetensors (names base_model.model.<HF name>.lora_{A,B}.weight)
// and adapter_config.json (lora-fp8.md §1.5.5). Every adapter is planned
// first; any problem refuses the export before anything is written.
func ConvertLoRAToPEFT(ctx context.Context, base *Model, src, dst string, opts LoRAOptions) (res *LoRAResult, err error) {
	defer recoverInternal(&err)
	if _, err := loraDType(opts.DType, tensor.F32); err != nil {
		return nil, err
	}
	if err := checkPaths(src, dst); err != nil {
		return nil, err
	}
	if _, err := checkDest(src, dst, opts.Force, opts.Notice); err != nil {
		return nil, err
	}
	ads, err := FindLoRAAdapters(src, opts.Adapter)
	if err != nil {
		return nil, err
	}
	type job struct {
		ad *LoRAAdapter
		ms *mcaSource
	}
	var jobs []job
	defer func() {
		for _, j := range jobs {
			j.ms.close()
		}
	}()
	res = &LoRAResult{}
	for _, ad := range ads {
		lm, err := LoRAModel(base, ad)
		if err != nil {
			return res, err
		}
		ms, err := openMCASource(lm, ad.Dir)
		if err != nil {
			return res, fmt.Errorf("adapter %s: %w", ad.Name, err)
		}
		checkLoRARanks(ms.plan)
		jobs = append(jobs, job{ad, ms})
		res.Adapters = append(res.Adapters, LoRAExported{Name: ad.Name, Plan: ms.plan})
		if err := ms.plan.Err(); err != nil {
			return res, err
		}
	}
	out, err := newOutput(src, dst, opts.Options)
	if err != nil {
		return res, err
	}
	defer out.Abort(&err)
	for i, j := range jobs {
		sub := ""
		if j.ad.Name != "default" && !(len(jobs) == 1 && opts.Adapter == "") {
			sub = j.ad.Name
		}
		dir := out.Path(sub)
		if sub != "" {
			if err := os.Mkdir(dir, 0o755); err != nil {
				return res, err
			}
		}
		ex := newExecutor(j.ms.plan, opts.Options, nil)
		ex.merged = j.ms.mi
		ex.spans = j.ms.rs.spans()
		e := &res.Adapters[i]
		e.Dir = sub
		err := writePEFT(ctx, ex, j.ad, j.ms, dir, opts, e)
		ex.close()
		if err != nil {
			return res, fmt.Errorf("adapter %s: %w", j.ad.Name, err)
		}
	}
	return res, out.Commit()
}

// writePEFT writes one adapter's adapter_model.safetensors and
// adapter_config.json into dir.
func writePEFT(ctx context.Context, ex *executor, ad *LoRAAdapter, ms *mcaSource, dir string, opts LoRAOptions, e *LoRAExported) error {
	outs := ex.plan.Outputs()
	specs := make([]safetensors.Spec, 0, len(outs))
	dts := map[string]tensor.DType{}
	ranks := map[string]int64{} // HF module -> ρ
	modules := map[string]bool{}
	for _, o := range outs {
		dt, err := loraDType(opts.DType, o.DType)
		if err != nil {
			return err
		}
		if !o.DType.IsFloat() {
			return fmt.Errorf("adapter tensor %s is %v, not floating-point", o.Name, o.DType)
		}
		dts[o.Name] = dt
		specs = append(specs, safetensors.Spec{Name: PEFTPrefix + o.Name, DType: dt, Shape: o.Shape})
		mod, ab, ok := splitLoRAName(o.Name)
		if !ok {
			return fmt.Errorf("internal error: output %s is not a LoRA name", o.Name)
		}
		modules[mod[strings.LastIndex(mod, ".")+1:]] = true
		if ab == "A" && len(o.Shape) == 2 {
			ranks[mod] = o.Shape[0]
		}
	}
	// The layout Python's safetensors writes (dtype, then name).
	safetensors.SortSpecs(specs)
	path := filepath.Join(dir, AdapterModelName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	sw, err := safetensors.NewWriter(f, specs, map[string]string{"format": "pt"})
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Truncate(sw.Size()); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	at := map[string]safetensors.TensorInfo{}
	for _, ti := range sw.Tensors() {
		at[ti.Name] = ti
	}
	var total int64
	for _, o := range outs {
		total += o.Shape.NumElements() * int64(dts[o.Name].Size())
	}
	var buf []byte
	err = ex.eachOutput(ctx, func(name string, t tensor.Tensor) error {
		ti := at[PEFTPrefix+name]
		n := t.NumElements() * int64(dts[name].Size())
		if n != ti.Size {
			return fmt.Errorf("writing %s: internal error: tensor %s has %d bytes, the header lays out %d", path, name, n, ti.Size)
		}
		if t.DType == dts[name] {
			// the pieces as they are (views of the rank files), no copy
			off := ti.Offset
			for _, p := range t.Pieces() {
				if _, err := f.WriteAt(p, off); err != nil {
					return fmt.Errorf("writing %s: %w", path, err)
				}
				off += int64(len(p))
			}
		} else {
			var err error
			if buf, err = t.AppendAs(buf[:0], dts[name]); err != nil {
				return fmt.Errorf("writing %s: %s: %w", path, name, err)
			}
			if _, err := f.WriteAt(buf, ti.Offset); err != nil {
				return fmt.Errorf("writing %s: %w", path, err)
			}
		}
		e.Tensors++
		e.Bytes += n
		if opts.Progress != nil {
			opts.Progress(Progress{Bytes: e.Bytes, TotalBytes: total, Tensors: e.Tensors, TotalTensors: len(outs)})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if opts.Sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	for m := range modules {
		e.Modules = append(e.Modules, m)
	}
	sort.Strings(e.Modules)
	cfg, rp, err := peftConfig(ad, ms, opts.BaseNameOrPath, e.Modules, ranks)
	if err != nil {
		return err
	}
	e.RankPattern = rp
	return writeFileSync(filepath.Join(dir, AdapterConfigName), cfg, opts.Sync)
}

// splitLoRAName splits "<module>.lora_A.weight" into module and "A".
func splitLoRAName(name string) (module, ab string, ok bool) {
	for _, x := range []string{"A", "B"} {
		if m, found := strings.CutSuffix(name, ".lora_"+x+".weight"); found {
			return m, x, true
		}
	}
	return "", "", false
}

// hfModuleKey returns the PEFT pattern key of an HF module name: the part
// after the layer prefix and index, dots escaped, indices as \d+ (PEFT
// anchors keys as `.*\.{key}$`), e.g. mlp\.experts\.\d+\.gate_proj.
func hfModuleKey(layerPrefix, module string) string {
	rest := module
	if strings.HasPrefix(module, layerPrefix) {
		r := module[len(layerPrefix):]
		if _, after, ok := strings.Cut(r, "."); ok {
			rest = after
		}
	}
	parts := strings.Split(rest, ".")
	for i, p := range parts {
		if _, err := strconv.Atoi(p); err == nil {
			parts[i] = `\d+`
		} else {
			parts[i] = regexp.QuoteMeta(p)
		}
	}
	return strings.Join(parts, `\.`)
}

// peftConfig builds adapter_config.json (§1.5.5): the MCA adapter's own
// file with target_modules the HF modules written, inference_mode true,
// task_type CAUSAL_LM, peft_type LORA, base_model_name_or_path, and for
// every HF module whose rank ρ differs from r a rank_pattern entry ρ and
// an alpha_pattern entry α·ρ/r, so that α_key/ρ is the training scale
// α_m/r_m (ROLL's pattern bugs fixed).
func peftConfig(ad *LoRAAdapter, ms *mcaSource, baseName string, modules []string, ranks map[string]int64) ([]byte, map[string]int64, error) {
	cfg := ad.Config.Clone()
	if baseName == "" {
		if v, ok := ms.ck.Config.Object().Get("name_or_path"); ok {
			if s, ok := v.(string); ok {
				baseName = s
			}
		}
	}
	tm := make([]any, len(modules))
	for i, m := range modules {
		tm[i] = m
	}
	cfg.Set("target_modules", tm)
	cfg.Set("inference_mode", true)
	cfg.Set("task_type", "CAUSAL_LM")
	cfg.Set("peft_type", "LORA")
	if baseName != "" {
		cfg.Set("base_model_name_or_path", baseName)
	}
	lp := ad.hfLayerPrefix
	// Group the modules by key; every module of a key must have the same
	// rank and training scale, else the key falls back to the exact name.
	type entry struct {
		rho   int64
		alpha float64
	}
	keyed := map[string]entry{}
	conflict := map[string]bool{}
	byModule := map[string]entry{}
	for mod, rho := range ranks {
		mcaMod := ad.mcaModuleOf(mod)
		r, alpha := ad.ModuleRank(mcaMod)
		if rho == r {
			continue
		}
		en := entry{rho, alpha * float64(rho) / float64(r)}
		byModule[mod] = en
		k := hfModuleKey(lp, mod)
		if old, ok := keyed[k]; ok && old != en {
			conflict[k] = true
		}
		keyed[k] = en
	}
	rp, ap := pyjson.NewObject(), pyjson.NewObject()
	out := map[string]int64{}
	var keys []string
	final := map[string]entry{}
	for mod, en := range byModule {
		k := hfModuleKey(lp, mod)
		if conflict[k] {
			k = regexp.QuoteMeta(mod)
		}
		final[k] = en
	}
	for k := range final {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		en := final[k]
		rp.Set(k, pyjson.IntNumber(en.rho))
		ap.Set(k, floatNumber(en.alpha))
		out[k] = en.rho
	}
	cfg.Set("rank_pattern", rp)
	cfg.Set("alpha_pattern", ap)
	return append(pyjson.Encode(cfg, 2, false), '\n'), out, nil
}

// floatNumber returns f as a JSON number (an integer without a fraction).
func floatNumber(f float64) pyjson.Number {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return pyjson.Number{Text: strconv.FormatFloat(f, 'f', 1, 64)}
	}
	return pyjson.Number{Text: strconv.FormatFloat(f, 'g', -1, 64)}
}
