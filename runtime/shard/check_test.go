package shard

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/compiler/ir"
)

// TestCheck checks the layout bounds known before the model (flag
// names in the messages).
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		l   Layout
		err string
	}{
		{Layout{}, ""},
		{Layout{TP: 1, PP: 1, VPP: 1, EP: 1, ETP: 1, TransformerImpl: ImplTransformerEngine}, ""},
		{Layout{TP: 2}, ""},
		{Layout{VPP: 2}, ""},
		{Layout{TransformerImpl: ImplLocal}, ""},
		{Layout{MoEGroupedGEMM: true}, ""},
		{Layout{PipelineLayout: "Et|tL"}, ""},
		{Layout{TP: -1}, "tp=-1 is negative"},
		{Layout{ETP: ir.MaxCount + 1}, "etp=65537 is larger than 65536"},
		{Layout{TP: ir.MaxCount, PP: 2}, "tp=65536 × pp=2 × ep=1 = 131072 rank files, more than 65536"},
		{Layout{PP: 1024, VPP: 1024}, "pp=1024 × vpp=1024 = 1048576 pipeline stages"},
		{Layout{LegacyGroupedGEMM: true}, "legacy grouped GEMM needs moe_grouped_gemm"},
		{Layout{TransformerImpl: "te"}, `transformer_impl "te" is neither`},
	} {
		err := c.l.Check()
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%+v: %v", c.l, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%+v: got %v, want %q", c.l, err, c.err)
		}
	}
}

// TestDivisibilityProblems checks the one set of divisibility rules: every
// problem at once, by config key, and no layer check with a pipeline
// layout string.
func TestDivisibilityProblems(t *testing.T) {
	sizes := map[string]int64{"num_attention_heads": 14, "num_query_groups": 2, "ffn_hidden_size": 64, "moe_ffn_hidden_size": 6}
	size := func(k string) (int64, bool) { v, ok := sizes[k]; return v, ok }
	for _, c := range []struct {
		l    Layout
		want []string
	}{
		{Layout{NumLayers: 2}, nil},
		{Layout{NumLayers: 2, TP: 4, PP: 3}, []string{"num_attention_heads 14 is not divisible by tp 4",
			"num_query_groups 2 is not divisible by tp 4", "moe_ffn_hidden_size 6 is not divisible by etp 4", "num_layers 2 is not divisible by PP×VPP = 3"}},
		{Layout{NumLayers: 3, PP: 2, AccountForLoss: true, TP: 2}, nil},
		{Layout{NumLayers: 3, PP: 2, AccountForLoss: true, AccountForEmbedding: true}, []string{"num_layers 3 (+1 embedding +1 loss = 5) is not divisible by PP×VPP = 2"}},
		{Layout{NumLayers: 2, PP: 3, PipelineLayout: "Et|t|tL"}, nil},
		{Layout{NumLayers: 2, EP: 4, NumExperts: 6, TP: 4, ETP: 4}, []string{"num_attention_heads 14 is not divisible by tp 4",
			"num_query_groups 2 is not divisible by tp 4", "moe_ffn_hidden_size 6 is not divisible by etp 4", "num_moe_experts 6 is not divisible by EP = 4"}},
		{Layout{NumLayers: 2, EP: 2}, []string{"expert_model_parallel_size 2 needs num_moe_experts"}},
	} {
		if d := cmp.Diff(c.want, c.l.DivisibilityProblems(size)); d != "" {
			t.Errorf("%+v (-want +got):\n%s", c.l, d)
		}
	}
}

// TestPipelineLayoutParsedOnce checks that the pipeline layout string is
// parsed when the Sharder is made, not again for every piece: the
// per-piece helpers (RankDir, ParseStageKey) on the Sharder's layout
// allocate nothing, where on the raw layout each call parses the string.
func TestPipelineLayoutParsedOnce(t *testing.T) {
	raw := Layout{PP: 2, NumLayers: 4, PipelineLayout: "Et|t|t|tL"}
	sh, err := New(raw, Classification{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := sh.Layout()
	if l.VPP != 2 {
		t.Fatalf("VPP %d, want 2 from the pipeline layout", l.VPP)
	}
	perPiece := func(l Layout) func() {
		return func() {
			if _, err := ParseStageKey("model1", l); err != nil {
				t.Fatal(err)
			}
			_ = l.Normalized()
		}
	}
	if n := testing.AllocsPerRun(100, perPiece(l)); n != 0 {
		t.Errorf("per-piece helpers on the Sharder's layout allocate %v times: the pipeline layout is parsed again", n)
	}
	if n := testing.AllocsPerRun(100, perPiece(raw)); n == 0 {
		t.Errorf("the raw layout needs no parse; the check above proves nothing")
	}
}
