package exec_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// BenchmarkPlanCheckpointRealSize is `rolltplc check --checkpoint` of the
// real DeepSeek-V3 (671B, MTP layer included) at TP8+EP8, from the
// headers of a sparse checkpoint split into 163 shards as the published
// one is: read the index and every header, plan, and plan the rank
// files. Only the headers are read.
func BenchmarkPlanCheckpointRealSize(b *testing.B) {
	cfg := deepSeekV3.config(b, false, true)
	specs := deepSpecs(cfg, tensor.BF16)
	dir := filepath.Join(b.TempDir(), "hf")
	writeHeaderShards(b, dir, cfg, specs, 163)
	m := stdlibModel(b, deepSeekV3.modelType)
	b.Logf("%d tensors in 163 shards", len(specs))
	for b.Loop() {
		cp, err := exec.PlanConversion(m, dir, exec.Layout{TP: 8, EP: 8})
		if err != nil {
			b.Fatal(err)
		}
		if err := cp.Plan.Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// writeHeaderShards writes config.json (cfg) and specs as n shards of
// consecutive tensors whose data are holes, with their index.
func writeHeaderShards(tb testing.TB, dir string, cfg map[string]any, specs []safetensors.Spec, n int) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	text, err := json.Marshal(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), text, 0o644); err != nil {
		tb.Fatal(err)
	}
	per := (len(specs) + n - 1) / n
	weightMap := map[string]string{}
	var total int64
	for i := 0; i*per < len(specs); i++ {
		part := specs[i*per : min(len(specs), (i+1)*per)]
		name := fmt.Sprintf("model-%05d-of-%06d.safetensors", i+1, n)
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			tb.Fatal(err)
		}
		w, err := safetensors.NewWriter(f, part, map[string]string{"format": "pt"})
		if err == nil {
			err = f.Truncate(w.Size())
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			tb.Fatal(err)
		}
		for _, sp := range part {
			weightMap[sp.Name] = name
			total += sp.Shape.NumElements() * int64(sp.DType.Size())
		}
	}
	if err := safetensors.WriteIndex(filepath.Join(dir, safetensors.IndexFileName), weightMap, total); err != nil {
		tb.Fatal(err)
	}
}
