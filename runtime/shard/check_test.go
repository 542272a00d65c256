package shard

import (
	"strings"
	"testing"
)

// TestCheck checks the layout bounds known before the model (flag
// names in the messages) and Single, the one-rank-file layout.
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		l      Layout
		err    string
		single bool
	}{
		{Layout{}, "", true},
		{Layout{TP: 1, PP: 1, VPP: 1, EP: 1, ETP: 1, TransformerImpl: ImplTransformerEngine}, "", true},
		{Layout{TP: 2}, "", false},
		{Layout{VPP: 2}, "", false},
		{Layout{TransformerImpl: ImplLocal}, "", false},
		{Layout{MoEGroupedGEMM: true}, "", false},
		{Layout{PipelineLayout: "Et|tL"}, "", false}, // two stages at PP 1: VPP 2
		{Layout{TP: -1}, "tp=-1 is negative", false},
		{Layout{ETP: MaxCount + 1}, "etp=65537 is larger than 65536", false},
		{Layout{TP: MaxCount, PP: 2}, "tp=65536 × pp=2 × ep=1 = 131072 rank files, more than 65536", false},
		{Layout{PP: 1024, VPP: 1024}, "pp=1024 × vpp=1024 = 1048576 pipeline stages", false},
		{Layout{LegacyGroupedGEMM: true}, "legacy grouped GEMM needs moe_grouped_gemm", false},
		{Layout{TransformerImpl: "te"}, `transformer_impl "te" is neither`, false},
	} {
		err := c.l.Check()
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%+v: %v", c.l, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%+v: got %v, want %q", c.l, err, c.err)
		}
		if c.err == "" && c.l.Single() != c.single {
			t.Errorf("%+v: Single() = %v, want %v", c.l, !c.single, c.single)
		}
	}
}
