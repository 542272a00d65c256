package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/rolltpl/rolltpl/runtime/exec"
)

func runVerify(e *env, args []string) int {
	// Signals first: one during start-up cancels the conversion too.
	ctx, stop := signalContext()
	defer stop()
	c := lookup("verify")
	fs := flagSet(e, c)
	template := fs.String("template", "", "template file or folder (default: the stdlib template for config.json's model_type)")
	modelType := fs.String("model-type", "", "model type of a checkpoint whose config.json names none; must agree with it otherwise")
	quiet := fs.BoolP("quiet", "q", false, "no progress output; print only the tensors that differ")
	keep := fs.Bool("keep", false, "keep the intermediate MCA checkpoint (and the rebuilt config.json) and print where they are")
	tmpDir := fs.String("tmp", "", "directory for the intermediate MCA checkpoint (default: the system's temporary directory)")
	megatronLlama := fs.Bool("megatron-llama", false, "resolve names for megatron-llama-core (ROLL's is_megatron_llama())")
	noMTP := fs.Bool("no-mtp", false, "round-trip without the multi-token-prediction (MTP) layers, as convert --no-mtp converts (their weights are not compared)")
	var layout layoutFlags
	layout.add(fs)
	verifyLayoutUsage(fs)
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	l := layout.layout()
	if err := l.Check(); err != nil {
		fmt.Fprintf(e.stderr, "rolltplc verify: %v\n", err)
		return ExitError
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(e.stderr, "rolltplc verify: want exactly one HF checkpoint directory")
		return ExitUsage
	}
	dir := fs.Arg(0)
	if exec.IsLoRA(dir) {
		return verifyLoRA(ctx, e, dir, *template, *modelType, *tmpDir, *quiet)
	}
	if exec.IsMCA(dir) {
		fmt.Fprintf(e.stderr, "rolltplc verify: %s is an MCA checkpoint; verify takes an HF checkpoint\n", dir)
		return ExitError
	}
	m, ok := selectModel(e, "verify", dir, false, *template, *modelType, map[string]bool{"megatron_llama": *megatronLlama})
	if !ok {
		return ExitError
	}
	m.NoMTP = *noMTP
	bar := newProgress(e, *quiet, "verify")
	start := time.Now()
	rep, err := exec.Verify(ctx, m, dir, exec.VerifyOptions{TempDir: *tmpDir, Progress: bar.update, Keep: *keep, Layout: l, Notice: e.notice("verify")})
	bar.finish()
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc verify: %v\n", err)
		return ExitError
	}
	if rep.Dir != "" {
		fmt.Fprintf(e.stderr, "intermediate MCA checkpoint and config.json kept in %s\n", rep.Dir)
	}
	if !rep.OK() {
		fmt.Fprintf(e.stdout, "%s differ after HF -> MCA%s -> HF:\n", plural(len(rep.Diffs), "tensor"), layoutNote(l))
		for _, d := range rep.Diffs {
			fmt.Fprintf(e.stdout, "  %s: %s\n", d.Name, d.Reason)
		}
		printLossy(e, rep)
		return ExitError
	}
	if !*quiet {
		var asRT string
		if len(rep.Lossy) > 0 {
			asRT = fmt.Sprintf(", %d of them as their own round trip through a lossy op", len(rep.Lossy))
		}
		fmt.Fprintf(e.stdout, "%s (%s): %d tensors, %s identical after HF -> MCA%s -> HF (%s)%s\n", dir, m.Template.Name,
			rep.Compared, exec.HumanBytes(rep.Bytes), layoutNote(l), time.Since(start).Round(time.Millisecond), asRT)
		printLossy(e, rep)
		if len(rep.Skipped) > 0 {
			fmt.Fprintf(e.stdout, "%s ignored or dropped by the template%s, not compared\n", plural(len(rep.Skipped), "tensor"), map[bool]string{true: " or left out by --no-mtp"}[*noMTP])
		}
		for _, d := range rep.ConfigDiffs {
			fmt.Fprintf(e.stdout, "note: config.json %s\n", d)
		}
	}
	return ExitOK
}

// printLossy says how many tensors came from ops that are lossy by
// nature in their dtype and were compared with their own round trip, and
// how far that round trip is from the original.
func printLossy(e *env, rep *exec.VerifyReport) {
	if len(rep.Lossy) == 0 {
		return
	}
	changed, ulp, ops := rep.LossySummary()
	fmt.Fprintf(e.stdout, "note: lossy by nature: %s; %d of the %s compared with their own round trip changed by it, at most %d ulp from the original\n",
		strings.Join(ops, ", "), changed, plural(len(rep.Lossy), "tensor"), ulp)
}

// verifyLayoutUsage rewrites the help of the layout flags, shared with
// convert, for verify: they choose the layout of the intermediate MCA
// checkpoint the round trip goes through.
func verifyLayoutUsage(fs *pflag.FlagSet) {
	for name, usage := range map[string]string{
		"tp":  "tensor parallel size of the intermediate MCA checkpoint",
		"pp":  "pipeline parallel size of the intermediate MCA checkpoint",
		"vpp": "virtual pipeline parallel size (stages per pipeline rank) of the intermediate MCA checkpoint",
		"ep":  "expert parallel size of the intermediate MCA checkpoint",
		"etp": "expert tensor parallel size of the intermediate MCA checkpoint; must divide --tp (0: same as --tp)",
	} {
		if f := fs.Lookup(name); f != nil {
			f.Usage = usage
		}
	}
}

// layoutNote describes a parallel layout for verify's report: "" for
// TP=PP=EP=1, else the sizes and options that differ from it, such as
// " (tp=2 pp=2 moe-grouped-gemm)".
func layoutNote(l exec.Layout) string {
	var parts []string
	for _, f := range []struct {
		name string
		v    int
	}{{"tp", l.TP}, {"pp", l.PP}, {"vpp", l.VPP}, {"ep", l.EP}, {"etp", l.ETP}} {
		if f.v > 1 {
			parts = append(parts, fmt.Sprintf("%s=%d", f.name, f.v))
		}
	}
	for _, f := range []struct {
		name string
		on   bool
	}{{"moe-grouped-gemm", l.MoEGroupedGEMM}, {"legacy", l.LegacyGroupedGEMM}, {"local", l.TransformerImpl == "local"},
		{"account-for-embedding", l.AccountForEmbedding}, {"account-for-loss", l.AccountForLoss}} {
		if f.on {
			parts = append(parts, f.name)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, " ") + ")"
}
