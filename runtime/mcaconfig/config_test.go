package mcaconfig_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/runtime/mcaconfig"
	"github.com/rolltpl/rolltpl/runtime/shard"
)

// TestLayout reads the parallel layout and the model facts placement
// needs from an mca_config.json, as one shard.Layout.
func TestLayout(t *testing.T) {
	for _, c := range []struct {
		name, text string
		want       shard.Layout
	}{
		{"absent sizes", `{"num_layers": 2, "hidden_size": 8, "num_attention_heads": 2}`, shard.Layout{NumLayers: 2}},
		{"null sizes", `{"num_layers": 2, "hidden_size": 8, "num_attention_heads": 2, "tensor_model_parallel_size": null,
			"virtual_pipeline_model_parallel_size": null}`, shard.Layout{NumLayers: 2}},
		{"moe", `{"num_layers": 4, "hidden_size": 8, "num_attention_heads": 2, "tensor_model_parallel_size": 2,
			"pipeline_model_parallel_size": 2, "expert_model_parallel_size": 2, "expert_tensor_parallel_size": 1,
			"num_moe_experts": 4, "moe_grouped_gemm": true, "swiglu": true, "tie_embeddings_and_output_weights": true,
			"account_for_loss_in_pipeline_split": true, "transformer_impl": "transformer_engine"}`,
			shard.Layout{TP: 2, PP: 2, EP: 2, ETP: 1, NumLayers: 4, NumExperts: 4, MoEGroupedGEMM: true, TEGroupedMoE: true,
				Swiglu: true, TiedEmbeddings: true, AccountForLoss: true, TransformerImpl: "transformer_engine"}},
		{"legacy grouped, local", `{"num_layers": 2, "hidden_size": 8, "num_attention_heads": 2, "moe_grouped_gemm": true,
			"moe_use_legacy_grouped_gemm": true, "transformer_impl": "local", "pipeline_model_parallel_layout": "Et|tL"}`,
			shard.Layout{NumLayers: 2, MoEGroupedGEMM: true, LegacyGroupedGEMM: true, TransformerImpl: "local", PipelineLayout: "Et|tL"}},
		{"gdn", `{"num_layers": 2, "hidden_size": 8, "num_attention_heads": 2, "linear_num_key_heads": 2,
			"linear_num_value_heads": 4, "linear_key_head_dim": 8, "linear_value_head_dim": 16, "mtp_num_layers": 1}`,
			shard.Layout{NumLayers: 2, MTPNumLayers: 1, LinearNumKeyHeads: 2, LinearNumValueHeads: 4, LinearKeyHeadDim: 8, LinearValueHeadDim: 16}},
	} {
		mc, err := mcaconfig.Parse("mca_config.json", []byte(c.text))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if d := cmp.Diff(c.want, mc.Layout()); d != "" {
			t.Errorf("%s: Layout (-want +got):\n%s", c.name, d)
		}
	}
}

// TestValidate checks that bad values are reported together, naming the
// file and each key, and that the rank-file and stage counts are bounded.
func TestValidate(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{`{"num_layers": 2, "hidden_size": 8, "num_attention_heads": 2}`, ""},
		{`{"hidden_size": 8.0, "num_attention_heads": 2}`, "m.json: 2 invalid values:\n  num_layers is missing"},
		{`{"num_layers": 2, "hidden_size": 8, "num_attention_heads": 2, "tensor_model_parallel_size": 65536, "pipeline_model_parallel_size": 2}`,
			"m.json: tensor_model_parallel_size 65536 × pipeline_model_parallel_size 2 × expert_model_parallel_size 1 = 131072 rank files, more than 65536"},
		{`{"num_layers": 2, "hidden_size": 8, "num_attention_heads": 2, "pipeline_model_parallel_size": 512, "virtual_pipeline_model_parallel_size": 512}`,
			"pipeline_model_parallel_size 512 × virtual_pipeline_model_parallel_size 512 = 262144 pipeline stages, more than 65536"},
		{`[1]`, "m.json: not a JSON object"},
	} {
		_, err := mcaconfig.Parse("m.json", []byte(c.text))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.text, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want %q", c.text, err, c.want)
		}
	}
}
