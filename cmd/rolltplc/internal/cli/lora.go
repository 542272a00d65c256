package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/rolltpl/rolltpl/runtime/exec"
)

// loraFlags are convert's LoRA adapter flags (lora-fp8.md §1.5.1).
type loraFlags struct {
	adapter, dtype, base, fuse *string
	merge                      *bool
}

// addLoRAFlags registers the LoRA flags on fs.
func addLoRAFlags(fs *pflag.FlagSet) *loraFlags {
	return &loraFlags{
		adapter: fs.String("adapter", "", "LoRA checkpoint: convert (or merge) only the adapter folder of this name"),
		dtype:   fs.String("lora-dtype", "f32", "LoRA export: adapter tensor dtype, keep, f32 (what ROLL's PEFT export writes), bf16 or f16"),
		base:    fs.String("base", "", "LoRA merge: the base checkpoint (HF or MCA) the adapter is merged into (with --merge); PEFT import: the HF base"),
		merge:   fs.Bool("merge", false, "LoRA checkpoint: merge the adapter into --base and write merged weights (HF; MCA when --base is MCA or layout flags are given) instead of a PEFT adapter"),
		fuse:    fs.String("lora-fuse", "exact", "PEFT import: the A tensors of fused modules (q/k/v, gate/up) must be equal (exact) or are stacked (expand)"),
	}
}

var loraFlagNames = []string{"adapter", "lora-dtype", "base", "merge", "lora-fuse"}

// refuseLoRAFlags fails when a LoRA flag is given for a source that is
// not a LoRA checkpoint.
func refuseLoRAFlags(e *env, fs *pflag.FlagSet, from string) (int, bool) {
	return notApplicable(e, "convert", fs, from+" is not a ROLL LoRA checkpoint (an adapter folder with "+exec.AdapterConfigName+" and an MCA checkpoint, or a folder of them)", loraFlagNames...)
}

// runLoRAConvert exports (or merges) the ROLL LoRA checkpoint in from.
func runLoRAConvert(ctx context.Context, e *env, fs *pflag.FlagSet, lf *loraFlags, layout *layoutFlags, from, to, template, modelType string, flags map[string]bool, force, quiet, sync, toHF bool) int {
	toMCA := false
	if *lf.merge {
		// Merged output: MCA when the base is MCA (unless --to-hf) or a
		// layout flag is given, else HF.
		for _, n := range layoutFlagNames() {
			toMCA = toMCA || fs.Changed(n)
		}
		if toMCA && toHF {
			return usageError(e, "convert", "--to-hf and layout flags: a merged HF output has no layout")
		}
		toMCA = toMCA || exec.IsMCA(*lf.base) && !toHF
	} else {
		if code, ok := notApplicable(e, "convert", fs, "does not apply to a LoRA export (its layout is the one its mca_config.json records)", layoutFlagNames()...); !ok {
			return code
		}
		if code, ok := notApplicable(e, "convert", fs, "applies to --merge only", "to-hf"); !ok {
			return code
		}
	}
	l := layout.layout()
	if err := l.Check(); err != nil {
		fmt.Fprintf(e.stderr, "rolltplc convert: %v\n", err)
		return ExitError
	}
	if code, ok := notApplicable(e, "convert", fs, "does not apply to a LoRA checkpoint", "lora-fuse", "ranks", "finalize", "dequantize", "quantize", "scales", "max-shard-size"); !ok {
		return code
	}
	if *lf.merge != (*lf.base != "") {
		return usageError(e, "convert", "--merge and --base BASE go together (merge the adapter into the HF checkpoint BASE)")
	}
	ads, err := exec.FindLoRAAdapters(from, *lf.adapter)
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc convert: %v\n", err)
		return ExitError
	}
	m, ok := selectModel(e, "convert", ads[0].Dir, true, template, modelType, flags)
	if !ok {
		return ExitError
	}
	what := "LoRA -> PEFT"
	if *lf.merge {
		what = "LoRA merge"
	}
	bar := newProgress(e, quiet, what)
	opts := exec.LoRAOptions{Options: exec.Options{Force: force, Progress: bar.update, Sync: sync, Notice: e.notice("convert"), Layout: l},
		Adapter: *lf.adapter, DType: *lf.dtype}
	start := time.Now()
	if *lf.merge {
		res, err := exec.MergeLoRA(ctx, m, from, *lf.base, to, toMCA, opts)
		bar.finish()
		if err != nil {
			var r *exec.Result
			if res != nil {
				r = &exec.Result{Plan: res.Plan}
			}
			reportConvertError(e, "convert", r, err)
			return ExitError
		}
		if !quiet {
			fmt.Fprintf(e.stderr, "%s (%s): adapter %s merged into %d weights of %s, %s in %s -> %s\n", what, m.Template.Name,
				res.Adapter, len(res.Merged), *lf.base, exec.HumanBytes(res.Written), time.Since(start).Round(time.Millisecond), to)
		}
		return ExitOK
	}
	res, err := exec.ConvertLoRAToPEFT(ctx, m, from, to, opts)
	bar.finish()
	if err != nil {
		var r *exec.Result
		if res != nil && len(res.Adapters) > 0 {
			r = &exec.Result{Plan: res.Adapters[len(res.Adapters)-1].Plan}
		}
		reportConvertError(e, "convert", r, err)
		return ExitError
	}
	if !quiet {
		for _, a := range res.Adapters {
			dir := to
			if a.Dir != "" {
				dir += "/" + a.Dir
			}
			fmt.Fprintf(e.stderr, "%s (%s): adapter %s: %d tensors, %s, modules %v, rank_pattern %v -> %s\n", what, m.Template.Name,
				a.Name, a.Tensors, exec.HumanBytes(a.Bytes), a.Modules, a.RankPattern, dir)
		}
		fmt.Fprintf(e.stderr, "%s: %d adapters in %s\n", what, len(res.Adapters), time.Since(start).Round(time.Millisecond))
	}
	return ExitOK
}

// runPEFTImport imports the PEFT adapter in from into a ROLL adapter
// folder to, in the layout of the layout flags, for the HF base --base.
func runPEFTImport(ctx context.Context, e *env, fs *pflag.FlagSet, lf *loraFlags, l exec.Layout, from, to, template, modelType string, flags map[string]bool, force, quiet, sync bool) int {
	if code, ok := notApplicable(e, "convert", fs, "does not apply to a PEFT import", "adapter", "lora-dtype", "merge", "to-hf", "ranks", "finalize", "dequantize", "quantize", "scales", "max-shard-size"); !ok {
		return code
	}
	if *lf.base == "" {
		return usageError(e, "convert", "%s is a PEFT adapter: importing it needs --base HF (the base checkpoint's config.json gives the model and mca_config.json)", from)
	}
	cm, err := exec.ReadCheckpointModel(*lf.base, false)
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc convert: %v\n", err)
		return ExitError
	}
	m, ok := selectModelOf(e, "convert", cm, template, modelType, flags)
	if !ok {
		return ExitError
	}
	bar := newProgress(e, quiet, "PEFT -> LoRA")
	start := time.Now()
	res, err := exec.ImportPEFT(ctx, m, from, *lf.base, to, exec.LoRAImportOptions{Fuse: *lf.fuse, BaseConfig: cm.HFConfig,
		Options: exec.Options{Force: force, Progress: bar.update, Sync: sync, Notice: e.notice("convert"), Layout: l}})
	bar.finish()
	if err != nil {
		reportConvertError(e, "convert", res, err)
		return ExitError
	}
	if !quiet {
		fmt.Fprintf(e.stderr, "PEFT -> LoRA (%s): %d tensors, %s in %s -> %s\n", m.Template.Name, res.Plan.NumOutputs(),
			exec.HumanBytes(res.Written), time.Since(start).Round(time.Millisecond), to)
	}
	return ExitOK
}

// checkLoRA implements `rolltplc check --checkpoint SAVE` for a ROLL LoRA
// checkpoint: the header-only plan of every adapter's export (rank files,
// tensors, problems) and each target module's LoRA rule.
func checkLoRA(e *env, dir string, paths []string, format string) int {
	fail := func(err error) int {
		fmt.Fprintf(e.stderr, "rolltplc check: %v\n", err)
		return ExitError
	}
	ads, err := exec.FindLoRAAdapters(dir, "")
	if err != nil {
		return fail(err)
	}
	cm, err := exec.ReadCheckpointModel(ads[0].Dir, true)
	if err != nil {
		return fail(err)
	}
	template := ""
	if len(paths) == 1 {
		template = paths[0]
	} else if len(paths) > 1 {
		return fail(fmt.Errorf("--checkpoint takes at most one template file or folder, got %d", len(paths)))
	}
	m, ok := loadModel(e, "check", template, cm.ModelType, nil)
	if !ok {
		return ExitError
	}
	plans, err := exec.PlanLoRA(m, dir, "")
	if err != nil {
		return fail(err)
	}
	code := ExitOK
	if format == "json" {
		type adapterJSON struct {
			Adapter string   `json:"adapter"`
			R       int64    `json:"r"`
			Alpha   float64  `json:"lora_alpha"`
			Files   int      `json:"files"`
			Rules   []string `json:"rules"`
			exec.Report
		}
		var out []adapterJSON
		for _, p := range plans {
			out = append(out, adapterJSON{Adapter: p.Adapter.Name, R: p.Adapter.R, Alpha: p.Adapter.Alpha, Files: len(p.Files), Rules: p.Rules, Report: p.Plan.Report()})
			if p.Plan.Err() != nil {
				code = ExitError
			}
		}
		b, _ := json.MarshalIndent(map[string]any{"checkpoint": dir, "lora": out}, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
		return code
	}
	for _, p := range plans {
		fmt.Fprintf(e.stdout, "%s: LoRA adapter %s (r %d, lora_alpha %g, targets %v): %s\n", dir, p.Adapter.Name, p.Adapter.R, p.Adapter.Alpha,
			p.Adapter.Targets, plural(len(p.Files), "rank file"))
		for _, r := range p.Rules {
			fmt.Fprintf(e.stdout, "  rule %s\n", r)
		}
		p.Plan.WriteSummary(e.stdout)
		if p.Plan.Err() != nil {
			code = ExitError
		}
	}
	return code
}

// verifyLoRA implements `rolltplc verify SAVE` for a ROLL LoRA
// checkpoint: every adapter exported to PEFT and imported back, rank file
// by rank file.
func verifyLoRA(ctx context.Context, e *env, dir, template, modelType, tmpDir string, quiet bool) int {
	ads, err := exec.FindLoRAAdapters(dir, "")
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc verify: %v\n", err)
		return ExitError
	}
	m, ok := selectModel(e, "verify", ads[0].Dir, true, template, modelType, nil)
	if !ok {
		return ExitError
	}
	start := time.Now()
	rep, err := exec.VerifyLoRA(ctx, m, dir, "", tmpDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc verify: %v\n", err)
		return ExitError
	}
	if !rep.OK() {
		fmt.Fprintf(e.stdout, "%s differ after LoRA -> PEFT -> LoRA:\n", plural(len(rep.Diffs), "tensor"))
		for _, d := range rep.Diffs {
			fmt.Fprintf(e.stdout, "  %s\n", d)
		}
		return ExitError
	}
	if !quiet {
		fmt.Fprintf(e.stdout, "%s (%s): adapters %v: %d rank-file tensors identical after LoRA -> PEFT -> LoRA (%s)\n", dir, m.Template.Name,
			rep.Adapters, rep.Compared, time.Since(start).Round(time.Millisecond))
	}
	return ExitOK
}
