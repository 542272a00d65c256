package exec_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// readTree returns the files under dir by relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	return readFiles(t, dir, func(string) bool { return true })
}

// readFiles returns the bytes of the files under dir whose names keep
// accepts, by relative path.
func readFiles(t *testing.T, dir string, keep func(name string) bool) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !keep(d.Name()) {
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

// jobsFixture is a source converted into a finalized output by rank jobs
// and a finalize job, at the 8-rank layout tp=2 pp=2 ep=2.
type jobsFixture struct {
	dir, src, out string
	m             *exec.Model
	layout        exec.Layout
}

func newJobsFixture(t *testing.T) *jobsFixture {
	t.Helper()
	f := &jobsFixture{dir: t.TempDir(), m: stdlibModel(t, "qwen2_moe"), layout: exec.Layout{TP: 2, PP: 2, EP: 2}}
	f.src, f.out = filepath.Join(f.dir, "hf"), filepath.Join(f.dir, "out")
	synthDeep("qwen2_moe", tensor.BF16).write(t, f.src, 2, 11)
	if _, err := f.job(f.src, exec.Options{Ranks: []int{0, 1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.job(f.src, exec.Options{Ranks: []int{4, 5, 6, 7}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.job(f.src, exec.Options{Finalize: true}); err != nil {
		t.Fatal(err)
	}
	return f
}

// job runs one job of a conversion of src into f.out.
func (f *jobsFixture) job(src string, opts exec.Options) (*exec.Result, error) {
	opts.Layout = f.layout
	return exec.ConvertHFToMCA(context.Background(), f.m, src, f.out, opts)
}

// otherSource writes a checkpoint with the same config and headers as
// f.src but other weights (a fine-tune of the same model).
func (f *jobsFixture) otherSource(t *testing.T) string {
	t.Helper()
	src := filepath.Join(f.dir, "hf2")
	synthDeep("qwen2_moe", tensor.BF16).write(t, src, 2, 12)
	return src
}

// TestConvertJobsFinalizedOutput checks rank jobs into a finalized
// output: refused without Force, leaving it as it was; with Force the
// tracker is removed before any rank file is written, so that a
// conversion being redone never looks complete to MCA → HF.
func TestConvertJobsFinalizedOutput(t *testing.T) {
	t.Parallel()
	f := newJobsFixture(t)
	src2 := f.otherSource(t)
	before := readTree(t, f.out)
	_, err := f.job(src2, exec.Options{Ranks: []int{0}})
	if err == nil || !strings.Contains(err.Error(), "finalized checkpoint") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("rank job into a finalized output: err = %v, want a refusal naming --force", err)
	}
	if diff := cmp.Diff(before, readTree(t, f.out)); diff != "" {
		t.Fatalf("a refused rank job changed the output (-before +after):\n%s", diff)
	}
	// A forced job that fails before writing its rank file (here: it is
	// cancelled) has already removed the tracker.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := exec.ConvertHFToMCA(ctx, f.m, src2, f.out, exec.Options{Layout: f.layout, Ranks: []int{0}, Force: true}); err == nil {
		t.Fatal("cancelled rank job: no error")
	}
	if _, err := os.Stat(filepath.Join(f.out, exec.TrackerName)); err == nil {
		t.Fatalf("a forced rank job left %s in place", exec.TrackerName)
	}
	back := filepath.Join(f.dir, "back")
	if _, err := exec.ConvertMCAToHF(context.Background(), f.m, f.out, back, exec.Options{}); err == nil ||
		!strings.Contains(err.Error(), "never finalized") {
		t.Errorf("MCA -> HF of an output being redone: err = %v, want a refusal", err)
	}
	// The forced rank job now rewrites rank 0 with the other weights; MCA
	// → HF refuses the mix (7 rank files of one model, 1 of another) even
	// with the tracker put back by hand.
	if _, err := f.job(src2, exec.Options{Ranks: []int{0}, Force: true}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.out, exec.TrackerName), []byte("1"))
	_, err = exec.ConvertMCAToHF(context.Background(), f.m, f.out, back, exec.Options{})
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "not of one conversion") || !strings.Contains(err.Error(), "mp_rank_00_000_000") {
		t.Errorf("MCA -> HF of 7 old rank files and 1 new: err = %v", err)
	}
	if _, err := os.Stat(back); err == nil {
		t.Error("MCA -> HF of mixed rank files wrote its destination")
	}
}

// TestConvertJobsFinalizeForeign finalizes an output holding 7 rank files
// of one conversion and 1 of another: every foreign rank file is named,
// and nothing is written.
func TestConvertJobsFinalizeForeign(t *testing.T) {
	f := newJobsFixture(t)
	src2 := f.otherSource(t)
	if _, err := f.job(src2, exec.Options{Ranks: []int{0}, Force: true}); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(f.out, exec.MCAConfigName))
	_, err := f.job(src2, exec.Options{Finalize: true})
	if err == nil {
		t.Fatal("finalize accepted 7 rank files of another conversion")
	}
	t.Log(err)
	dirs := []string{"mp_rank_00_000_000", "mp_rank_00_000_001", "mp_rank_00_001_000", "mp_rank_00_001_001",
		"mp_rank_01_000_000", "mp_rank_01_000_001", "mp_rank_01_001_000", "mp_rank_01_001_001"}
	for i, d := range dirs[1:] {
		want := fmt.Sprintf("rank %d (%s): rank file %s was written by another conversion", i+1, d,
			filepath.Join(f.out, "iter_0000001", d, exec.MCACheckpointPT))
		if !strings.Contains(err.Error(), want) {
			t.Errorf("finalize error does not name rank %d:\n%v", i+1, err)
		}
	}
	if strings.Contains(err.Error(), "rank 0 (") {
		t.Errorf("finalize error names rank 0, written by this conversion:\n%v", err)
	}
	for _, name := range []string{exec.MCAConfigName, exec.TrackerName} {
		if _, err := os.Stat(filepath.Join(f.out, name)); err == nil {
			t.Errorf("a refused finalize wrote %s", name)
		}
	}
	// Once every rank is redone, finalize accepts them.
	if _, err := f.job(src2, exec.Options{Ranks: []int{1, 2, 3, 4, 5, 6, 7}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.job(src2, exec.Options{Finalize: true}); err != nil {
		t.Fatal(err)
	}
}

// TestConvertJobsFinalizeNamesAll checks that finalize names every rank
// file that is missing, unfinished, unstamped or of another layout at
// once.
func TestConvertJobsFinalizeNamesAll(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthDeep("qwen2_moe", tensor.BF16).write(t, src, 1, 5)
	m := stdlibModel(t, "qwen2_moe")
	out := filepath.Join(dir, "out")
	l := exec.Layout{TP: 2, PP: 2, EP: 2}
	job := func(opts exec.Options) error {
		opts.Layout = l
		_, err := exec.ConvertHFToMCA(context.Background(), m, src, out, opts)
		return err
	}
	if err := job(exec.Options{Ranks: []int{0, 1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	iter := filepath.Join(out, "iter_0000001")
	// rank 0: a stamp writer's temporary file; rank 1: a rank file
	// writer's; rank 2: no stamp (a job that crashed after writing the
	// file); rank 3: a stamp of another rank.
	stale := filepath.Join(iter, "mp_rank_00_000_001", exec.MCACheckpointPT+".tmp-7")
	writeFile(t, stale, []byte("partial"))
	staleStamp := filepath.Join(iter, "mp_rank_00_000_000", exec.RunStampName+".tmp-8")
	writeFile(t, staleStamp, []byte("{"))
	os.Remove(filepath.Join(iter, "mp_rank_00_001_000", exec.RunStampName))
	b, err := os.ReadFile(filepath.Join(iter, "mp_rank_00_000_000", exec.RunStampName))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(iter, "mp_rank_00_001_001", exec.RunStampName), b)
	if err := os.MkdirAll(filepath.Join(iter, "mp_rank_02_000_000"), 0o755); err != nil {
		t.Fatal(err)
	}
	err = job(exec.Options{Finalize: true})
	if err == nil {
		t.Fatal("finalize: no error")
	}
	for _, want := range []string{
		"9 problems",
		"rank 0 (mp_rank_00_000_000): " + staleStamp + " is an unfinished rank file",
		"rank 1 (mp_rank_00_000_001): " + stale + " is an unfinished rank file",
		"rank 2 (mp_rank_00_001_000): rank file " + filepath.Join(iter, "mp_rank_00_001_000", exec.MCACheckpointPT) + " has no run stamp",
		"rank 3 (mp_rank_00_001_001): rank file " + filepath.Join(iter, "mp_rank_00_001_001", exec.MCACheckpointPT) + " has the run stamp of rank 0 (mp_rank_00_000_000)",
		"rank 4 (mp_rank_01_000_000): rank file " + filepath.Join(iter, "mp_rank_01_000_000", exec.MCACheckpointPT) + " is missing",
		"rank 5 (mp_rank_01_000_001)", "rank 6 (mp_rank_01_001_000)", "rank 7 (mp_rank_01_001_001)",
		filepath.Join(iter, "mp_rank_02_000_000") + " is not a rank file directory of the layout (tp=2 pp=2 vpp=1 ep=2 etp=2)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("finalize error lacks %q:\n%v", want, err)
		}
	}
}

// TestMCAToHFRankDirs checks MCA → HF against the rank directories: one
// the recorded layout does not have is an error naming it; rank files of
// two conversions are an error naming them; checkpoints without run
// stamps (ROLL's, Megatron's, older rolltpl's) still convert.
func TestMCAToHFRankDirs(t *testing.T) {
	dir := t.TempDir()
	src, src2 := filepath.Join(dir, "hf"), filepath.Join(dir, "hf2")
	synthDeep("llama", tensor.BF16).write(t, src, 1, 3)
	synthDeep("llama", tensor.BF16).write(t, src2, 1, 4)
	m := stdlibModel(t, "llama")
	ctx := context.Background()
	n := 0
	convert := func(t *testing.T, src string, l exec.Layout) string {
		t.Helper()
		n++
		out := filepath.Join(dir, fmt.Sprint("mca", n))
		if _, err := exec.ConvertHFToMCA(ctx, m, src, out, exec.Options{Layout: l}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	back := func(mca string) error {
		n++
		_, err := exec.ConvertMCAToHF(ctx, m, mca, filepath.Join(dir, fmt.Sprint("back", n)), exec.Options{})
		return err
	}
	pp2 := exec.Layout{PP: 2}
	for _, c := range []struct {
		name   string
		layout exec.Layout
		edit   func(t *testing.T, mca string)
		want   []string // "" for success
	}{
		{"extra rank dirs", pp2, func(t *testing.T, mca string) {
			for _, d := range []string{"mp_rank_01_000", "mp_rank_00_002"} {
				if err := copyDir(filepath.Join(mca, "iter_0000001", "mp_rank_00_001"), filepath.Join(mca, "iter_0000001", d)); err != nil {
					t.Fatal(err)
				}
			}
		}, []string{"rank directories mp_rank_00_002, mp_rank_01_000 are not in the layout", "tp=1 pp=2"}},
		{"extra rank dir, single rank", exec.Layout{}, func(t *testing.T, mca string) {
			os.MkdirAll(filepath.Join(mca, "iter_0000001", "mp_rank_01"), 0o755)
		}, []string{"rank directory mp_rank_01 is not in the layout"}},
		{"all missing named", exec.Layout{TP: 1, PP: 2, VPP: 2}, func(t *testing.T, mca string) {
			setJSONKey(t, filepath.Join(mca, exec.MCAConfigName), "pipeline_model_parallel_size", 4)
			setJSONKey(t, filepath.Join(mca, exec.MCAConfigName), "virtual_pipeline_model_parallel_size", nil)
		}, []string{"2 rank files are missing", "mp_rank_00_002", "mp_rank_00_003"}},
		{"rank file of another conversion", pp2, func(t *testing.T, mca string) {
			other := convert(t, src2, pp2)
			if err := copyDir(filepath.Join(other, "iter_0000001", "mp_rank_00_001"), filepath.Join(mca, "iter_0000001", "mp_rank_00_001")); err != nil {
				t.Fatal(err)
			}
		}, []string{"not of one conversion", "mp_rank_00_001: run ", "not the run"}},
		{"rank file of another conversion without stamp", pp2, func(t *testing.T, mca string) {
			other := convert(t, src2, pp2)
			rel := filepath.Join("iter_0000001", "mp_rank_00_001")
			if err := copyDir(filepath.Join(other, rel), filepath.Join(mca, rel)); err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(mca, rel, exec.RunStampName))
		}, []string{"mp_rank_00_001: no run stamp"}},
		{"mca_config.json of another conversion", pp2, func(t *testing.T, mca string) {
			other := convert(t, src2, pp2)
			b, _ := os.ReadFile(filepath.Join(other, exec.MCAConfigName))
			writeFile(t, filepath.Join(mca, exec.MCAConfigName), b)
		}, []string{"mp_rank_00_000, mp_rank_00_001: run", "not the run"}},
		{"no stamps (ROLL, Megatron)", pp2, func(t *testing.T, mca string) {
			for _, d := range []string{"mp_rank_00_000", "mp_rank_00_001"} {
				os.Remove(filepath.Join(mca, "iter_0000001", d, exec.RunStampName))
			}
			for _, k := range []string{exec.RunKey, exec.TemplateKey, exec.TemplateDigestKey} {
				setJSONKey(t, filepath.Join(mca, exec.MCAConfigName), k, nil)
			}
			os.Remove(filepath.Join(mca, exec.TrackerName))
		}, nil},
		{"no stamps, single rank", exec.Layout{}, func(t *testing.T, mca string) {
			os.Remove(filepath.Join(mca, "iter_0000001", "mp_rank_00", exec.RunStampName))
			setJSONKey(t, filepath.Join(mca, exec.MCAConfigName), exec.RunKey, nil)
		}, nil},
		{"corrupt stamp", pp2, func(t *testing.T, mca string) {
			writeFile(t, filepath.Join(mca, "iter_0000001", "mp_rank_00_001", exec.RunStampName), []byte(`{"run": 7`))
		}, []string{filepath.Join("mp_rank_00_001", exec.RunStampName) + ": not a run stamp"}},
		{"stamp is not a file", pp2, func(t *testing.T, mca string) {
			p := filepath.Join(mca, "iter_0000001", "mp_rank_00_001", exec.RunStampName)
			os.Remove(p)
			os.Mkdir(p, 0o755)
		}, []string{filepath.Join("mp_rank_00_001", exec.RunStampName) + ": a directory, not a regular file"}},
		{"stamped", pp2, func(t *testing.T, mca string) {}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			mca := convert(t, src, c.layout)
			c.edit(t, mca)
			err := back(mca)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestConvertJobsDuplicate runs two copies of the same rank job at once
// (a requeued job while the first still runs): both succeed, and the
// finalized output is byte-identical to a one-job conversion.
func TestConvertJobsDuplicate(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthDeep("llama", tensor.BF16).write(t, src, 1, 8)
	m := stdlibModel(t, "llama")
	ctx := context.Background()
	l := exec.Layout{PP: 2}
	one := filepath.Join(dir, "one")
	if _, err := exec.ConvertHFToMCA(ctx, m, src, one, exec.Options{Layout: l}); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared")
	for range 3 {
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				_, err := exec.ConvertHFToMCA(ctx, m, src, shared, exec.Options{Layout: l, Ranks: []int{0, 1}})
				errs <- err
			}()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := exec.ConvertHFToMCA(ctx, m, src, shared, exec.Options{Layout: l, Finalize: true}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, one, shared)
}
