package shard

import (
	"runtime"
	"strings"
	"testing"
)

// TestLayoutBounds: a size or count from a hostile config is refused
// before a table is sized from it, alone and as a product.
func TestLayoutBounds(t *testing.T) {
	for _, tc := range []struct {
		l    Layout
		want string
	}{
		{Layout{TP: 1 << 32, NumLayers: 4}, "tensor_model_parallel_size 4294967296 is larger than 65536"},
		{Layout{PP: 1 << 32, NumLayers: 4}, "pipeline_model_parallel_size 4294967296 is larger than 65536"},
		{Layout{VPP: 100_000_000, NumLayers: 4}, "virtual_pipeline_model_parallel_size 100000000 is larger than 65536"},
		{Layout{EP: 1 << 40, NumLayers: 4, NumExperts: 8}, "expert_model_parallel_size 1099511627776 is larger than 65536"},
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
