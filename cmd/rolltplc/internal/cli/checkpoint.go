package cli

import (
	"encoding/json"
	"fmt"

	"github.com/rolltpl/rolltpl/runtime/exec"
)

// checkCheckpoint implements `rolltplc check --checkpoint DIR`: it plans
// the conversion of the checkpoint in dir with the template for its model
// type (from paths, or the stdlib) through [exec.PlanCheckpoint], as
// convert plans it (the same files, problems and verdict) without reading
// tensor data, and prints the plan (ops, tensor counts, bytes) and the
// problems with their tensors and op. An MCA checkpoint (with
// mca_config.json) is planned back to HF from its rank files, in the
// layout they record; an HF checkpoint to the layout of the flags. noMTP
// plans it as convert --no-mtp does.
// format is "text" or "json". The exit code is 1 when there are errors.
func checkCheckpoint(e *env, dir string, paths []string, layout exec.Layout, noMTP bool, format string) int {
	fail := func(err error) int {
		if format == "json" {
			b, _ := json.MarshalIndent(map[string]string{"checkpoint": dir, "error": err.Error()}, "", "  ")
			fmt.Fprintf(e.stdout, "%s\n", b)
		} else {
			fmt.Fprintf(e.stderr, "rolltplc check: %v\n", err)
		}
		return ExitError
	}
	if exec.IsLoRA(dir) {
		return checkLoRA(e, dir, paths, format)
	}
	isMCA := exec.IsMCA(dir)
	cm, err := exec.ReadCheckpointModel(dir, isMCA)
	if err != nil {
		return fail(err)
	}
	mt := cm.ModelType
	template := ""
	if len(paths) == 1 {
		template = paths[0]
	} else if len(paths) > 1 {
		return fail(fmt.Errorf("--checkpoint takes at most one template file or folder, got %d", len(paths)))
	}
	if mt == "" && template == "" {
		return fail(fmt.Errorf("%s: no %s; %s", cm.Path, cm.Key, templateHint("check")))
	}
	m, ok := loadModel(e, "check", template, mt, nil)
	if !ok {
		return ExitError
	}
	m.NoMTP = noMTP
	cp, err := exec.PlanCheckpoint(m, cm, layout)
	if err != nil {
		return fail(err)
	}
	l := cp.Layout
	note := ""
	switch {
	case isMCA && l.TP*l.PP*l.VPP*l.EP > 1:
		note = fmt.Sprintf("layout tp=%d pp=%d vpp=%d ep=%d etp=%d (from %s): %s merged", l.TP, l.PP, l.VPP, l.EP, l.ETP, exec.MCAConfigName, plural(len(cp.Files), "rank file"))
	case !isMCA && cp.RankFiles > 1:
		note = fmt.Sprintf("layout tp=%d pp=%d vpp=%d ep=%d etp=%d: %s", l.TP, l.PP, l.VPP, l.EP, l.ETP, plural(cp.RankFiles, "rank file"))
	}
	if format == "json" {
		out := struct {
			Checkpoint string `json:"checkpoint"`
			Files      int    `json:"files"`
			exec.Report
			RankFiles int    `json:"rank_files,omitempty"`
			Note      string `json:"note,omitempty"`
		}{Checkpoint: dir, Files: len(cp.Files), Report: cp.Plan.Report(), RankFiles: cp.RankFiles, Note: note}
		if isMCA {
			out.RankFiles = 0
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
	} else {
		fmt.Fprintf(e.stdout, "%s: %s\n", dir, plural(len(cp.Files), "file"))
		cp.Plan.WriteSummary(e.stdout)
		writeFP8Pairs(e.stdout, cp.Plan.FP8, 64)
		if note != "" {
			fmt.Fprintln(e.stdout, "note: "+note)
		}
	}
	if cp.Plan.Err() != nil {
		return ExitError
	}
	return ExitOK
}
