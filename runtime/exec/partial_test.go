package exec_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// readTree returns the files under dir by relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareTrees fails unless got holds exactly the files of want, byte for
// byte.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	w, g := readTree(t, want), readTree(t, got)
	var wn, gn []string
	for k := range w {
		wn = append(wn, k)
	}
	for k := range g {
		gn = append(gn, k)
	}
	slices.Sort(wn)
	slices.Sort(gn)
	if !slices.Equal(wn, gn) {
		t.Fatalf("files differ:\n one job: %v\n jobs:    %v", wn, gn)
	}
	for _, k := range wn {
		if !bytes.Equal(w[k], g[k]) {
			t.Errorf("%s differs from the one-job conversion", k)
		}
	}
}

// TestConvertJobs splits HF → MCA conversions into jobs writing subsets
// of the rank files into one directory, then a finalize job; the result
// must be byte-identical to a one-job conversion.
func TestConvertJobs(t *testing.T) {
	for _, c := range []struct {
		name   string
		mt     string
		layout exec.Layout
		jobs   [][]int
	}{
		{"qwen2_moe/tp2pp2ep2", "qwen2_moe", exec.Layout{TP: 2, PP: 2, EP: 2}, [][]int{{0, 1, 2, 3, 7}, {4, 5, 6}}},
		{"llama/pp2vpp2", "llama", exec.Layout{PP: 2, VPP: 2}, [][]int{{1}, {0}}},
		{"llama/tp1", "llama", exec.Layout{}, [][]int{{0}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "hf")
			synthDeep(c.mt, tensor.BF16).write(t, src, 2, 11)
			os.WriteFile(filepath.Join(src, "tokenizer.json"), []byte(`{"version": "1.0"}`), 0o644)
			m := stdlibModel(t, c.mt)
			ctx := context.Background()
			one := filepath.Join(dir, "one")
			if _, err := exec.ConvertHFToMCA(ctx, m, src, one, exec.Options{Layout: c.layout}); err != nil {
				t.Fatal(err)
			}
			shared := filepath.Join(dir, "shared")
			finalize := func() error {
				_, err := exec.ConvertHFToMCA(ctx, m, src, shared, exec.Options{Layout: c.layout, Finalize: true})
				return err
			}
			for i, ranks := range c.jobs {
				r, err := exec.ConvertHFToMCA(ctx, m, src, shared, exec.Options{Layout: c.layout, Ranks: ranks})
				if err != nil {
					t.Fatalf("job %v: %v", ranks, err)
				}
				if len(r.Files) != len(ranks) {
					t.Errorf("job %v wrote %v", ranks, r.Files)
				}
				if i == 0 && len(c.jobs) > 1 {
					// A finalize before every job is done names a missing
					// rank file and writes nothing.
					err := finalize()
					if err == nil || !strings.Contains(err.Error(), "missing") {
						t.Errorf("early finalize: err = %v, want a missing rank file", err)
					}
					for _, f := range []string{exec.MCAConfigName, exec.TrackerName, "tokenizer.json"} {
						if _, err := os.Stat(filepath.Join(shared, f)); err == nil {
							t.Errorf("early finalize wrote %s", f)
						}
					}
				}
			}
			if err := finalize(); err != nil {
				t.Fatalf("finalize: %v", err)
			}
			compareTrees(t, one, shared)
		})
	}
}

func TestConvertJobsErrors(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthDeep("llama", tensor.BF16).write(t, src, 1, 3)
	m := stdlibModel(t, "llama")
	ctx := context.Background()
	out := filepath.Join(dir, "out[1]") // a glob character in the path
	l := exec.Layout{PP: 2}
	if _, err := exec.ConvertHFToMCA(ctx, m, src, out, exec.Options{Layout: l, Ranks: []int{2}}); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("rank 2 of 2: err = %v", err)
	}
	if _, err := exec.ConvertHFToMCA(ctx, m, src, out, exec.Options{Layout: l, Ranks: []int{0}, Finalize: true}); err == nil {
		t.Error("Ranks and Finalize together: no error")
	}
	// A rank file a job is still writing (or a crashed job left) is
	// reported by finalize, which writes nothing; once it is gone,
	// finalize succeeds.
	if _, err := exec.ConvertHFToMCA(ctx, m, src, out, exec.Options{Layout: l, Ranks: []int{0, 1}}); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(out, "iter_0000001", "mp_rank_00_001", exec.MCACheckpointPT+".tmp-123")
	writeFile(t, stale, []byte("partial"))
	if _, err := exec.ConvertHFToMCA(ctx, m, src, out, exec.Options{Layout: l, Finalize: true}); err == nil ||
		!strings.Contains(err.Error(), "rank 1 (mp_rank_00_001): "+stale+" is an unfinished rank file") {
		t.Errorf("finalize beside an unfinished rank file: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, exec.MCAConfigName)); err == nil {
		t.Error("finalize beside an unfinished rank file wrote mca_config.json")
	}
	os.Remove(stale)
	if _, err := exec.ConvertHFToMCA(ctx, m, src, out, exec.Options{Layout: l, Finalize: true}); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(out)
	// Rank files of another layout in the shared directory.
	if _, err := exec.ConvertHFToMCA(ctx, m, src, out, exec.Options{Layout: exec.Layout{PP: 2, VPP: 2}, Ranks: []int{0, 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.ConvertHFToMCA(ctx, m, src, out, exec.Options{Layout: l, Finalize: true}); err == nil || !strings.Contains(err.Error(), "mp_rank_00_000") {
		t.Errorf("finalize over rank files of another layout: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, exec.MCAConfigName)); err == nil {
		t.Error("a failed finalize wrote mca_config.json")
	}
}
