package exec

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/pyjson"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// LoRA fuse modes of an import (lora-fp8.md §1.5.7).
const (
	// LoRAFuseExact requires the A tensors of the HF modules fused into
	// one MCA module (q/k/v, gate/up) to be bitwise equal.
	LoRAFuseExact = "exact"
	// LoRAFuseExpand stacks them: A_m = vstack(A_h…), each B_h embedded
	// in zero columns outside its own block (rank Σρ_h).
	LoRAFuseExpand = "expand"
)

// IsPEFT reports whether dir is a PEFT adapter: adapter_config.json and
// adapter_model.safetensors.
func IsPEFT(dir string) bool {
	for _, n := range []string{AdapterConfigName, AdapterModelName} {
		if st, err := os.Stat(filepath.Join(dir, n)); err != nil || !st.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// LoRAImportOptions configure an import.
type LoRAImportOptions struct {
	// Options: Layout is the MCA layout written; Force, Sync, Notice,
	// Progress as for a conversion.
	Options
	// Fuse is LoRAFuseExact (the default) or LoRAFuseExpand.
	Fuse string
	// BaseConfig is the base's config.json text when the caller has read
	// it already (CheckpointModel.HFConfig); nil reads it from baseHF.
	BaseConfig []byte
}

// ImportPEFT converts the PEFT adapter in peftDir (as ConvertLoRAToPEFT
// writes it, or any PEFT LoRA adapter of the model) into one ROLL adapter
// folder in dst, in the layout opts.Layout: adapter_config.json with MCA
// target_modules, mca_config.json built from the base HF config.json in
// baseHF, latest_checkpointed_iteration.txt and the rank files. The A
// tensors of fused modules must be bitwise equal (LoRAFuseExact, else an
// error lora-fuse-mismatch naming them), or are stacked
// (LoRAFuseExpand), which keeps every merged weight bitwise equal
// (§1.5.7). Nothing is written on any error.
func ImportPEFT(ctx context.Context, base *Model, peftDir, baseHF, dst string, opts LoRAImportOptions) (res *Result, err error) {
	defer recoverInternal(&err)
	fuse := opts.Fuse
	if fuse == "" {
		fuse = LoRAFuseExact
	}
	if fuse != LoRAFuseExact && fuse != LoRAFuseExpand {
		return nil, fmt.Errorf("--lora-fuse %q: want exact or expand", fuse)
	}
	cfgPath := filepath.Join(peftDir, AdapterConfigName)
	text, err := ReadConfigFile(cfgPath)
	if err != nil {
		return nil, err
	}
	pc, err := pyjson.ParseObject(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", cfgPath, err)
	}
	r, ok := jsonInt(pc, "r")
	if !ok || r <= 0 {
		return nil, fmt.Errorf("%s: r must be a positive integer", cfgPath)
	}
	alpha := float64(r)
	if v, ok := pc.Get("lora_alpha"); ok && v != nil {
		if alpha, ok = jsonFloat(v); !ok {
			return nil, fmt.Errorf("%s: lora_alpha is not a number", cfgPath)
		}
	}
	if v, _ := pc.Get("use_dora"); v == true {
		return nil, fmt.Errorf("%s: lora-unsupported: use_dora", cfgPath)
	}
	rs, _ := pc.Get("use_rslora")
	if rs == true {
		return nil, fmt.Errorf("%s: lora-unsupported: use_rslora on import", cfgPath)
	}
	// Patterns must keep the global training scale α/r (as the export's
	// fix writes them): the MCA config then needs none.
	rp, _ := pc.Get("rank_pattern")
	ap, _ := pc.Get("alpha_pattern")
	if rpo, ok := rp.(*pyjson.Object); ok {
		apo, _ := ap.(*pyjson.Object)
		for _, k := range rpo.Keys() {
			rv, _ := rpo.Get(k)
			rho, _ := jsonFloat(rv)
			a := alpha
			if apo != nil {
				if av, ok := apo.Get(k); ok {
					a, _ = jsonFloat(av)
				}
			}
			if rho <= 0 || math.Abs(a/rho-alpha/float64(r)) > 1e-12*alpha/float64(r) {
				return nil, fmt.Errorf("%s: lora-unsupported: rank_pattern[%q] = %v with alpha %v gives a scale other than lora_alpha/r", cfgPath, k, rv, a)
			}
		}
	}
	modelPath := filepath.Join(peftDir, AdapterModelName)
	f, err := safetensors.Open(modelPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ts := map[string]tensor.Tensor{}
	for _, ti := range f.Tensors() {
		name, ok := strings.CutPrefix(ti.Name, PEFTPrefix)
		if !ok {
			return nil, fmt.Errorf("%s: tensor %q lacks PEFT's prefix %q", modelPath, ti.Name, PEFTPrefix)
		}
		if _, _, ok := splitLoRAName(name); !ok {
			return nil, fmt.Errorf("%s: tensor %q is not a LoRA A or B weight", modelPath, ti.Name)
		}
		t, err := tensor.New(ti.DType, ti.Shape, f.Data(ti))
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %v", modelPath, ti.Name, err)
		}
		if len(ti.Shape) != 2 || !ti.DType.IsFloat() {
			return nil, fmt.Errorf("%s: tensor %q is %v %v; LoRA tensors are 2-D floats", modelPath, ti.Name, ti.DType, ti.Shape)
		}
		ts[name] = t
	}
	// The fused groups: the HF names of each derived A op.
	ad := &LoRAAdapter{Name: "default", R: r, Alpha: alpha, RankPattern: map[string]int64{}, AlphaPattern: map[string]float64{}}
	los := DeriveLoRAOps(base, func(string) int64 { return r })
	hfMod := map[string]string{} // HF module (last segment) -> MCA module
	var groups [][]string        // relative HF A names of fused ops
	for _, lo := range los {
		if lo.Err != nil {
			continue
		}
		var rel []string
		for _, n := range lo.A.HF {
			s := n.Resolve(base.Flags)
			rel = append(rel, s)
			hfMod[moduleOf(strings.TrimSuffix(s, ".lora_A.weight")+".weight")] = lo.Module
		}
		if len(rel) > 1 {
			groups = append(groups, rel)
		}
	}
	// Targets: the MCA modules of the tensors present.
	seen := map[string]bool{}
	var names []string
	for name := range ts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		mod, _, _ := splitLoRAName(name)
		last := mod[strings.LastIndex(mod, ".")+1:]
		m, ok := hfMod[last]
		if !ok {
			return nil, fmt.Errorf("%s: %s: tensor %q: no op of template %s with a LoRA rule produces the HF module %s", ProblemLoRAUnderivable, modelPath, PEFTPrefix+name, base.Template.Name, last)
		}
		if !seen[m] {
			seen[m] = true
			ad.Targets = append(ad.Targets, m)
		}
	}
	// Fuse the A tensors of each concrete group.
	out := map[string]tensor.Tensor{}
	for k, v := range ts {
		out[k] = v
	}
	expanded := map[string]int64{} // MCA module -> fused rank
	for _, g := range groups {
		for _, name := range names {
			if !strings.HasSuffix(name, g[0]) {
				continue
			}
			stem := strings.TrimSuffix(name, g[0])
			var as []tensor.Tensor
			var present []string
			for _, rel := range g {
				if t, ok := ts[stem+rel]; ok {
					as = append(as, t)
					present = append(present, stem+rel)
				}
			}
			if len(present) != len(g) {
				return nil, fmt.Errorf("%s: lora-fuse-mismatch: %s has %d of the %d fused modules %v; a fused MCA module needs all", modelPath, stem, len(present), len(g), g)
			}
			same := true
			for _, a := range as[1:] {
				if !a.Equal(as[0]) {
					same = false
				}
			}
			if fuse == LoRAFuseExact {
				if !same {
					return nil, fmt.Errorf("%s: lora-fuse-mismatch: the A tensors %s differ; they fuse into one MCA module only with --lora-fuse expand", modelPath, strings.Join(present, ", "))
				}
				for _, p := range present[1:] {
					delete(out, p)
				}
				continue
			}
			// expand: A_m = vstack(A_h); B_h padded with zero columns.
			var rho int64
			for _, a := range as {
				rho += a.Shape[0]
			}
			mcaMod := hfMod[moduleOf(strings.TrimSuffix(g[0], ".lora_A.weight")+".weight")]
			if old, ok := expanded[mcaMod]; ok && old != rho {
				return nil, fmt.Errorf("%s: --lora-fuse expand: module %s gets rank %d at %s but %d elsewhere", modelPath, mcaMod, rho, stem, old)
			}
			expanded[mcaMod] = rho
			av, err := tensor.Concat(0, as...)
			if err != nil {
				return nil, fmt.Errorf("%s: --lora-fuse expand %s: %v", modelPath, stem, err)
			}
			out[present[0]] = av
			for _, p := range present[1:] {
				delete(out, p)
			}
			var off int64
			for i, rel := range g {
				bn := stem + strings.TrimSuffix(rel, ".lora_A.weight") + ".lora_B.weight"
				b, ok := ts[bn]
				if !ok {
					return nil, fmt.Errorf("%s: tensor %q has no lora_B", modelPath, PEFTPrefix+present[i])
				}
				out[bn] = padColumns(b, off, rho)
				off += as[i].Shape[0]
			}
		}
	}
	for m, rho := range expanded {
		ad.RankPattern[m] = rho
		ad.AlphaPattern[m] = alpha * float64(rho) / float64(r)
	}
	// The MCA adapter's own config.
	mcfg := pc.Clone()
	for _, k := range []string{"base_model_name_or_path", "inference_mode", "revision"} {
		mcfg.Delete(k)
	}
	tm := make([]any, len(ad.Targets))
	for i, t := range ad.Targets {
		tm[i] = t
	}
	mcfg.Set("target_modules", tm)
	rpo, apo := pyjson.NewObject(), pyjson.NewObject()
	var em []string
	for m := range expanded {
		em = append(em, m)
	}
	sort.Strings(em)
	for _, m := range em {
		rpo.Set(m, pyjson.IntNumber(ad.RankPattern[m]))
		apo.Set(m, floatNumber(ad.AlphaPattern[m]))
	}
	mcfg.Set("rank_pattern", rpo)
	mcfg.Set("alpha_pattern", apo)
	// A temporary HF-layout source: config.json, the fused tensors under
	// their HF names, adapter_config.json (copied into the output); beside
	// the destination, whose file system receives the data anyway.
	tmp, err := workDir(filepath.Dir(filepath.Clean(dst)), ".rolltpl-lora-import-", "LoRA import", opts.Notice)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	hcText := opts.BaseConfig
	if hcText == nil {
		if _, hcText, _, err = ReadHFConfig(baseHF); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, HFConfigName), hcText, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, AdapterConfigName), append(pyjson.Encode(mcfg, 2, false), '\n'), 0o644); err != nil {
		return nil, err
	}
	var specs []safetensors.Spec
	var onames []string
	for n := range out {
		onames = append(onames, n)
	}
	sort.Strings(onames)
	for _, n := range onames {
		specs = append(specs, safetensors.Spec{Name: n, DType: out[n].DType, Shape: out[n].Shape})
	}
	if err := safetensors.WriteFile(filepath.Join(tmp, safetensors.SingleFileName), specs, map[string]string{"format": "pt"}, func(w *safetensors.Writer) error {
		for _, ti := range w.Tensors() {
			if err := w.WriteTensor(ti.Name, out[ti.Name].Bytes()); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	ad.ConfigPath = cfgPath
	lm, err := loraModel(base, ad, true)
	if err != nil {
		return nil, err
	}
	o := opts.Options
	o.NameOrPath = baseHF
	return ConvertHFToMCA(ctx, lm, tmp, dst, o)
}

// padColumns returns b [O, ρ_h] embedded at columns [off, off+ρ_h) of an
// [O, rho] tensor of zeros.
func padColumns(b tensor.Tensor, off, rho int64) tensor.Tensor {
	es := int64(b.DType.Size())
	O, r := b.Shape[0], b.Shape[1]
	src := b.Bytes()
	dst := make([]byte, O*rho*es)
	for i := range O {
		copy(dst[(i*rho+off)*es:(i*rho+off+r)*es], src[i*r*es:(i+1)*r*es])
	}
	t, _ := tensor.New(b.DType, tensor.Shape{O, rho}, dst)
	return t
}
