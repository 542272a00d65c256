package exec_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// writeFP8BenchCheckpoint writes a Llama-shaped FP8 block-quantized
// checkpoint of at least total bytes (F8_E4M3 projections with F32 scale
// grids of 128x128 blocks, BF16 embeddings and norms; shards of at most
// 5 GB with an index), from reused buffers.
func writeFP8BenchCheckpoint(t testing.TB, dir string, total int64) {
	t.Helper()
	// The projections are F8 (one byte a parameter, plus 1/32768 in
	// scales): as many layers as make the checkpoint total bytes, so its
	// dequantized output is about twice that, mostly decoded weights.
	s := benchLlama(0)
	hd := s.hidden / s.heads
	proj := 2*s.hidden*s.heads*hd + 2*s.kv*hd*s.hidden + 3*s.inter*s.hidden
	perLayer := proj + proj/(128*128)*4 + 2*2*s.hidden
	fixed := 2 * (2*s.vocab*s.hidden + s.hidden)
	s.layers = max(1, (total-fixed+perLayer-1)/perLayer)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := strings.TrimSuffix(strings.TrimSpace(string(s.config())), "}") +
		`,  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}}`
	writeFile(t, filepath.Join(dir, "config.json"), []byte(cfg))
	var specs []safetensors.Spec
	for _, sp := range s.specs() {
		if strings.HasSuffix(sp.Name, "_proj.weight") {
			g := tensor.Shape{(sp.Shape[0] + 127) / 128, (sp.Shape[1] + 127) / 128}
			specs = append(specs, safetensors.Spec{Name: sp.Name, DType: tensor.F8E4M3, Shape: sp.Shape},
				safetensors.Spec{Name: sp.Name + "_scale_inv", DType: tensor.F32, Shape: g})
			continue
		}
		specs = append(specs, sp)
	}
	rng := rand.New(rand.NewPCG(8, 8))
	codes := make([]byte, 32<<20)
	for i := range codes {
		for codes[i] = byte(rng.Uint32()); codes[i]&0x7F == 0x7F; codes[i] = byte(rng.Uint32()) {
		}
	}
	var scales []byte
	for range 1 << 16 {
		scales = binary.LittleEndian.AppendUint32(scales, math.Float32bits(float32(math.Ldexp(1+rng.Float64(), -12))))
	}
	size := func(sp safetensors.Spec) int64 { return sp.Shape.NumElements() * int64(sp.DType.Size()) }
	var shards [][]safetensors.Spec
	var cur []safetensors.Spec
	var curSize, all int64
	for _, sp := range specs {
		if len(cur) > 0 && curSize+size(sp) > exec.DefaultMaxShardSize {
			shards, cur, curSize = append(shards, cur), nil, 0
		}
		cur, curSize, all = append(cur, sp), curSize+size(sp), all+size(sp)
	}
	shards = append(shards, cur)
	weightMap := map[string]string{}
	for i, part := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		safetensors.SortSpecs(part)
		err := safetensors.WriteFile(filepath.Join(dir, name), part, map[string]string{"format": "pt"}, func(w *safetensors.Writer) error {
			for j, sp := range part {
				tw, err := w.Next(sp.Name)
				if err != nil {
					return err
				}
				buf := codes // F8 codes, and bytes of any other tensor
				if sp.DType == tensor.F32 {
					buf = scales
				}
				n, off := size(sp), int64(j*4099)%int64(len(buf)/2)&^3
				for n > 0 {
					k := min(n, int64(len(buf))-off)
					if _, err := tw.Write(buf[off : off+k]); err != nil {
						return err
					}
					n -= k
					off = 0
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, sp := range part {
			weightMap[sp.Name] = name
		}
	}
	if err := safetensors.WriteIndex(filepath.Join(dir, safetensors.IndexFileName), weightMap, all); err != nil {
		t.Fatal(err)
	}
}

// resetPeakRSS resets the process's peak resident set size (Linux:
// /proc/self/clear_refs) and returns a function reading it (VmHWM, bytes;
// 0 where unsupported).
func resetPeakRSS() func() int64 {
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	return func() int64 {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return 0
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
		return 0
	}
}

// BenchmarkFP8ConvertVsCopy is issue 12's acceptance 5: an FP8 checkpoint
// of ROLLTPL_BENCH_GIB GiB (default 2; use e.g. 0.05 for a smoke run) is
// converted HF -> MCA (dequantizing, at TP 1 and 4) and dequantized
// HF -> HF, and in every iteration the output of that same conversion,
// kept from a first run, is copied file by file (the output's byte count:
// twice the FP8 weights), after a sync on a warm page cache. It reports
// the medians and the median ratio conversion / copy (target <= 1.3) and
// the peak RSS of the conversions (VmHWM reset before each; target: the
// same at every size).
func BenchmarkFP8ConvertVsCopy(b *testing.B) {
	gib := 2.0
	if s := os.Getenv("ROLLTPL_BENCH_GIB"); s != "" {
		var err error
		if gib, err = strconv.ParseFloat(s, 64); err != nil {
			b.Fatal(err)
		}
	}
	sync := os.Getenv("ROLLTPL_BENCH_SYNC") == "1"
	dir := b.TempDir()
	src := filepath.Join(dir, "fp8")
	writeFP8BenchCheckpoint(b, src, int64(gib*(1<<30)))
	m := stdlibModel(b, "llama")
	run := func(name string, convert func(dst string) error) {
		b.Run(name, func(b *testing.B) {
			kept := filepath.Join(dir, "out-"+strings.ReplaceAll(name, "/", "-"))
			if err := convert(kept); err != nil {
				b.Fatal(err)
			}
			var peak int64
			convertVsCopy(b, kept, sync, func(dst string) error {
				rss := resetPeakRSS()
				err := convert(dst)
				peak = max(peak, rss())
				return err
			}, src)
			b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
			os.RemoveAll(kept)
		})
	}
	for _, tp := range []int{1, 4} {
		run(fmt.Sprintf("HFToMCA/tp%d", tp), func(dst string) error {
			_, err := exec.ConvertHFToMCA(context.Background(), m, src, dst, exec.Options{Layout: exec.Layout{TP: tp}, Sync: sync})
			return err
		})
	}
	run("Dequantize", func(dst string) error {
		_, err := exec.DequantizeHF(context.Background(), src, dst, exec.DequantizeOptions{Sync: sync, Scales: m.Template.Scales})
		return err
	})
}
