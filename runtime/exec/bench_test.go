package exec_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// llamaShape is a Llama-3-shaped decoder scaled to a target size: fixed
// layer shapes (so that per-tensor memory does not grow with the model),
// as many layers as fit.
type llamaShape struct {
	vocab, hidden, inter, heads, kv, layers int64
	tied                                    bool
}

// benchLlama returns a Llama-3-8B-proportioned shape (GQA 4:1, FFN 3.5×)
// of at least total bytes in bf16.
func benchLlama(total int64) llamaShape {
	s := llamaShape{vocab: 64128, hidden: 2048, inter: 7168, heads: 16, kv: 4}
	hd := s.hidden / s.heads
	perLayer := 2 * (2*s.hidden*s.heads*hd + 2*s.kv*hd*s.hidden + 3*s.inter*s.hidden + 2*s.hidden)
	fixed := 2 * (2*s.vocab*s.hidden + s.hidden)
	s.layers = max(1, (total-fixed+perLayer-1)/perLayer)
	return s
}

func (s llamaShape) specs() []safetensors.Spec {
	hd := s.hidden / s.heads
	var out []safetensors.Spec
	add := func(name string, shape ...int64) {
		out = append(out, safetensors.Spec{Name: name, DType: tensor.BF16, Shape: shape})
	}
	add("model.embed_tokens.weight", s.vocab, s.hidden)
	for l := range s.layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", s.hidden)
		add(p+"self_attn.q_proj.weight", s.heads*hd, s.hidden)
		add(p+"self_attn.k_proj.weight", s.kv*hd, s.hidden)
		add(p+"self_attn.v_proj.weight", s.kv*hd, s.hidden)
		add(p+"self_attn.o_proj.weight", s.hidden, s.heads*hd)
		add(p+"post_attention_layernorm.weight", s.hidden)
		add(p+"mlp.gate_proj.weight", s.inter, s.hidden)
		add(p+"mlp.up_proj.weight", s.inter, s.hidden)
		add(p+"mlp.down_proj.weight", s.hidden, s.inter)
	}
	add("model.norm.weight", s.hidden)
	if !s.tied {
		add("lm_head.weight", s.vocab, s.hidden)
	}
	return out
}

func (s llamaShape) config() []byte {
	b, _ := json.MarshalIndent(map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "vocab_size": s.vocab,
		"hidden_size": s.hidden, "intermediate_size": s.inter, "num_hidden_layers": s.layers,
		"num_attention_heads": s.heads, "num_key_value_heads": s.kv, "rms_norm_eps": 1e-05,
		"rope_theta": 500000.0, "max_position_embeddings": 8192, "tie_word_embeddings": s.tied,
		"torch_dtype": "bfloat16", "attention_bias": false, "hidden_act": "silu",
	}, "", "  ")
	return b
}

// writeBenchCheckpoint writes the checkpoint for s into dir in HF's layout
// (shards of at most 5 GB in name order, index). With sparse, the data
// region is a hole (for header-only checks); otherwise it is filled from a
// reused random buffer.
func writeBenchCheckpoint(t testing.TB, dir string, s llamaShape, sparse bool) int64 {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "config.json"), s.config())
	writeFile(t, filepath.Join(dir, "tokenizer_config.json"), []byte(`{"model_max_length": 8192}`))
	specs := s.specs()
	size := func(sp safetensors.Spec) int64 { return sp.Shape.NumElements() * int64(sp.DType.Size()) }
	var shards [][]safetensors.Spec
	var cur []safetensors.Spec
	var curSize, total int64
	for _, sp := range specs {
		if len(cur) > 0 && curSize+size(sp) > exec.DefaultMaxShardSize {
			shards, cur, curSize = append(shards, cur), nil, 0
		}
		cur = append(cur, sp)
		curSize += size(sp)
		total += size(sp)
	}
	shards = append(shards, cur)
	rng := rand.New(rand.NewPCG(42, 42))
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	weightMap := map[string]string{}
	for i, part := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		w, err := safetensors.NewWriter(f, part, map[string]string{"format": "pt"})
		if err != nil {
			t.Fatal(err)
		}
		if sparse {
			if err := f.Truncate(w.Size()); err != nil {
				t.Fatal(err)
			}
		} else {
			for j, sp := range part {
				tw, err := w.Next(sp.Name)
				if err != nil {
					t.Fatal(err)
				}
				n, off := size(sp), int64(j*4099)%int64(len(buf)/2)
				for n > 0 {
					k := min(n, int64(len(buf))-off)
					if _, err := tw.Write(buf[off : off+k]); err != nil {
						t.Fatal(err)
					}
					n -= k
					off = 0
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		for _, sp := range part {
			weightMap[sp.Name] = name
		}
	}
	if err := safetensors.WriteIndex(filepath.Join(dir, safetensors.IndexFileName), weightMap, total); err != nil {
		t.Fatal(err)
	}
	return total
}

// TestGenerateBenchCheckpoint writes the benchmark checkpoint of
// runtime/exec/bench/bench.sh: a Llama-shaped bf16 checkpoint of
// ROLLTPL_BENCH_GIB GiB (default 2) in ROLLTPL_BENCH_OUT. Skipped unless
// ROLLTPL_BENCH_OUT is set.
func TestGenerateBenchCheckpoint(t *testing.T) {
	out := os.Getenv("ROLLTPL_BENCH_OUT")
	if out == "" {
		t.Skip("set ROLLTPL_BENCH_OUT to generate the benchmark checkpoint")
	}
	gib := 2.0
	if s := os.Getenv("ROLLTPL_BENCH_GIB"); s != "" {
		var err error
		if gib, err = strconv.ParseFloat(s, 64); err != nil {
			t.Fatal(err)
		}
	}
	s := benchLlama(int64(gib * (1 << 30)))
	n := writeBenchCheckpoint(t, out, s, false)
	t.Logf("wrote %s: %d layers, %s", out, s.layers, exec.HumanBytes(n))
}

// benchDir holds a generated checkpoint shared by the benchmarks.
var benchDirs = map[int64]string{}

func benchCheckpoint(b *testing.B, size int64) string {
	b.Helper()
	if d, ok := benchDirs[size]; ok {
		return d
	}
	dir, err := os.MkdirTemp("", "rolltpl-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {}) // kept for the other benchmarks; removed by TestMain
	writeBenchCheckpoint(b, filepath.Join(dir, "hf"), benchLlama(size), false)
	benchDirs[size] = dir
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range benchDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

const benchSize = 512 << 20

// BenchmarkConvertHFToMCA converts a 512 MiB Llama-shaped checkpoint
// (warm page cache); compare with BenchmarkCopyCheckpoint.
func BenchmarkConvertHFToMCA(b *testing.B) {
	dir := benchCheckpoint(b, benchSize)
	m := stdlibModel(b, "llama")
	src := filepath.Join(dir, "hf")
	b.SetBytes(dirBytes(b, src))
	b.ResetTimer()
	for i := range b.N {
		dst := filepath.Join(dir, fmt.Sprintf("mca%d", i))
		if _, err := exec.ConvertHFToMCA(context.Background(), m, src, dst, exec.Options{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
	}
}

// BenchmarkConvertMCAToHF converts the MCA form of the same checkpoint
// back.
func BenchmarkConvertMCAToHF(b *testing.B) {
	dir := benchCheckpoint(b, benchSize)
	m := stdlibModel(b, "llama")
	mca := filepath.Join(dir, "mca")
	if !exec.IsMCA(mca) {
		if _, err := exec.ConvertHFToMCA(context.Background(), m, filepath.Join(dir, "hf"), mca, exec.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(dirBytes(b, filepath.Join(dir, "hf")))
	b.ResetTimer()
	for i := range b.N {
		dst := filepath.Join(dir, fmt.Sprintf("back%d", i))
		if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, dst, exec.Options{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
	}
}

// BenchmarkCopyCheckpoint copies the same files with io.Copy
// (copy_file_range, as cp does): the baseline the conversion is measured
// against; BenchmarkConvertVsCopy reports the ratio itself.
func BenchmarkCopyCheckpoint(b *testing.B) {
	dir := benchCheckpoint(b, benchSize)
	src := filepath.Join(dir, "hf")
	b.SetBytes(dirBytes(b, src))
	b.ResetTimer()
	for i := range b.N {
		dst := filepath.Join(dir, fmt.Sprintf("cp%d", i))
		if err := copyDir(src, dst); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
	}
}

// BenchmarkConvertVsCopy is acceptance 4 of the runtime (issue 4) and of
// issue 15 in one process: a Llama-shaped checkpoint of ROLLTPL_BENCH_GIB
// GiB (default 2) is converted in both directions, at TP 1 and 4
// (sub-benchmarks HFToMCA/tpN: the HF folder written with --tp N;
// MCAToHF/tpN: the MCA folder written with --tp N converted back), and in
// every iteration the source folder is also copied file by file (io.Copy:
// copy_file_range, as cp does), each after a sync and on a warm page
// cache. With ROLLTPL_BENCH_SYNC=1 both sides include writing the data to
// disk (copy then sync(2); Options.Sync). It reports the median of each,
// and the median of the per-iteration ratios conversion / copy (targets:
// HF -> MCA <= 1.3, MCA -> HF <= 1.1). runtime/exec/bench/bench.sh
// measures the same against cp -r, with peak RSS.
func BenchmarkConvertVsCopy(b *testing.B) {
	gib := 2.0
	if s := os.Getenv("ROLLTPL_BENCH_GIB"); s != "" {
		var err error
		if gib, err = strconv.ParseFloat(s, 64); err != nil {
			b.Fatal(err)
		}
	}
	sync := os.Getenv("ROLLTPL_BENCH_SYNC") == "1"
	dir := benchCheckpoint(b, int64(gib*(1<<30)))
	m := stdlibModel(b, "llama")
	hf := filepath.Join(dir, "hf")
	for _, tp := range []int{1, 4} {
		opts := exec.Options{Layout: exec.Layout{TP: tp}, Sync: sync}
		b.Run(fmt.Sprintf("HFToMCA/tp%d", tp), func(b *testing.B) {
			convertVsCopy(b, hf, sync, func(dst string) error {
				_, err := exec.ConvertHFToMCA(context.Background(), m, hf, dst, opts)
				return err
			})
		})
		mca := filepath.Join(dir, fmt.Sprintf("mca-tp%d", tp))
		if !exec.IsMCA(mca) {
			if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{Layout: exec.Layout{TP: tp}}); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("MCAToHF/tp%d", tp), func(b *testing.B) {
			convertVsCopy(b, mca, sync, func(dst string) error {
				_, err := exec.ConvertMCAToHF(context.Background(), m, mca, dst, exec.Options{Sync: sync})
				return err
			})
		})
	}
}

// convertVsCopy times, b.N times each on a warm page cache, a copy of the
// folder src and convert, and reports their medians and the median ratio.
// The folders inputs (the conversion's source, when it is not src) are
// read into the page cache before each timing too.
func convertVsCopy(b *testing.B, src string, sync bool, convert func(dst string) error, inputs ...string) {
	b.SetBytes(treeBytes(b, src))
	warm := func() {
		b.StopTimer()
		syscall.Sync()
		for _, dir := range append([]string{src}, inputs...) {
			filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					if f, err := os.Open(path); err == nil {
						io.Copy(io.Discard, f)
						f.Close()
					}
				}
				return nil
			})
		}
		b.StartTimer()
	}
	dst := filepath.Join(filepath.Dir(src), "vs")
	var cps, convs, ratios, cpuRatios []float64
	// timed runs f after warm and returns its wall and CPU seconds.
	timed := func(f func() error) (float64, float64) {
		warm()
		t0, c0 := time.Now(), cpuTime()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		wall, cpu := time.Since(t0).Seconds(), cpuTime()-c0
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
		return wall, cpu
	}
	copyIt := func() error {
		if err := copyFolder(src, dst); err != nil {
			return err
		}
		if sync {
			syscall.Sync()
		}
		return nil
	}
	for i := range b.N {
		// The order alternates: on the target VM a large write right
		// after another's removal was seen to run alternately slow and
		// fast, which a fixed order would charge to one side.
		var cp, cpCPU, conv, convCPU float64
		if i%2 == 0 {
			cp, cpCPU = timed(copyIt)
			conv, convCPU = timed(func() error { return convert(dst) })
		} else {
			conv, convCPU = timed(func() error { return convert(dst) })
			cp, cpCPU = timed(copyIt)
		}
		cps, convs, ratios = append(cps, cp), append(convs, conv), append(ratios, conv/cp)
		cpuRatios = append(cpuRatios, convCPU/cpCPU)
	}
	b.Logf("cp %.2f, convert %.2f", cps, convs)
	b.ReportMetric(median(cps), "cp-s")
	b.ReportMetric(median(convs), "convert-s")
	b.ReportMetric(median(ratios), "convert/cp")
	// CPU time (user + system) of the process, less sensitive than wall
	// time to other load on a shared machine.
	b.ReportMetric(median(cpuRatios), "cpu-convert/cp")
}

// cpuTime returns the user + system CPU seconds of the process so far.
func cpuTime() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// treeBytes is the size of the tensor files (.safetensors, .pt) under dir.
func treeBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); ext == ".safetensors" || ext == ".pt" {
			st, err := d.Info()
			if err != nil {
				return err
			}
			n += st.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// copyFolder copies the folder src to dst (files with copyDir, folders
// recursively).
func copyFolder(src, dst string) error {
	if err := copyDir(src, dst); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := copyFolder(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			in.Close()
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".safetensors") {
			st, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			n += st.Size()
		}
	}
	return n
}

// sparse16GB writes (once per process) a 16 GB Llama-shaped checkpoint
// whose data regions are holes: only the headers exist on disk.
func sparse16GB(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "rolltpl-sparse16g-"+strconv.Itoa(os.Getpid()))
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		return dir
	}
	writeBenchCheckpoint(t, dir, benchLlama(16<<30), true)
	return dir
}

// readChars returns this process's read(2) byte count (/proc/self/io
// rchar).
func readChars(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip("no /proc/self/io")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Skip("no rchar in /proc/self/io")
	return 0
}

// planHeaders is what `rolltplc check --checkpoint` does: config, index and
// headers, then the plan ([exec.PlanConversion]).
func planHeaders(t testing.TB, m *exec.Model, dir string) *exec.Plan {
	cp, err := exec.PlanConversion(m, dir, exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	return cp.Plan
}

// TestHeaderCheckReadsNoData plans a 16 GB sparse checkpoint and requires
// that fewer bytes were read than its headers, config and index hold
// (times two, for the page cache's read-ahead of small files).
func TestHeaderCheckReadsNoData(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	dir := sparse16GB(t)
	defer os.RemoveAll(dir)
	m := stdlibModel(t, "llama")
	before := readChars(t)
	p := planHeaders(t, m, dir)
	read := readChars(t) - before
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	if p.InBytes() < 16<<30 {
		t.Fatalf("checkpoint is %d bytes", p.InBytes())
	}
	var meta int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		st, _ := os.Stat(filepath.Join(dir, e.Name()))
		if strings.HasSuffix(e.Name(), ".json") {
			meta += st.Size()
		}
	}
	hc, _ := exec.ReadHFCheckpoint(dir)
	for _, f := range hc.Files {
		h, _ := safetensors.ReadHeader(f)
		meta += 8 + h.HeaderLen
	}
	if read > 2*meta+(1<<20) {
		t.Errorf("planning read %d bytes; headers, config and index are %d", read, meta)
	}
	t.Logf("planned %s (%d tensors) reading %d bytes", exec.HumanBytes(p.InBytes()), len(p.Inputs), read)
}

// BenchmarkCheckHeaders16GB measures the header-only check of a 16 GB
// (sparse) checkpoint.
func BenchmarkCheckHeaders16GB(b *testing.B) {
	dir := sparse16GB(b)
	b.Cleanup(func() { os.RemoveAll(dir) })
	m := stdlibModel(b, "llama")
	b.ResetTimer()
	for range b.N {
		if err := planHeaders(b, m, dir).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// readSyscalls returns this process's read system call count
// (/proc/self/io syscr: read and pread).
func readSyscalls(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip("no /proc/self/io")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "syscr: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Skip("no syscr in /proc/self/io")
	return 0
}

// TestMergedRowsReadInWindows converts a TP=4 Llama-shaped checkpoint back
// to HF and requires the shard to be the original byte for byte, with far
// fewer read calls than the rows of the row-parallel weights it merges
// (o_proj and down_proj: every output row is four pieces of 512 B or 1 KiB,
// 16k pieces in all, which were read with one pread each).
func TestMergedRowsReadInWindows(t *testing.T) {
	dir := t.TempDir()
	s := llamaShape{vocab: 1024, hidden: 1024, inter: 2048, heads: 8, kv: 4, layers: 2}
	hf, mca, back := filepath.Join(dir, "hf"), filepath.Join(dir, "mca"), filepath.Join(dir, "back")
	writeBenchCheckpoint(t, hf, s, false)
	m := stdlibModel(t, "llama")
	if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{Layout: exec.Layout{TP: 4}}); err != nil {
		t.Fatal(err)
	}
	pieces := 4 * s.layers * (s.hidden + s.hidden) // o_proj and down_proj rows, four pieces each
	before := readSyscalls(t)
	if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	reads := readSyscalls(t) - before
	name := "model-00001-of-00001.safetensors"
	want, err := os.ReadFile(filepath.Join(hf, name))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(back, name))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s differs from the original after HF -> MCA (TP=4) -> HF", name)
	}
	if reads > pieces/8 {
		t.Errorf("MCA -> HF made %d read calls for %d row pieces of the row-parallel weights", reads, pieces)
	}
	t.Logf("%d read calls for %d row pieces", reads, pieces)
}
