package shard

import (
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler/ir"
)

// TestLayoutBounds: a size or count from a hostile config is refused
// before a table is sized from it, alone and as a product.
func TestLayoutBounds(t *testing.T) {
	for _, tc := range []struct {
		l    Layout
		want string
	}{
		{Layout{TP: 1 << 30, NumLayers: 4}, "tensor_model_parallel_size 1073741824 is larger than 65536"},
		{Layout{PP: math.MaxInt32, NumLayers: 4}, "pipeline_model_parallel_size 2147483647 is larger than 65536"},
		{Layout{VPP: 100_000_000, NumLayers: 4}, "virtual_pipeline_model_parallel_size 100000000 is larger than 65536"},
		{Layout{EP: math.MaxInt32, NumLayers: 4, NumExperts: 8}, "expert_model_parallel_size 2147483647 is larger than 65536"},
		{Layout{NumExperts: 1 << 30, NumLayers: 4}, "num_moe_experts 1073741824 is larger than 65536"},
		{Layout{NumLayers: 1_000_000_000}, "num_layers 1000000000 is larger than 65536"},
		{Layout{MTPNumLayers: 1 << 20, NumLayers: 4}, "mtp_num_layers 1048576 is larger than 65536"},
		{Layout{TP: 256, PP: 256, EP: 2, NumLayers: 256, NumExperts: 2}, "= 131072 rank files, more than 65536"},
		{Layout{PP: 1024, VPP: 1024, NumLayers: 4}, "= 1048576 pipeline stages, more than 65536"},
		{Layout{PipelineLayout: strings.Repeat("t|", 1<<17) + "t", NumLayers: 1<<17 + 1}, "num_layers 131073 is larger than 65536"},
	} {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		err := tc.l.Validate()
		runtime.ReadMemStats(&ms)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.l, err, tc.want)
		}
		if n := ms.TotalAlloc - before; n > 64<<20 {
			t.Errorf("%q: allocated %d MB", tc.want, n>>20)
		}
	}
}

// TestParseStageKey: ParseStageKey inverts StageKey without allocating
// per stage, and names the valid range otherwise.
func TestParseStageKey(t *testing.T) {
	big := Layout{VPP: ir.MaxCount}
	for _, tc := range []struct {
		key  string
		l    Layout
		vp   int
		want string
	}{
		{"model", Layout{}, 0, ""},
		{"model0", Layout{}, 0, `state-dict key "model0" is not "model" (no virtual pipeline)`},
		{"model0", big, 0, ""},
		{"model65535", big, 65535, ""},
		{"model65536", big, 0, `state-dict key "model65536" is not one of "model0" … "model65535" (virtual pipeline size 65536)`},
		{"model01", big, 0, `is not one of`},
		{"model-1", big, 0, `is not one of`},
		{"model+1", big, 0, `is not one of`},
		{"model", big, 0, `is not one of`},
	} {
		vp, err := ParseStageKey(tc.key, tc.l)
		if tc.want == "" {
			if err != nil || vp != tc.vp {
				t.Errorf("%q: %d, %v; want %d", tc.key, vp, err, tc.vp)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.key, err, tc.want)
		}
	}
	for vp := range 3 {
		l := Layout{VPP: 3}
		if got, err := ParseStageKey(StageKey(vp, l), l); err != nil || got != vp {
			t.Errorf("round trip %d: %d %v", vp, got, err)
		}
	}
	allocs := testing.AllocsPerRun(10, func() { ParseStageKey("model65535", big) })
	if allocs > 0 {
		t.Errorf("%v allocations per call", allocs)
	}
}
