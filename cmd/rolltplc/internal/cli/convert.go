package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/stdlib"
)

func runConvert(e *env, args []string) int {
	// Signals first: one during start-up cancels the conversion too.
	ctx, stop := signalContext()
	defer stop()
	c := lookup("convert")
	fs := flagSet(e, c)
	from := fs.String("from", "", "source checkpoint directory (HF, or MCA when it has an mca_config.json)")
	to := fs.String("to", "", "destination folder (created, or an empty folder written through; refused if not empty unless --force)")
	template := fs.String("template", "", "template file or folder (default: the stdlib template for the checkpoint's model type; MCA -> HF: the one mca_config.json records)")
	modelType := fs.String("model-type", "", "model type of a checkpoint that names none (config.json model_type, mca_config.json hf_model_type); must agree with it otherwise")
	toHF := fs.Bool("to-hf", false, "require an MCA source and convert it to HF (the direction is otherwise detected)")
	quiet := fs.BoolP("quiet", "q", false, "no progress output (bar or log lines) and no summary")
	force := fs.Bool("force", false, "replace the checkpoint in a non-empty --to (only a checkpoint's own files; any other file is refused, named)")
	megatronLlama := fs.Bool("megatron-llama", false, "resolve names for megatron-llama-core (ROLL's is_megatron_llama())")
	maxShard := fs.String("max-shard-size", "5GB", "HF shard size limit (MCA -> HF), e.g. 5GB, 500MB, 1GiB")
	sync := fs.Bool("sync", false, "fsync every output file before the output is renamed into place")
	ranksFlag := fs.String("ranks", "", "write only these rank files (HF -> MCA), e.g. 0-3,7: indices in ROLL's rank-file order (tp, then pp, then ep), for one job of a multi-job conversion into a shared --to (a finalized --to needs --force, which removes latest_checkpointed_iteration.txt first); \"shared\" is --finalize")
	finalize := fs.Bool("finalize", false, "last job of a multi-job conversion: check that every rank file is in --to, complete and of this conversion (naming every one that is not), then write mca_config.json, the tokenizer files and latest_checkpointed_iteration.txt")
	noMTP := fs.Bool("no-mtp", false, "leave multi-token-prediction (MTP) layers out: skip their weights (counted in the summary) and write a config without them (MCA mtp_num_layers null, HF 0)")
	dequant := fs.String("dequantize", "bf16", "FP8 block-quantized source (HF -> MCA): dequantize its weights to bf16, f16 or f32, or refuse")
	quantize := fs.String("quantize", "", "MCA -> HF: \"fp8\" re-quantizes the weights that were FP8 (recorded in "+exec.FP8SidecarName+") and restores quantization_config")
	scales := fs.String("scales", "reuse", "with --quantize fp8: reuse the source's scales (byte-exact for unchanged weights) or recompute them (amax/448 per block)")
	var layout layoutFlags
	layout.add(fs)
	lora := addLoRAFlags(fs)
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	fp8Opts, code, ok := fp8Flags(e, fs, *dequant, *quantize, *scales)
	if !ok {
		return code
	}
	if *from == "" || *to == "" || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "rolltplc convert: --from and --to are required, and no other arguments")
		fs.Usage()
		return ExitUsage
	}
	shardSize, err := parseSize(*maxShard)
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc convert: --max-shard-size: %v\n", err)
		return ExitUsage
	}
	var ranks []int
	if *ranksFlag == "shared" {
		*finalize = true
	} else if *ranksFlag != "" {
		if ranks, err = parseRanks(*ranksFlag); err != nil {
			fmt.Fprintf(e.stderr, "rolltplc convert: --ranks: %v\n", err)
			return ExitUsage
		}
		if *finalize {
			fmt.Fprintln(e.stderr, "rolltplc convert: --ranks LIST and --finalize are separate jobs")
			return ExitUsage
		}
	}
	if exec.IsLoRA(*from) {
		return runLoRAConvert(ctx, e, fs, lora, &layout, *from, *to, *template, *modelType, map[string]bool{"megatron_llama": *megatronLlama}, *force, *quiet, *sync, *toHF)
	}
	l := layout.layout()
	if err := l.Check(); err != nil {
		fmt.Fprintf(e.stderr, "rolltplc convert: %v\n", err)
		return ExitError
	}
	if exec.IsPEFT(*from) {
		return runPEFTImport(ctx, e, fs, lora, l, *from, *to, *template, *modelType, map[string]bool{"megatron_llama": *megatronLlama}, *force, *quiet, *sync)
	}
	if code, ok := refuseLoRAFlags(e, fs, *from); !ok {
		return code
	}
	isMCA := exec.IsMCA(*from)
	if *toHF && !isMCA {
		fmt.Fprintf(e.stderr, "rolltplc convert: --to-hf: %s has no %s, so it is not an MCA checkpoint\n", *from, exec.MCAConfigName)
		return ExitError
	}
	if isMCA && (ranks != nil || *finalize) {
		fmt.Fprintln(e.stderr, "rolltplc convert: --ranks and --finalize split HF -> MCA conversions; MCA -> HF runs as one job")
		return ExitUsage
	}
	if code, ok := convertFlagsApply(e, fs, *from, isMCA); !ok {
		return code
	}
	cm, err := exec.ReadCheckpointModel(*from, isMCA)
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc convert: %v\n", err)
		return ExitError
	}
	m, ok := selectModelOf(e, "convert", cm, *template, *modelType, map[string]bool{"megatron_llama": *megatronLlama})
	if !ok {
		return ExitError
	}
	m.NoMTP = *noMTP
	dir := "HF -> MCA"
	if isMCA {
		dir = "MCA -> HF"
	}
	bar := newProgress(e, *quiet, dir)
	opts := exec.Options{Force: *force, Layout: l, Progress: bar.update, MaxShardSize: shardSize, Sync: *sync,
		Ranks: ranks, Finalize: *finalize, Notice: e.notice("convert"), Dequantize: fp8Opts.Dequantize, Quantize: fp8Opts.Quantize}
	start := time.Now()
	res, err := exec.Convert(ctx, m, cm, *to, opts)
	bar.finish()
	if err != nil {
		reportConvertError(e, "convert", res, err)
		return ExitError
	}
	if !*quiet {
		kept, omitted := exec.CapProblems(res.Plan.Problems)
		for _, p := range kept {
			fmt.Fprintf(e.stderr, "rolltplc convert: %s [%s]: %s\n", p.Severity, p.Kind, p.Error())
		}
		for _, o := range omitted {
			fmt.Fprintf(e.stderr, "rolltplc convert: ... and %d more [%s]\n", o.Count, o.Kind)
		}
		if f := res.Plan.FP8; f != nil && f.Weights > 0 {
			fmt.Fprintln(e.stderr, f.Summary())
		}
		fp8Note(e, *from, isMCA, fp8Opts.Quantize != nil)
		d := time.Since(start)
		fmt.Fprintf(e.stderr, "%s (%s): %d tensors, %s in %s (%s/s) -> %s\n", dir, m.Template.Name,
			res.Plan.NumOutputs(), exec.HumanBytes(res.Written), d.Round(time.Millisecond),
			exec.HumanBytes(int64(float64(res.Written)/max(d.Seconds(), 1e-9))), *to)
		if r := res.Plan.Report(); r.SkippedMTP > 0 {
			fmt.Fprintf(e.stderr, "--no-mtp: %s of MTP layers left out (%s)\n", plural(r.SkippedMTP, "tensor"), exec.HumanBytes(r.SkippedMTPBytes))
		}
	}
	return ExitOK
}

// parseRanks parses a rank list such as "0-3,7" (indices and inclusive
// ranges, comma-separated).
func parseRanks(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil || a < 0 {
			return nil, fmt.Errorf("bad rank %q in %q", part, s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil || b < a {
				return nil, fmt.Errorf("bad rank range %q in %q", part, s)
			}
		}
		if b-a >= 1<<20 {
			return nil, fmt.Errorf("rank range %q in %q is too large", part, s)
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}

// reportConvertError prints a failed conversion: every problem of a
// refused plan, or the error.
func reportConvertError(e *env, cmd string, res *exec.Result, err error) {
	var pe *exec.PlanError
	if errors.As(err, &pe) && res != nil && res.Plan != nil {
		fmt.Fprintf(e.stderr, "rolltplc %s: %s; nothing was written:\n", cmd, plural(len(pe.Problems), "problem"))
		exec.WriteProblems(e.stderr, pe.Problems)
		return
	}
	fmt.Fprintf(e.stderr, "rolltplc %s: %v\n", cmd, err)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// layoutFlags are the parallel-layout flags of convert and check.
type layoutFlags struct {
	tp, pp, vpp, ep, etp *int
	groupedGEMM          *bool
	legacyGrouped        *bool
	impl                 *string
	accountEmb           *bool
	accountLoss          *bool
}

func (f *layoutFlags) add(fs interface {
	Int(name string, value int, usage string) *int
	Bool(name string, value bool, usage string) *bool
	String(name string, value string, usage string) *string
}) {
	f.tp = fs.Int("tp", 1, "tensor parallel size (HF -> MCA; MCA -> HF reads the layout from mca_config.json)")
	f.pp = fs.Int("pp", 1, "pipeline parallel size")
	f.vpp = fs.Int("vpp", 1, "virtual pipeline parallel size (stages per pipeline rank)")
	f.ep = fs.Int("ep", 1, "expert parallel size")
	f.etp = fs.Int("etp", 0, "expert tensor parallel size; must divide --tp (0: same as --tp)")
	f.groupedGEMM = fs.Bool("moe-grouped-gemm", false, "store experts as Transformer Engine grouped GEMM weights (linear_fc1.weight<k>)")
	f.legacyGrouped = fs.Bool("moe-legacy-grouped-gemm", false, "with --moe-grouped-gemm: Megatron's legacy grouped GEMM layout (mlp.experts.weight1/weight2)")
	f.impl = fs.String("transformer-impl", "transformer_engine", "transformer_impl: transformer_engine or local")
	f.accountEmb = fs.Bool("account-for-embedding", false, "count the embedding as a layer of the first pipeline stage (account_for_embedding_in_pipeline_split)")
	f.accountLoss = fs.Bool("account-for-loss", false, "count the loss as a layer of the last pipeline stage (account_for_loss_in_pipeline_split)")
}

func (f *layoutFlags) layout() exec.Layout {
	return exec.Layout{TP: *f.tp, PP: *f.pp, VPP: *f.vpp, EP: *f.ep, ETP: *f.etp,
		MoEGroupedGEMM: *f.groupedGEMM, LegacyGroupedGEMM: *f.legacyGrouped, TransformerImpl: *f.impl,
		AccountForEmbedding: *f.accountEmb, AccountForLoss: *f.accountLoss}
}

// selectModel picks and compiles the template that converts the
// checkpoint in dir, from the --template and --model-type flags and what
// the checkpoint records:
//
//   - The model type is the checkpoint's (config.json model_type,
//     mca_config.json hf_model_type). --model-type names it for a
//     checkpoint that records none; one that disagrees with the
//     checkpoint's is an error (the template for another model type
//     would convert the weights as that model's, and rewrite model_type).
//   - Without --template, the stdlib template of the model type is used.
//     An MCA checkpoint converted by rolltpl records its template's name
//     and digest in mca_config.json: the stdlib template must be that
//     one (same name, same digest); if it changed since, or the template
//     was a user's, the error asks for --template.
//   - With --template PATH, the template of PATH named after the model
//     type is used (with no model type known, the only template of
//     PATH); PATH having none of that name is an error. A template that
//     differs from the recorded one is used with a warning: passing it is
//     how the user says which template to trust.
//
// Errors and diagnostics are printed; ok is false after one.
func selectModel(e *env, cmd, dir string, isMCA bool, templatePath, modelType string, flags map[string]bool) (*exec.Model, bool) {
	cm, err := exec.ReadCheckpointModel(dir, isMCA)
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc %s: %v\n", cmd, err)
		return nil, false
	}
	return selectModelOf(e, cmd, cm, templatePath, modelType, flags)
}

// selectModelOf is selectModel for the checkpoint cm was read from.
func selectModelOf(e *env, cmd string, cm exec.CheckpointModel, templatePath, modelType string, flags map[string]bool) (*exec.Model, bool) {
	fail := func(format string, args ...any) (*exec.Model, bool) {
		fmt.Fprintf(e.stderr, "rolltplc %s: "+format+"\n", append([]any{cmd}, args...)...)
		return nil, false
	}
	dir := cm.Dir
	mt, from := cm.ModelType, cm.From()
	if modelType != "" {
		if mt != "" && mt != modelType {
			return fail("--model-type %q conflicts with %s %q: the template must be for the checkpoint's model type (correct the checkpoint's if it is wrong)", modelType, from, mt)
		}
		mt, from = modelType, "--model-type"
	}
	var recName string
	recorded := false
	if cm.MCA != nil {
		recName, _, recorded = cm.MCA.RecordedTemplate()
	}
	if mt == "" && recorded {
		mt, from = recName, cm.Path+"'s "+exec.TemplateKey
	}
	if mt == "" && templatePath == "" {
		return fail("%s: no %s; pass --model-type", cm.Path, cm.Key)
	}
	if recorded && recName != mt {
		return fail("%s records the template %q, but the model type is %q (%s); pass --template with the template the checkpoint was converted with", cm.Path, recName, mt, from)
	}
	if templatePath == "" {
		if _, err := fs.Stat(stdlib.Templates(), mt+".rolltpl"); err != nil {
			if recorded {
				return fail("%s was converted with the template %q, which is not in the stdlib (a template of your own?); pass --template with it", dir, recName)
			}
			return fail("the stdlib has no template for model type %q (%s); pass --template", mt, from)
		}
	}
	m, ok := loadModelFrom(e, cmd, templatePath, mt, from, flags)
	if !ok {
		return nil, false
	}
	if recorded {
		if err := exec.CheckRecordedTemplate(m, cm.MCA, cm.Path); err != nil {
			if templatePath == "" {
				return fail("%v; the stdlib template %q is not the one the checkpoint was converted with: pass --template with that one", err, m.Template.Name)
			}
			fmt.Fprintf(e.stderr, "rolltplc %s: warning: %v; converting with %s as given\n", cmd, err, templatePath)
		}
	}
	return m, true
}

// loadModel compiles the template for modelType: from templatePath (a
// file or folder) when given, else the stdlib template of that name.
// Diagnostics of a failed compilation are printed.
func loadModel(e *env, cmd, templatePath, modelType string, flags map[string]bool) (*exec.Model, bool) {
	return loadModelFrom(e, cmd, templatePath, modelType, "the checkpoint's model type", flags)
}

// loadModelFrom is loadModel; from says where modelType comes from, for
// messages. With templatePath and no modelType, the single template of
// templatePath is used. A templatePath without a template named
// modelType is an error (it would convert the checkpoint as another
// model).
func loadModelFrom(e *env, cmd, templatePath, modelType, from string, flags map[string]bool) (*exec.Model, bool) {
	var paths []string
	if templatePath != "" {
		paths = []string{templatePath}
	} else {
		if _, err := fs.Stat(stdlib.Templates(), modelType+".rolltpl"); err != nil {
			fmt.Fprintf(e.stderr, "rolltplc %s: the stdlib has no template for model type %q; %s\n", cmd, modelType, templateHint(cmd))
			return nil, false
		}
		paths = []string{resolve.LibPrefix + modelType + ".rolltpl"}
	}
	res, failed := compileWith(e, paths, nil, nil)
	if res == nil {
		return nil, false
	}
	if failed {
		printDiags(e, res.Diags, res.Sources(), "text")
		return nil, false
	}
	prog := res.Program
	if templatePath != "" && prog.Template(modelType) == nil {
		var names []string
		for _, t := range prog.Templates {
			names = append(names, fmt.Sprintf("%q", t.Name))
		}
		switch {
		case modelType == "" && len(prog.Templates) == 1:
			modelType = prog.Templates[0].Name
		case modelType == "":
			fmt.Fprintf(e.stderr, "rolltplc %s: %s has templates for %s; %s\n", cmd, templatePath, strings.Join(names, ", "), modelTypeHint(cmd))
			return nil, false
		default:
			fmt.Fprintf(e.stderr, "rolltplc %s: %s has no template for model type %q (%s), only for %s: a template converts one model type\n",
				cmd, templatePath, modelType, from, strings.Join(names, ", "))
			return nil, false
		}
	}
	m, err := exec.NewModel(prog, modelType, flags)
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc %s: %v\n", cmd, err)
		return nil, false
	}
	return m, true
}
