package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/rolltpl/rolltpl/runtime/exec"
)

func runVerify(e *env, args []string) int {
	c := lookup("verify")
	fs := flagSet(e, c)
	template := fs.String("template", "", "template file or folder (default: the stdlib template for config.json's model_type)")
	modelType := fs.String("model-type", "", "model type whose template to use (default: config.json model_type)")
	quiet := fs.BoolP("quiet", "q", false, "no progress bar; print only differences")
	keep := fs.Bool("keep", false, "keep the intermediate MCA and HF checkpoints and print where they are")
	tmpDir := fs.String("tmp", "", "directory for the intermediate checkpoints (default: the system's temporary directory)")
	megatronLlama := fs.Bool("megatron-llama", false, "resolve names for megatron-llama-core (ROLL's is_megatron_llama())")
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(e.stderr, "rolltplc verify: want exactly one HF checkpoint directory")
		fs.Usage()
		return ExitUsage
	}
	dir := fs.Arg(0)
	if exec.IsMCA(dir) {
		fmt.Fprintf(e.stderr, "rolltplc verify: %s is an MCA checkpoint; verify takes an HF checkpoint\n", dir)
		return ExitError
	}
	mt := *modelType
	if mt == "" {
		var err error
		if mt, err = detectModelType(dir, false); err != nil {
			fmt.Fprintf(e.stderr, "rolltplc verify: %v\n", err)
			return ExitError
		}
	}
	m, ok := loadModel(e, "verify", *template, mt, map[string]bool{"megatron_llama": *megatronLlama})
	if !ok {
		return ExitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	bar := newProgress(e, *quiet, "verify")
	start := time.Now()
	rep, err := exec.Verify(ctx, m, dir, exec.VerifyOptions{TempDir: *tmpDir, Progress: bar.update, Keep: *keep})
	bar.finish()
	if err != nil {
		fmt.Fprintf(e.stderr, "rolltplc verify: %v\n", err)
		return ExitError
	}
	if rep.Dir != "" {
		fmt.Fprintf(e.stderr, "intermediate checkpoints kept in %s\n", rep.Dir)
	}
	if !rep.OK() {
		fmt.Fprintf(e.stdout, "%s differ after HF -> MCA -> HF:\n", plural(len(rep.Diffs), "tensor"))
		for _, d := range rep.Diffs {
			fmt.Fprintf(e.stdout, "  %s: %s\n", d.Name, d.Reason)
		}
		return ExitError
	}
	if !*quiet {
		fmt.Fprintf(e.stdout, "%s (%s): %d tensors, %s identical after HF -> MCA -> HF (%s)\n", dir, m.Template.Name,
			rep.Compared, exec.HumanBytes(rep.Bytes), time.Since(start).Round(time.Millisecond))
		if len(rep.Skipped) > 0 {
			fmt.Fprintf(e.stdout, "%s ignored or dropped by the template, not compared\n", plural(len(rep.Skipped), "tensor"))
		}
		for _, d := range rep.ConfigDiffs {
			fmt.Fprintf(e.stdout, "note: config.json %s\n", d)
		}
	}
	return ExitOK
}
