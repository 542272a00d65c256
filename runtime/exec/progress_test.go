package exec_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestProgressCounts: Options.Progress counts bytes and tensors without
// going back, to totals that are the output's (the rank files' tensors,
// written concurrently, at TP 2; the HF tensors back; both halves of
// verify), and ends at them.
func TestProgressCounts(t *testing.T) {
	dir := t.TempDir()
	m := stdlibModel(t, "llama")
	src, mca, hf := filepath.Join(dir, "hf"), filepath.Join(dir, "mca"), filepath.Join(dir, "back")
	synthFor("llama", tensor.BF16).write(t, src, 2, 3)
	ctx := context.Background()
	var seen []exec.Progress
	fixed := true // the totals do not change
	record := func(p exec.Progress) {
		if n := len(seen); n > 0 {
			q := seen[n-1]
			if p.Bytes < q.Bytes || p.Tensors < q.Tensors || fixed && (p.TotalBytes != q.TotalBytes || p.TotalTensors != q.TotalTensors) {
				t.Errorf("progress %+v after %+v", p, q)
			}
		}
		seen = append(seen, p)
	}
	r, err := exec.ConvertHFToMCA(ctx, m, src, mca, exec.Options{Layout: exec.Layout{TP: 2}, Progress: record})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := exec.PlanConversion(m, src, exec.Layout{TP: 2})
	if err != nil {
		t.Fatal(err)
	}
	rankTensors := 0
	for _, f := range r.Files {
		names, err := rankNames(filepath.Join(mca, f))
		if err != nil {
			t.Fatal(err)
		}
		rankTensors += len(names)
	}
	if cp.RankFiles != 2 || rankTensors <= r.Plan.NumOutputs() {
		t.Fatalf("%d rank files, %d rank tensors of %d global ones", cp.RankFiles, rankTensors, r.Plan.NumOutputs())
	}
	want := exec.Progress{Bytes: r.Written, TotalBytes: r.Written, Tensors: rankTensors, TotalTensors: rankTensors}
	if diff := cmp.Diff(want, seen[len(seen)-1]); diff != "" {
		t.Errorf("HF -> MCA tp=2: last progress (-want +got):\n%s", diff)
	}
	seen = nil
	r, err = exec.ConvertMCAToHF(ctx, m, mca, hf, exec.Options{Progress: record})
	if err != nil {
		t.Fatal(err)
	}
	n := r.Plan.NumOutputs()
	want = exec.Progress{Bytes: r.Written, TotalBytes: r.Written, Tensors: n, TotalTensors: n}
	if diff := cmp.Diff(want, seen[len(seen)-1]); diff != "" {
		t.Errorf("MCA -> HF: last progress (-want +got):\n%s", diff)
	}
	// verify: the second half's totals are estimated until it starts.
	seen, fixed = nil, false
	if _, err := exec.Verify(ctx, m, src, exec.VerifyOptions{TempDir: dir, Progress: record}); err != nil {
		t.Fatal(err)
	}
	last := seen[len(seen)-1]
	if last.Bytes != last.TotalBytes || last.Tensors != last.TotalTensors || last.TotalTensors <= n {
		t.Errorf("verify: last progress %+v, want every tensor of both halves (the second has %d)", last, n)
	}
}
