package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/stdlib"
)

func runConvert(e *env, args []string) int {
	c := lookup("convert")
	fs := flagSet(e, c)
	from := fs.String("from", "", "source checkpoint directory (HF, or MCA when it has an mca_config.json)")
	to := fs.String("to", "", "destination directory (created; refused if not empty unless --force)")
	template := fs.String("template", "", "template file or folder (default: the stdlib template for the checkpoint's model type)")
	modelType := fs.String("model-type", "", "model type whose template to use (default: config.json model_type or mca_config.json hf_model_type)")
	toHF := fs.Bool("to-hf", false, "require an MCA source and convert it to HF (the direction is otherwise detected)")
	quiet := fs.BoolP("quiet", "q", false, "no progress bar and no summary")
	force := fs.Bool("force", false, "replace a destination that is not empty")
	megatronLlama := fs.Bool("megatron-llama", false, "resolve names for megatron-llama-core (ROLL's is_megatron_llama())")
	maxShard := fs.String("max-shard-size", "5GB", "HF shard size limit (MCA -> HF), e.g. 5GB, 500MB, 1GiB")
	sync := fs.Bool("sync", false, "fsync every output file before the output is renamed into place")
	ranksFlag := fs.String("ranks", "", "write only these rank files (HF -> MCA), e.g. 0-3,7: indices in ROLL's rank-file order (tp, then pp, then ep), for one job of a multi-job conversion into a shared --to; \"shared\" is --finalize")
	finalize := fs.Bool("finalize", false, "last job of a multi-job conversion: check that every rank file is in --to, then write mca_config.json, the tokenizer files and latest_checkpointed_iteration.txt")
	var layout layoutFlags
	layout.add(fs)
	if ok, code := parse(e, c.name, fs, args); !ok {
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
	l := layout.layout()
	if err := l.Check(); err != nil {
		fmt.Fprintf(e.stderr, "rolltplc convert: %v\n", err)
		return ExitError
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
	mt := *modelType
	if mt == "" {
		if mt, err = detectModelType(*from, isMCA); err != nil {
			fmt.Fprintf(e.stderr, "rolltplc convert: %v\n", err)
			return ExitError
		}
	}
	m, ok := loadModel(e, "convert", *template, mt, map[string]bool{"megatron_llama": *megatronLlama})
	if !ok {
		return ExitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dir := "HF -> MCA"
	if isMCA {
		dir = "MCA -> HF"
	}
	bar := newProgress(e, *quiet, dir)
	opts := exec.Options{Force: *force, Layout: l, Progress: bar.update, MaxShardSize: shardSize, Sync: *sync,
		Ranks: ranks, Finalize: *finalize}
	start := time.Now()
	var res *exec.Result
	if isMCA {
		res, err = exec.ConvertMCAToHF(ctx, m, *from, *to, opts)
	} else {
		res, err = exec.ConvertHFToMCA(ctx, m, *from, *to, opts)
	}
	bar.finish()
	if err != nil {
		reportConvertError(e, "convert", res, err)
		return ExitError
	}
	if !*quiet {
		for _, p := range res.Plan.Problems {
			fmt.Fprintf(e.stderr, "rolltplc convert: %s [%s]: %s\n", p.Severity, p.Kind, p.Error())
		}
		d := time.Since(start)
		fmt.Fprintf(e.stderr, "%s (%s): %d tensors, %s in %s (%s/s) -> %s\n", dir, m.Template.Name,
			res.Plan.NumOutputs(), exec.HumanBytes(res.Written), d.Round(time.Millisecond),
			exec.HumanBytes(int64(float64(res.Written)/max(d.Seconds(), 1e-9))), *to)
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

// detectModelType reads the model type of a checkpoint: config.json's
// model_type, or mca_config.json's hf_model_type.
func detectModelType(dir string, isMCA bool) (string, error) {
	if isMCA {
		path := filepath.Join(dir, exec.MCAConfigName)
		text, err := exec.ReadConfigFile(path)
		if err != nil {
			return "", err
		}
		mc, err := exec.ParseMCAConfig(path, text)
		if err != nil {
			return "", err
		}
		mt, ok := mc.String("hf_model_type")
		if !ok || mt == "" {
			return "", fmt.Errorf("%s: no hf_model_type; pass --model-type", path)
		}
		return mt, nil
	}
	path, _, obj, err := exec.ReadHFConfig(dir)
	if err != nil {
		return "", err
	}
	v, _ := obj.Get("model_type")
	mt, _ := v.(string)
	if mt == "" {
		return "", fmt.Errorf("%s: no model_type; pass --model-type", path)
	}
	return mt, nil
}

// loadModel compiles the template for modelType: from templatePath (a
// file or folder) when given, else the stdlib template of that name. With
// a path holding a single template of another name, that template is
// used. Diagnostics of a failed compilation are printed.
func loadModel(e *env, cmd, templatePath, modelType string, flags map[string]bool) (*exec.Model, bool) {
	var paths []string
	if templatePath != "" {
		paths = []string{templatePath}
	} else {
		if _, err := fs.Stat(stdlib.Templates(), modelType+".rolltpl"); err != nil {
			fmt.Fprintf(e.stderr, "rolltplc %s: the stdlib has no template for model type %q; pass --template\n", cmd, modelType)
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
	if prog.Template(modelType) == nil && templatePath != "" && len(prog.Templates) == 1 {
		modelType = prog.Templates[0].Name
	}
	m, err := exec.NewModel(prog, modelType, flags)
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc %s: %v\n", cmd, err)
		return nil, false
	}
	return m, true
}

// parseSize parses a size such as 5GB, 500MB, 2GiB or a byte count
// (decimal units as transformers' max_shard_size, binary with "iB").
func parseSize(s string) (int64, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	mul := 1.0
	for _, unit := range []struct {
		suffix string
		mul    float64
	}{{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(u, unit.suffix) {
			u, mul = strings.TrimSpace(strings.TrimSuffix(u, unit.suffix)), unit.mul
			break
		}
	}
	f, err := strconv.ParseFloat(u, 64)
	if err != nil || f <= 0 || f*mul > 1<<62 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(f * mul), nil
}

// progress draws a progress bar on stderr when it is a terminal: bytes
// done, rate and ETA, at most ten times a second.
type progress struct {
	w      io.Writer
	label  string
	start  time.Time
	last   time.Time
	drawn  bool
	active bool
}

func newProgress(e *env, quiet bool, label string) *progress {
	p := &progress{w: e.stderr, label: label, start: time.Now()}
	p.active = !quiet && isTerminal(e.stderr)
	return p
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// update is an exec.Options.Progress callback; nil-safe.
func (p *progress) update(done, total int64) {
	if p == nil || !p.active {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = now
	fmt.Fprint(p.w, "\r"+p.line(done, total, now))
	p.drawn = true
}

func (p *progress) line(done, total int64, now time.Time) string {
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * width)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	el := now.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	eta := "--"
	if rate > 0 && done < total {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	} else if done >= total {
		eta = "0s"
	}
	return fmt.Sprintf("%s [%s] %s / %s  %s/s  ETA %s ", p.label, bar, exec.HumanBytes(done), exec.HumanBytes(total),
		exec.HumanBytes(int64(rate)), eta)
}

func (p *progress) finish() {
	if p != nil && p.drawn {
		fmt.Fprintln(p.w)
	}
}
