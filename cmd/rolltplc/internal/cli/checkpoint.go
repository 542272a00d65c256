package cli

import (
	"encoding/json"
	"fmt"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// checkCheckpoint implements `rolltplc check --checkpoint DIR`: it plans
// the conversion of the checkpoint in dir with the template for its model
// type (from paths, or the stdlib) from config.json, the index and the
// safetensors headers only — no tensor data is read — and prints the plan
// (ops, tensor counts, bytes) and every problem with its tensors and op.
// An MCA checkpoint (with mca_config.json) is planned back to HF from its
// pickle. tp, pp and ep are checked against what they split (heads, query
// groups, layers, experts). format is "text" or "json".
// The exit code is 1 when there are errors.
func checkCheckpoint(e *env, dir string, paths []string, tp, pp, ep int, format string) int {
	fail := func(err error) int {
		if format == "json" {
			b, _ := json.MarshalIndent(map[string]string{"checkpoint": dir, "error": err.Error()}, "", "  ")
			fmt.Fprintf(e.stdout, "%s\n", b)
		} else {
			fmt.Fprintf(e.stderr, "rolltplc check: %v\n", err)
		}
		return ExitError
	}
	layout := exec.Layout{TP: tp, PP: pp, EP: ep}
	isMCA := exec.IsMCA(dir)
	mt, err := detectModelType(dir, isMCA)
	if err != nil {
		return fail(err)
	}
	template := ""
	if len(paths) == 1 {
		template = paths[0]
	} else if len(paths) > 1 {
		return fail(fmt.Errorf("--checkpoint takes at most one template file or folder, got %d", len(paths)))
	}
	m, ok := loadModel(e, "check", template, mt, nil)
	if !ok {
		return ExitError
	}
	var plan *exec.Plan
	files := 0
	if isMCA {
		mck, err := exec.ReadMCACheckpoint(dir)
		if err != nil {
			return fail(err)
		}
		// Opening maps the file and reads its pickle; tensor data is not
		// touched.
		tf, err := torchsave.Open(mck.PT)
		if err != nil {
			return fail(err)
		}
		defer tf.Close()
		metas, err := exec.MCATensorMetas(tf)
		if err != nil {
			return fail(err)
		}
		plan = exec.PlanMCAToHF(m, mck.Config, metas)
		files = 1
	} else {
		hc, err := exec.ReadHFCheckpoint(dir)
		if err != nil {
			return fail(err)
		}
		mc, err := exec.BuildMCAConfig(m, hc.ConfigText, hc.ConfigPath, dir, layout)
		if err != nil {
			return fail(err)
		}
		plan = exec.PlanHFToMCA(m, mc, hc.Tensors)
		plan.Problems = append(plan.Problems, exec.LayoutProblems(mc, layout)...)
		files = len(hc.Files)
	}
	note := ""
	if tp*pp*ep > 1 {
		note = fmt.Sprintf("layout tp=%d pp=%d ep=%d: %d rank files", tp, pp, ep, tp*pp*ep)
	}
	if format == "json" {
		out := struct {
			Checkpoint string `json:"checkpoint"`
			Files      int    `json:"files"`
			exec.Report
			Note string `json:"note,omitempty"`
		}{Checkpoint: dir, Files: files, Report: plan.Report()}
		out.Note = note
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
	} else {
		fmt.Fprintf(e.stdout, "%s: %s\n", dir, plural(files, "file"))
		plan.WriteSummary(e.stdout)
		if note != "" {
			fmt.Fprintln(e.stdout, "note: "+note)
		}
	}
	if plan.Err() != nil {
		return ExitError
	}
	return ExitOK
}
