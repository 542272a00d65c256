package exec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/outdir"
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// This file runs a conversion as several jobs (a Slurm array, a
// Kubernetes indexed Job) writing into one shared output: each job writes
// the rank files of Options.Ranks in place (every file through a
// temporary name renamed when complete, then its run stamp, stamp.go),
// and a last job with Options.Finalize checks that every rank file of the
// layout is there, complete and of this conversion, and writes the shared
// files. A finalized output is only rewritten with Force, which removes
// its tracker first.

// rankWritePlan plans the rank files of the layout recorded in mc.
func rankWritePlan(m *Model, mc *MCAConfig, plan *Plan) (*shard.Sharder, *shard.WritePlan, error) {
	sh, err := newSharder(m, mc)
	if err != nil {
		return nil, nil, err
	}
	outs := plan.Outputs()
	globals := make([]shard.GlobalTensor, len(outs))
	for i, o := range outs {
		globals[i] = shard.GlobalTensor{Name: o.Name, DType: o.DType, Shape: o.Shape}
	}
	wp, err := sh.PlanWrite(globals)
	if err != nil {
		return nil, nil, fmt.Errorf("parallel layout: %w", err)
	}
	return sh, wp, nil
}

// selectRanks returns the plans of the rank files with the given indices
// in [shard.Ranks] order.
func selectRanks(l shard.Layout, files []shard.FilePlan, sel []int) ([]shard.FilePlan, error) {
	if len(sel) == 0 {
		return nil, errors.New("no rank files selected")
	}
	ranks := shard.Ranks(l)
	byRank := map[shard.Rank]shard.FilePlan{}
	for _, f := range files {
		byRank[f.Rank] = f
	}
	seen := map[int]bool{}
	var out []shard.FilePlan
	for _, i := range sel {
		if i < 0 || i >= len(ranks) {
			return nil, fmt.Errorf("rank %d is out of range: the layout (tp=%d pp=%d ep=%d) has %d rank files, 0-%d", i, l.TP, l.PP, l.EP, len(ranks), len(ranks)-1)
		}
		if seen[i] {
			continue
		}
		seen[i] = true
		f, ok := byRank[ranks[i]]
		if !ok {
			return nil, fmt.Errorf("internal error: no plan for rank file %s", shard.RankDir(ranks[i], l))
		}
		out = append(out, f)
	}
	return out, nil
}

// convertHFToMCAJob is ConvertHFToMCA for one job of a multi-job
// conversion (opts.Ranks or opts.Finalize): dst is written in place.
func convertHFToMCAJob(ctx context.Context, m *Model, src, dst string, mc *MCAConfig, plan *Plan, opts Options, input func(int) inputData, res *Result) (*Result, error) {
	if opts.Finalize && opts.Ranks != nil {
		return res, errors.New("a job either writes rank files (Ranks) or finalizes the output (Finalize), not both")
	}
	sh, wp, err := rankWritePlan(m, mc, plan)
	if err != nil {
		return res, err
	}
	if st, err := os.Stat(dst); err == nil && !st.IsDir() {
		return res, fmt.Errorf("destination %s exists and is not a directory", dst)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return res, err
	}
	out := outdir.InPlace(dst)
	if opts.Finalize {
		return finalizeMCA(res, src, out, sh.Layout(), wp, mc, opts)
	}
	files, err := selectRanks(sh.Layout(), wp.Files, opts.Ranks)
	if err != nil {
		return res, err
	}
	if err := unfinalize(dst, opts.Force); err != nil {
		return res, err
	}
	res.Files, res.Written, err = writeMCARanks(ctx, plan, opts, sh, files, out, input)
	return res, err
}

// unfinalize prepares a rank job's destination: one holding a finalized
// checkpoint (a tracker file) is refused unless force, and with force
// the tracker is removed (durably) before any rank file is rewritten, so
// that a conversion being redone never looks complete.
func unfinalize(dst string, force bool) error {
	tracker := filepath.Join(dst, TrackerName)
	if _, err := os.Lstat(tracker); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if !force {
		return fmt.Errorf("destination %s holds a finalized checkpoint (%s): rewriting some of its rank files would mix two conversions; pass --force to redo the conversion (the tracker is then removed first, and --finalize checks every rank file again)",
			dst, TrackerName)
	}
	if err := os.Remove(tracker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return outdir.SyncDir(dst)
}

// finalizeMCA checks that every rank file of the layout is in the output,
// finished, stamped with this conversion's run and holding the planned
// tensors, then writes the shared files: the source's auxiliary files,
// mca_config.json and, last, the tracker file. When rank files are not
// ready it writes nothing and names every one of them, and every rank
// directory the layout does not have.
func finalizeMCA(res *Result, src string, out *output, l shard.Layout, wp *shard.WritePlan, mc *MCAConfig, opts Options) (*Result, error) {
	index := rankIndex(l)
	stampOf := stamper(mc)
	want := map[string]bool{}
	var rels, problems []string
	for _, f := range wp.Files {
		want[f.Dir] = true
		rel := filepath.Join("iter_0000001", f.Dir, MCACheckpointPT)
		rels = append(rels, rel)
		if msg := rankFileProblem(out.Path(rel), f, stampOf(index[f.Rank], f.Dir)); msg != "" {
			problems = append(problems, fmt.Sprintf("rank %d (%s): %s", index[f.Rank], f.Dir, msg))
		}
	}
	entries, err := os.ReadDir(out.Path("iter_0000001"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "mp_rank_") && !want[e.Name()] {
			problems = append(problems, fmt.Sprintf("%s is not a rank file directory of the layout (%s)",
				out.Path("iter_0000001", e.Name()), layoutString(mc.Layout())))
		}
	}
	if len(problems) > 0 {
		return res, fmt.Errorf("cannot finalize %s (layout %s, %d rank files): %d problem%s:\n  %s\n"+
			"run the jobs of these ranks again (same --from, template and layout flags), then finalize again", out.Dest(), layoutString(mc.Layout()), len(wp.Files),
			len(problems), map[bool]string{true: "", false: "s"}[len(problems) == 1], strings.Join(problems, "\n  "))
	}
	res.Files = rels
	res.Copied, err = copyAux(src, out.Dest(), func(name string) bool {
		return name == HFConfigName || name == MCAConfigName || name == TrackerName || weightFile(name)
	})
	if err != nil {
		return res, err
	}
	if opts.finalizeHook != nil {
		if err := opts.finalizeHook(out.Dest()); err != nil {
			return res, err
		}
	}
	if err := writeFileRename(out.Path(MCAConfigName), mc.JSON(), opts.Sync); err != nil {
		return res, err
	}
	if opts.Sync {
		// Every file and folder of the output (rank files and their
		// folders, copied tokenizer files, the sidecar, the config)
		// durable before the tracker marks it complete.
		if err := outdir.SyncTree(out.Dest()); err != nil {
			return res, err
		}
	}
	if err := writeFileRename(out.Path(TrackerName), []byte("1"), opts.Sync); err != nil {
		return res, err
	}
	if opts.Sync {
		return res, outdir.SyncDir(out.Dest())
	}
	return res, nil
}

// rankFileProblem says what keeps the rank file at path from being
// finalized ("" when nothing does): temporary files of its writers, no
// file, a missing or foreign run stamp, or tensors other than its plan.
func rankFileProblem(path string, fp shard.FilePlan, want runStamp) string {
	left, err := unfinished(path)
	if err != nil {
		return err.Error()
	}
	if len(left) > 0 {
		return fmt.Sprintf("%s is an unfinished rank file: a job writing this rank is still running, or one crashed (remove the file once no job writes it, then finalize again)",
			strings.Join(left, ", "))
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("rank file %s is missing", path)
	}
	st, err := readStamp(path)
	if err != nil {
		return err.Error()
	}
	if msg := stampProblem(st, want); msg != "" {
		return fmt.Sprintf("rank file %s %s", path, msg)
	}
	if err := checkRankFile(path, fp); err != nil {
		return err.Error()
	}
	return ""
}

// unfinished returns the temporary files of the writers of the rank file
// at path and of its run stamp (running or crashed) in its directory.
func unfinished(path string) ([]string, error) {
	dir := filepath.Dir(path)
	prefixes := []string{filepath.Base(path) + torchsave.TempSuffix, RunStampName + torchsave.TempSuffix}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var left []string
	for _, e := range entries {
		for _, p := range prefixes {
			if strings.HasPrefix(e.Name(), p) {
				left = append(left, filepath.Join(dir, e.Name()))
			}
		}
	}
	return left, nil
}

// checkRankFile checks that the rank file at path exists and holds
// exactly the tensors of its plan (state-dict keys, names, dtypes and
// shapes; the data is not read).
func checkRankFile(path string, fp shard.FilePlan) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rank file %s is missing", path)
	}
	f, err := torchsave.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	want := map[string]shard.Entry{}
	for _, e := range fp.Entries {
		want[e.Key+"/"+e.Name] = e
	}
	n := 0
	for _, t := range f.Tensors() {
		e, ok := want[t.Name]
		if !ok {
			return fmt.Errorf("%s: tensor %s is not in the layout's plan for this rank file", path, t.Name)
		}
		if e.DType != t.DType || !e.Shape.Equal(t.Shape) {
			return fmt.Errorf("%s: tensor %s is %v%v, the plan has %v%v", path, t.Name, t.DType, t.Shape, e.DType, e.Shape)
		}
		n++
	}
	if n != len(want) {
		return fmt.Errorf("%s: %d tensors, the plan has %d", path, n, len(want))
	}
	return nil
}

// writeFileRename writes a small file through a temporary name.
func writeFileRename(path string, data []byte, sync bool) error {
	tmp := path + ".tmp"
	if err := writeFileSync(tmp, data, sync); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
