package cli

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/stdlib"
)

// runDequantize implements `rolltplc dequantize --from HF_FP8 --to DIR`:
// the FP8 block-quantized HF checkpoint written as a plain one
// ([exec.DequantizeHF]), the drop-in for DeepSeek's fp8_cast_bf16.py.
func runDequantize(e *env, args []string) int {
	ctx, stop := signalContext()
	defer stop()
	c := lookup("dequantize")
	fs := flagSet(e, c)
	from := fs.String("from", "", "FP8 block-quantized HF checkpoint (config.json quantization_config quant_method \"fp8\")")
	to := fs.String("to", "", "destination folder (created, or an empty folder written through; refused if not empty unless --force)")
	dtype := fs.String("dtype", "bf16", "dtype of the dequantized weights: bf16, f16 or f32")
	template := fs.String("template", "", "template file or folder whose quant rules pair each weight with its scale (default: the stdlib template of the checkpoint's model type, else the stdlib default rules, \"{}.weight\" -> \"{}.weight_scale_inv\")")
	quiet := fs.BoolP("quiet", "q", false, "no progress output and no summary")
	force := fs.Bool("force", false, "replace the checkpoint in a non-empty --to (only a checkpoint's own files)")
	sync := fs.Bool("sync", false, "fsync every output file before the output is renamed into place")
	if ok, code := parse(e, c.name, fs, args); !ok {
		return code
	}
	if *from == "" || *to == "" || fs.NArg() > 0 {
		return usageError(e, c.name, "--from and --to are required, and no other arguments")
	}
	mode, err := exec.ParseDequantize(*dtype)
	if err != nil || mode == exec.DequantRefuse {
		return usageError(e, c.name, "--dtype %q is not one of bf16, f16, f32", *dtype)
	}
	scales, ok := dequantizeScales(e, *from, *template)
	if !ok {
		return ExitError
	}
	bar := newProgress(e, *quiet, "dequantize")
	start := time.Now()
	res, err := exec.DequantizeHF(ctx, *from, *to, exec.DequantizeOptions{To: mode, Scales: scales, Force: *force, Sync: *sync, Progress: bar.update, Notice: e.notice("dequantize")})
	bar.finish()
	if err != nil {
		if res != nil && len(res.Problems) > 0 {
			fmt.Fprintf(e.stderr, "rolltplc dequantize: %s; nothing was written:\n", plural(len(res.Problems), "problem"))
			exec.WriteProblems(e.stderr, res.Problems)
			return ExitError
		}
		fmt.Fprintf(e.stderr, "rolltplc dequantize: %v\n", err)
		return ExitError
	}
	if !*quiet {
		d := time.Since(start)
		fmt.Fprintf(e.stderr, "%s\n%s written in %s (%s/s) -> %s\n", res.FP8.Summary(), exec.HumanBytes(res.Written),
			d.Round(time.Millisecond), exec.HumanBytes(int64(float64(res.Written)/max(d.Seconds(), 1e-9))), *to)
	}
	return ExitOK
}

// dequantizeScales returns the scale naming rules dequantize pairs the
// weights of the checkpoint in from by: those of the template in
// templatePath (named after the checkpoint's model type, or its only
// one), else those of the stdlib template of the checkpoint's model type,
// else the stdlib's default quant section.
func dequantizeScales(e *env, from, templatePath string) ([]ir.ScaleRule, bool) {
	mt := ""
	if cm, err := exec.ReadCheckpointModel(from, false); err == nil {
		mt = cm.ModelType
	}
	if templatePath == "" && mt != "" {
		if _, err := fs.Stat(stdlib.Templates(), mt+".rolltpl"); err != nil {
			mt = "" // no stdlib template: the default rules
		}
	}
	if templatePath != "" || mt != "" {
		m, ok := loadModel(e, "dequantize", templatePath, mt, nil)
		if !ok {
			return nil, false
		}
		return m.Template.Scales, true
	}
	res, failed := compileWith(e, []string{resolve.LibPrefix + vocab.DefaultQuantModule + ".rolltpl"}, nil, nil)
	if res == nil || failed || len(res.Program.DefaultScales) == 0 {
		fmt.Fprintf(e.stderr, "rolltplc dequantize: internal error: the stdlib has no default quant section %q\n", vocab.DefaultQuant)
		return nil, false
	}
	return res.Program.DefaultScales, true
}

// writeFP8Pairs lists the FP8 weight/scale pairs of a plan, from headers
// only: the pass's totals, then one line per pair (at most max).
func writeFP8Pairs(w io.Writer, f *exec.FP8Info, max int) {
	if f == nil || len(f.Pairs) == 0 {
		return
	}
	fmt.Fprintf(w, "FP8 pairs (weight F8_E4M3 -> %s; scale grid, dtype):\n", f.To)
	for i, p := range f.Pairs {
		if i == max {
			fmt.Fprintf(w, "  ... and %d more\n", len(f.Pairs)-max)
			break
		}
		fmt.Fprintf(w, "  %s %v: %s %v %s\n", p.Weight, p.Shape, p.Scale, p.Grid, p.ScaleDType)
	}
}

// fp8Flags parses convert's FP8 flags into the options they set.
func fp8Flags(e *env, fs interface{ Changed(string) bool }, dequant, quantize, scales string) (exec.Options, int, bool) {
	var o exec.Options
	d, err := exec.ParseDequantize(dequant)
	if err != nil {
		return o, usageError(e, "convert", "--dequantize: %v", err), false
	}
	o.Dequantize = d
	switch quantize {
	case "":
		if fs.Changed("scales") {
			return o, usageError(e, "convert", "--scales applies only with --quantize fp8"), false
		}
	case "fp8":
		if scales != exec.ScalesReuse && scales != exec.ScalesRecompute {
			return o, usageError(e, "convert", "--scales %q is not reuse or recompute", scales), false
		}
		o.Quantize = &exec.QuantizeOptions{Scales: scales}
	default:
		return o, usageError(e, "convert", "--quantize %q: only fp8 (block-quantized, as the source was) is supported", quantize), false
	}
	return o, 0, true
}

// fp8Note tells, after an MCA -> HF conversion without --quantize of a
// checkpoint converted from an FP8 one, how to get the FP8 one back.
func fp8Note(e *env, from string, isMCA, quantized bool) {
	if !isMCA || quantized {
		return
	}
	if st, err := os.Stat(filepath.Join(from, exec.FP8SidecarName)); err == nil && st.Mode().IsRegular() {
		fmt.Fprintf(e.stderr, "note: %s was converted from an FP8 block-quantized checkpoint (%s); this output is not quantized: --quantize fp8 restores the FP8 weights and their scales\n",
			from, exec.FP8SidecarName)
	}
}
