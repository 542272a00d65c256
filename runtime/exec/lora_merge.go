package exec

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// LoRAMergeResult describes a finished merge.
type LoRAMergeResult struct {
	// Adapter is the adapter merged; Plan the plan of its tensors.
	Adapter string
	Plan    *Plan
	// Merged are the HF weights changed, sorted.
	Merged []string
	// Written is the number of tensor bytes written; Files the weight
	// files.
	Written int64
	Files   []string
}

// MergeLoRAIntoHF merges one adapter of the ROLL LoRA checkpoint in save
// (opts.Adapter, or the only one) into the HF checkpoint baseHF and
// writes the merged HF checkpoint to dst, with baseHF's shards, index,
// config and other files. Every targeted weight W [O, I] becomes
// (lora-fp8.md §1.5.6)
//
//	ΔW[i,j] = s · Σ_k f64(B[i,k])·f64(A[k,j])   (float64, k ascending)
//	W'[i,j] = dtype(f32(f64(W[i,j]) + ΔW[i,j]))
//
// with s = α_m/r_m the training scale of the MCA module. The adapter's
// HF tensors are those ConvertLoRAToPEFT writes (their op is a row
// operation, so merging in HF layout gives the bytes merging in MCA
// layout before the op would). Other tensors are copied byte for byte.
// Every adapter tensor must meet its base weight with matching shapes,
// else nothing is written.
func MergeLoRAIntoHF(ctx context.Context, base *Model, save, baseHF, dst string, opts LoRAOptions) (res *LoRAMergeResult, err error) {
	defer recoverInternal(&err)
	if err := checkPaths(baseHF, dst); err != nil {
		return nil, err
	}
	if _, err := checkDest(baseHF, dst, opts.Force, opts.Notice); err != nil {
		return nil, err
	}
	ads, err := FindLoRAAdapters(save, opts.Adapter)
	if err != nil {
		return nil, err
	}
	if len(ads) != 1 {
		var names []string
		for _, a := range ads {
			names = append(names, a.Name)
		}
		return nil, fmt.Errorf("%s holds %d adapters (%s); name the one to merge with --adapter", save, len(ads), strings.Join(names, ", "))
	}
	ad := ads[0]
	lm, err := LoRAModel(base, ad)
	if err != nil {
		return nil, err
	}
	ms, err := openMCASource(lm, ad.Dir)
	if err != nil {
		return nil, fmt.Errorf("adapter %s: %w", ad.Name, err)
	}
	checkLoRARanks(ms.plan)
	defer ms.close()
	res = &LoRAMergeResult{Adapter: ad.Name, Plan: ms.plan}
	if err := ms.plan.Err(); err != nil {
		return res, err
	}
	ck, err := ReadHFCheckpoint(baseHF)
	if err != nil {
		return res, err
	}
	if ck.ModelType != "" && ck.ModelType != base.Template.Name {
		return res, fmt.Errorf("%s: model_type %q, but the adapter's template is %q", ck.ConfigPath, ck.ModelType, base.Template.Name)
	}
	// The HF adapter tensors, in memory (adapters are small beside the
	// weights).
	lora := map[string]tensor.Tensor{}
	ex := newExecutor(ms.plan, opts.Options, nil)
	ex.merged = ms.mi
	ex.spans = ms.rs.spans()
	err = ex.eachOutput(ctx, func(name string, t tensor.Tensor) error {
		c, err := tensor.New(t.DType, t.Shape, t.AppendTo(nil))
		if err != nil {
			return err
		}
		lora[name] = c
		return nil
	})
	ex.close()
	if err != nil {
		return res, err
	}
	type pair struct {
		a, b  tensor.Tensor
		scale float64
	}
	pairs := map[string]pair{}
	baseMeta := map[string]TensorMeta{}
	for _, t := range ck.Tensors {
		baseMeta[t.Name] = t
	}
	var names []string
	for name := range lora {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		mod, ab, _ := splitLoRAName(name)
		if ab != "A" {
			if _, ok := lora[mod+".lora_A.weight"]; !ok {
				return res, fmt.Errorf("lora-rank-mismatch: adapter tensor %s has no lora_A", name)
			}
			continue
		}
		a, b := lora[name], lora[mod+".lora_B.weight"]
		wn := mod + ".weight"
		w, ok := baseMeta[wn]
		if !ok {
			return res, fmt.Errorf("adapter tensor %s: the base checkpoint %s has no weight %s", name, baseHF, wn)
		}
		if len(a.Shape) != 2 || len(b.Shape) != 2 || len(w.Shape) != 2 || b.Shape[1] != a.Shape[0] || b.Shape[0] != w.Shape[0] || a.Shape[1] != w.Shape[1] {
			return res, fmt.Errorf("lora-rank-mismatch: %s %v · %s %v does not fit the base weight %s %v in %s", mod+".lora_B.weight", b.Shape, name, a.Shape, wn, w.Shape, w.File)
		}
		if !w.DType.IsFloat() || w.DType == tensor.F64 || w.DType == tensor.F8E4M3 || w.DType == tensor.F8E5M2 {
			return res, fmt.Errorf("base weight %s in %s is %v; merge needs an F32, BF16 or F16 weight", wn, w.File, w.DType)
		}
		pairs[wn] = pair{a: a, b: b, scale: ad.Scale(ad.mcaModuleOf(mod))}
		res.Merged = append(res.Merged, wn)
	}
	sort.Strings(res.Merged)
	out, err := newOutput(baseHF, dst, opts.Options)
	if err != nil {
		return res, err
	}
	defer out.Abort(&err)
	var total int64
	for _, t := range ck.Tensors {
		total += t.Size
	}
	tensors := 0
	for _, path := range ck.Files {
		if ctx.Err() != nil {
			return res, context.Cause(ctx)
		}
		f, err := safetensors.Open(path)
		if err != nil {
			return res, err
		}
		specs := make([]safetensors.Spec, 0, len(f.Tensors()))
		for _, ti := range f.Tensors() {
			specs = append(specs, ti.Spec())
		}
		name := filepath.Base(path)
		err = safetensors.WriteFile(out.Path(name), specs, f.Metadata(), func(w *safetensors.Writer) error {
			for _, ti := range w.Tensors() {
				src, _ := f.Lookup(ti.Name)
				data := f.Data(src)
				if p, ok := pairs[ti.Name]; ok {
					var err error
					if data, err = mergeLoRA(data, ti.DType, ti.Shape, p.a, p.b, p.scale); err != nil {
						return fmt.Errorf("merging into %s: %w", ti.Name, err)
					}
				}
				if err := w.WriteTensor(ti.Name, data); err != nil {
					return err
				}
				res.Written += ti.Size
				tensors++
				if opts.Progress != nil {
					opts.Progress(Progress{Bytes: res.Written, TotalBytes: total, Tensors: tensors, TotalTensors: len(ck.Tensors)})
				}
				_ = f.Release(src)
			}
			return nil
		})
		f.Close()
		if err != nil {
			return res, err
		}
		res.Files = append(res.Files, name)
	}
	if _, err := copyAux(baseHF, out.Dir(), func(name string) bool {
		return strings.HasSuffix(name, ".safetensors") || !strings.HasSuffix(name, ".json") && weightFile(name)
	}); err != nil {
		return res, err
	}
	return res, out.Commit()
}

// mergeLoRA returns the bytes of W + s·B·A (§1.5.6): the sum over the
// rank in float64, k ascending (products of bf16/f16/f32 values are exact
// in float64), the scaled delta added in float64, rounded to float32 and
// then to W's dtype, as torch's .to(float32).to(dtype) does.
func mergeLoRA(w []byte, dt tensor.DType, shape tensor.Shape, a, b tensor.Tensor, s float64) ([]byte, error) {
	O, I := int(shape[0]), int(shape[1])
	rho := int(a.Shape[0])
	af, err := tensor.AppendFloat64s(nil, a.AppendTo(nil), a.DType)
	if err != nil {
		return nil, err
	}
	bf, err := tensor.AppendFloat64s(nil, b.AppendTo(nil), b.DType)
	if err != nil {
		return nil, err
	}
	es := dt.Size()
	var wf []float64
	out := make([]byte, 0, len(w))
	acc := make([]float64, I)
	row := make([]float32, I)
	for i := range O {
		clear(acc)
		for k := range rho {
			bik := bf[i*rho+k]
			row := af[k*I : (k+1)*I]
			for j, akj := range row {
				acc[j] += float64(bik * akj) // explicit conversion: no FMA fusion
			}
		}
		// W decoded a row at a time: float64 of the whole weight would
		// take four times its bf16 bytes.
		if wf, err = tensor.AppendFloat64s(wf[:0], w[i*I*es:(i+1)*I*es], dt); err != nil {
			return nil, err
		}
		for j := range I {
			row[j] = float32(wf[j] + float64(acc[j]*s))
		}
		if out, err = tensor.AppendFloat32sAs(out, row, dt); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// MergeLoRA merges one adapter of the ROLL LoRA checkpoint in save into
// the checkpoint in baseDir, HF or MCA, and writes dst as HF, or, when
// toMCA is set, as an MCA checkpoint in opts.Layout (what ROLL's
// save_merged_model produces: plain names, no adapter files). An MCA base
// is converted to HF first (in a temporary folder beside dst); the merge
// itself is always MergeLoRAIntoHF's, and the MCA output is the merged HF
// weights converted by ConvertHFToMCA, so both outputs carry the same
// bytes (every LoRA rule is a row operation, §1.5.6).
func MergeLoRA(ctx context.Context, base *Model, save, baseDir, dst string, toMCA bool, opts LoRAOptions) (*LoRAMergeResult, error) {
	if !IsMCA(baseDir) && !toMCA {
		return MergeLoRAIntoHF(ctx, base, save, baseDir, dst, opts)
	}
	if err := opts.Layout.Check(); err != nil {
		return nil, err
	}
	if _, err := checkDest(baseDir, dst, opts.Force, opts.Notice); err != nil {
		return nil, err
	}
	tmp, err := workDir(filepath.Dir(filepath.Clean(dst)), ".rolltpl-lora-merge-", "LoRA merge", opts.Notice)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	hf := baseDir
	inner := Options{Notice: opts.Notice}
	if IsMCA(baseDir) {
		hf = filepath.Join(tmp, "base-hf")
		if _, err := ConvertMCAToHF(ctx, base, baseDir, hf, inner); err != nil {
			return nil, fmt.Errorf("base %s -> HF: %w", baseDir, err)
		}
	}
	if !toMCA {
		return MergeLoRAIntoHF(ctx, base, save, hf, dst, opts)
	}
	merged := filepath.Join(tmp, "merged-hf")
	o := opts
	o.Options = inner
	res, err := MergeLoRAIntoHF(ctx, base, save, hf, merged, o)
	if err != nil {
		return res, err
	}
	mo := opts.Options
	mo.NameOrPath = baseDir
	r, err := ConvertHFToMCA(ctx, base, merged, dst, mo)
	if err != nil {
		return res, fmt.Errorf("merged weights -> MCA: %w", err)
	}
	res.Written, res.Files = r.Written, r.Files
	return res, nil
}
