package exec_test

import (
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
	per := (len(specs) + n - 1) / n
	var parts [][]safetensors.Spec
	for i := 0; i*per < len(specs); i++ {
		parts = append(parts, specs[i*per:min(len(specs), (i+1)*per)])
	}
	writeSparseShards(tb, dir, cfg, parts)
}
