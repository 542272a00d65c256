package shard

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

func TestRankDir(t *testing.T) {
	tests := []struct {
		l    Layout
		r    Rank
		want string
	}{
		{Layout{}, Rank{}, "mp_rank_00"},
		{Layout{TP: 2}, Rank{TP: 1}, "mp_rank_01"},
		{Layout{TP: 16}, Rank{TP: 12}, "mp_rank_12"},
		{Layout{PP: 2}, Rank{PP: 1}, "mp_rank_00_001"},
		{Layout{EP: 4}, Rank{EP: 3}, "mp_rank_00_003"},
		{Layout{TP: 2, PP: 3, EP: 4}, Rank{TP: 1, PP: 2, EP: 3}, "mp_rank_01_002_003"},
		{Layout{TP: 2, PP: 2, VPP: 2}, Rank{TP: 1, PP: 1}, "mp_rank_01_001"}, // VPP is not in the path
		{Layout{TP: 2, ETP: 1, EP: 2}, Rank{TP: 1, EP: 1}, "mp_rank_01_001"}, // nor is ETP
	}
	for _, tc := range tests {
		if got := RankDir(tc.r, tc.l); got != tc.want {
			t.Errorf("RankDir(%v, %+v) = %q, want %q", tc.r, tc.l, got, tc.want)
		}
		back, err := ParseRankDir(tc.want, tc.l)
		if err != nil || back != tc.r {
			t.Errorf("ParseRankDir(%q) = %v, %v; want %v", tc.want, back, err, tc.r)
		}
	}
	for _, bad := range []string{"mp_rank_0", "mp_rank_02", "mp_rank_00_000", "rank_00", "mp_rank_+1"} {
		if _, err := ParseRankDir(bad, Layout{TP: 2}); err == nil {
			t.Errorf("ParseRankDir(%q) succeeded", bad)
		}
	}
}

func TestRanksAndStageKeys(t *testing.T) {
	l := Layout{TP: 2, PP: 2, EP: 2, VPP: 2}
	var dirs []string
	for _, r := range Ranks(l) {
		dirs = append(dirs, RankDir(r, l))
	}
	want := []string{ // tp outermost, then pp, then ep (ROLL's loop order)
		"mp_rank_00_000_000", "mp_rank_00_000_001", "mp_rank_00_001_000", "mp_rank_00_001_001",
		"mp_rank_01_000_000", "mp_rank_01_000_001", "mp_rank_01_001_000", "mp_rank_01_001_001",
	}
	if diff := cmp.Diff(want, dirs); diff != "" {
		t.Errorf("Ranks mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"model0", "model1"}, StageKeys(l)); diff != "" {
		t.Errorf("StageKeys mismatch (-want +got):\n%s", diff)
	}
	for _, l := range []Layout{{}, {VPP: 1}, {PP: 4}} {
		if diff := cmp.Diff([]string{"model"}, StageKeys(l)); diff != "" {
			t.Errorf("StageKeys(%+v) mismatch (-want +got):\n%s", l, diff)
		}
	}
	if got := StageKeys(Layout{PP: 2, PipelineLayout: "Et|t|t|tL", NumLayers: 4}); !cmp.Equal(got, []string{"model0", "model1"}) {
		t.Errorf("StageKeys with a 4-stage layout on PP 2 = %q", got)
	}
}

func TestLayerPlacements(t *testing.T) {
	type lp = LayerPlacement
	tests := []struct {
		name string
		l    Layout
		want []lp
	}{
		{"PP2", Layout{PP: 2, NumLayers: 4}, []lp{{0, 0, 0}, {0, 0, 1}, {1, 0, 0}, {1, 0, 1}}},
		// The spec's example: 8 layers, PP 2, VPP 2 → chunks of 2 in order vp·PP + pp.
		{"PP2_VPP2", Layout{PP: 2, VPP: 2, NumLayers: 8}, []lp{
			{0, 0, 0}, {0, 0, 1}, {1, 0, 0}, {1, 0, 1}, {0, 1, 0}, {0, 1, 1}, {1, 1, 0}, {1, 1, 1}}},
		// 4 layers + embedding + loss over 3 stages: chunks of 2, the first
		// and last hold one layer.
		{"PP3_emb_loss", Layout{PP: 3, NumLayers: 4, AccountForEmbedding: true, AccountForLoss: true},
			[]lp{{0, 0, 0}, {1, 0, 0}, {1, 0, 1}, {2, 0, 0}}},
		{"PP2_emb", Layout{PP: 2, NumLayers: 5, AccountForEmbedding: true}, []lp{{0, 0, 0}, {0, 0, 1}, {1, 0, 0}, {1, 0, 1}, {1, 0, 2}}},
		{"PP2_loss", Layout{PP: 2, NumLayers: 5, AccountForLoss: true}, []lp{{0, 0, 0}, {0, 0, 1}, {0, 0, 2}, {1, 0, 0}, {1, 0, 1}}},
		{"PP2_VPP2_emb_loss", Layout{PP: 2, VPP: 2, NumLayers: 6, AccountForEmbedding: true, AccountForLoss: true},
			[]lp{{0, 0, 0}, {1, 0, 0}, {1, 0, 1}, {0, 1, 0}, {0, 1, 1}, {1, 1, 0}}},
		{"layout", Layout{PP: 2, PipelineLayout: "E(t|)*3,tmL", NumLayers: 4, MTPNumLayers: 1},
			[]lp{{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {1, 1, 0}}},
		{"layout_uneven", Layout{PP: 2, PipelineLayout: "Ettt|tt", NumLayers: 5}, nil},
		{"layout_empty_stage", Layout{PP: 3, PipelineLayout: "E|tt|ttL", NumLayers: 4}, []lp{{1, 0, 0}, {1, 0, 1}, {2, 0, 0}, {2, 0, 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.l.LayerPlacements()
			if tc.want == nil {
				if err == nil {
					t.Fatalf("no error for %+v", tc.l)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("placements mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// Megatron's documented example: DeepSeek-V3, 61 decoder layers + 1 MTP
// layer on PP 16 × VPP 2.
func TestPipelineLayoutDeepSeek(t *testing.T) {
	l := Layout{PP: 16, PipelineLayout: "Et*3|(tt|)*29,m|L", NumLayers: 61, MTPNumLayers: 1}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if n := l.Normalized(); n.VPP != 2 {
		t.Errorf("VPP = %d, want 2", n.VPP)
	}
	got, err := l.LayerPlacements()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		layer int
		want  LayerPlacement
	}{
		{0, LayerPlacement{0, 0, 0}}, {2, LayerPlacement{0, 0, 2}}, {3, LayerPlacement{1, 0, 0}},
		{4, LayerPlacement{1, 0, 1}}, {31, LayerPlacement{15, 0, 0}}, {32, LayerPlacement{15, 0, 1}},
		{33, LayerPlacement{0, 1, 0}}, {60, LayerPlacement{13, 1, 1}},
	} {
		if got[tc.layer] != tc.want {
			t.Errorf("layer %d at %+v, want %+v", tc.layer, got[tc.layer], tc.want)
		}
	}
	pl, _ := parsePipelineLayout(l.PipelineLayout)
	if len(pl.stages) != 32 || string(pl.stages[0]) != "Ettt" || string(pl.stages[30]) != "m" || string(pl.stages[31]) != "L" {
		t.Errorf("stages %q", pl.stages)
	}
}

func TestPipelineLayoutParse(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{"Ettt|tt|tt|ttL", []string{"Ettt", "tt", "tt", "ttL"}, ""},
		{"E,t*3|(tt|)*2,L", []string{"Ettt", "tt", "tt", "L"}, ""},
		{"xy(ab|cd|ef)*2,pq", nil, "invalid layer character"},
		{"(t|)*2,tL", []string{"t", "t", "tL"}, ""},
		{"(|t)*2,tL", []string{"", "t", "ttL"}, ""},
		{"Et*12|tL", []string{"E" + strings.Repeat("t", 12), "tL"}, ""},
		{"E((t|)*2)*2L", nil, "cannot expand"},
		{"Et*|L", nil, "cannot expand"},
		{"Et*99999999L", nil, "longer than"},
	}
	for _, tc := range tests {
		pl, err := parsePipelineLayout(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		var got []string
		for _, s := range pl.stages {
			got = append(got, string(s))
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q mismatch (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestLayoutValidate(t *testing.T) {
	tests := []struct {
		l   Layout
		err string // "" = valid
	}{
		{Layout{NumLayers: 4}, ""},
		{Layout{NumLayers: 30, PP: 2, VPP: 2, AccountForEmbedding: true, AccountForLoss: true}, ""},
		{Layout{NumLayers: 30, PP: 4, AccountForEmbedding: true}, "num_layers 30 (+1 embedding = 31) is not divisible by PP×VPP = 4"},
		{Layout{NumLayers: 30, PP: 2, VPP: 2}, "num_layers 30 is not divisible by PP×VPP = 4"},
		{Layout{NumLayers: 31, PP: 3, VPP: 2, AccountForEmbedding: true, AccountForLoss: true}, "num_layers 31 (+1 embedding +1 loss = 33) is not divisible by PP×VPP = 6"},
		{Layout{}, "num_layers 0 must be positive"},
		{Layout{NumLayers: 4, TP: -1}, "tensor_model_parallel_size -1 is negative"},
		{Layout{NumLayers: 4, EP: 2}, "expert_model_parallel_size 2 needs num_moe_experts"},
		{Layout{NumLayers: 4, EP: 4, NumExperts: 6}, "num_moe_experts 6 is not divisible by EP = 4"},
		{Layout{NumLayers: 4, TP: 2, ETP: 4, NumExperts: 4}, "expert_tensor_parallel_size 4 does not divide tensor_model_parallel_size 2"},
		{Layout{NumLayers: 4, TP: 4, ETP: 3, NumExperts: 4}, "expert_tensor_parallel_size 3 does not divide"},
		{Layout{NumLayers: 4, TP: 4, ETP: 2, NumExperts: 4}, ""},
		{Layout{NumLayers: 4, TransformerImpl: "te"}, `transformer_impl "te"`},
		{Layout{NumLayers: 4, TEGroupedMoE: true}, "need moe_grouped_gemm"},
		{Layout{NumLayers: 4, TEGroupedMoE: true, MoEGroupedGEMM: true, LegacyGroupedGEMM: true}, "exclude each other"},
		{Layout{NumLayers: 4, TEGroupedMoE: true, MoEGroupedGEMM: true, TransformerImpl: ImplLocal}, `not "local"`},
		{Layout{NumLayers: 4, PP: 2, PipelineLayout: "Et|t|t|tL"}, ""},
		{Layout{NumLayers: 4, PP: 2, VPP: 3, PipelineLayout: "Et|t|t|tL"}, "4 stages = PP 2 × VPP 2, but VPP is 3"},
		{Layout{NumLayers: 4, PP: 3, PipelineLayout: "Et|t|t|tL"}, "4 stages, which is not divisible by PP = 3"},
		{Layout{NumLayers: 5, PP: 2, PipelineLayout: "Et|t|t|tL"}, "has 4 decoder layers (t), but num_layers is 5"},
		{Layout{NumLayers: 4, PP: 2, PipelineLayout: "tE|t|t|tL"}, "first layer must be the embedding"},
		{Layout{NumLayers: 4, PP: 2, PipelineLayout: "Et|t|t|Lt"}, "last layer must be the loss"},
		{Layout{NumLayers: 4, PP: 2, PipelineLayout: "Et|t|t|tmL"}, "1 MTP layers (m), but mtp_num_layers is 0"},
		{Layout{NumLayers: 4, PP: 2, MTPNumLayers: 1, PipelineLayout: "Et|tm|t|tL"}, "decoder layers must come before MTP"},
		{Layout{NumLayers: 4, PP: 2, MTPNumLayers: 1, PipelineLayout: "Et|t|tm|tL"}, "decoder layers must come before MTP"},
		{Layout{NumLayers: 4, PP: 2, MTPNumLayers: 1, PipelineLayout: "Ett|ttm|L|"}, "last virtual stage"},
		{Layout{NumLayers: 4, PP: 2, PipelineLayout: "Et|t|t|tL", AccountForLoss: true}, "cannot be combined"},
		{Layout{NumLayers: 4, PP: 2, PipelineLayout: "Et|t|t|tX"}, "invalid layer character"},
	}
	for _, tc := range tests {
		err := tc.l.Validate()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.l, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%+v: error %v, want %q", tc.l, err, tc.err)
		}
	}
}

func TestFnmatch(t *testing.T) {
	tests := []struct {
		pat, name string
		want      bool
	}{
		{"vision_model.*", "vision_model.blocks.0.attn.qkv.weight", true},
		{"vision_model.*", "vision_model.", true},
		{"vision_model.*", "xvision_model.a", false},
		{".linear_fc1.lora_A.*.weight", ".linear_fc1.lora_A.default.weight", true},
		{".linear_fc1.lora_A.*.weight", ".linear_fc1.lora_A.weight", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a[bc]d", "acd", true},
		{"a[!bc]d", "acd", false},
		{"a[!bc]d", "aed", true},
		{"a[", "a[", true},
		{"a.b", "axb", false},
		{"*", "any/thing.with\nnewline", true},
		// Python drops an empty range; the old translator made it an error.
		{".linear_[z-a]x", ".linear_zx", false},
		{".linear_[!z-a]x", ".linear_mx", true},
	}
	for _, tc := range tests {
		p := rollname.CompilePatterns([]string{tc.pat})
		if got := p.Match(tc.name); got != tc.want {
			t.Errorf("fnmatch(%q, %q) = %v, want %v", tc.name, tc.pat, got, tc.want)
		}
	}
}

func TestClassifyOrder(t *testing.T) {
	s, err := New(Layout{NumLayers: 4, NumExperts: 4, Swiglu: true, MoEGroupedGEMM: true}, testClassification(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want Class
	}{
		{"decoder.layers.0.mlp.experts.local_experts.3.linear_fc1.weight", GroupedColumn},
		{"decoder.layers.0.mlp.experts.local_experts.3.linear_fc2.weight", GroupedRow},
		{"decoder.layers.0.mlp.linear_fc1.weight", Swiglu}, // swiglu before column
		{"decoder.layers.0.self_attention.linear_qkv.bias", Column},
		{"decoder.layers.0.self_attention.in_proj.weight", GDN},
		{"decoder.final_layernorm.weight", Duplicated},
		{"embedding.word_embeddings.weight", Column},
		{"decoder.layers.0.self_attention.linear_proj.weight", Row},
		{"mtp.layers.0.mtp_model_layer.self_attention.linear_qkv.weight", Column},
		{"mtp.layers.0.eh_proj.weight", Column},
	}
	for _, tc := range tests {
		got, err := s.Classify(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("Classify(%q) = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := s.Classify("decoder.layers.0.self_attention.mystery.weight"); err == nil ||
		!strings.Contains(err.Error(), `"decoder.layers.0.self_attention.mystery.weight"`) {
		t.Errorf("unclassified weight: %v", err)
	}
	// Without swiglu, fc1 is plain column.
	s2, err := New(Layout{NumLayers: 4}, testClassification(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := s2.Classify("decoder.layers.0.mlp.linear_fc1.weight"); c != Column {
		t.Errorf("fc1 without swiglu: %v", c)
	}
}

// placementCase splits one global weight and lists where it goes.
type placementCase struct {
	name  string
	shape []int64
	comps []int64 // stacked component rows
	want  []listing
	err   string
}

func runPlacement(t *testing.T, l Layout, cls Classification, cases []placementCase) {
	t.Helper()
	s, err := New(l, cls, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		var ps []Piece
		gen := &modelGen{rng: newRand(1)}
		if tc.comps != nil {
			var ts []tensor.Tensor
			for _, r := range tc.comps {
				sh := append([]int64{r}, tc.shape[1:]...)
				ts = append(ts, gen.rand(tensor.BF16, sh...))
			}
			st, err2 := tensor.NewStacked(0, ts...)
			if err2 != nil {
				t.Fatal(err2)
			}
			ps, err = s.SplitStacked(tc.name, st)
		} else {
			ps, err = s.Split(tc.name, gen.rand(tensor.BF16, tc.shape...))
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.want, listPieces(s.g.Layout, ps)); diff != "" {
			t.Errorf("%s placement mismatch (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestPlacementTP2(t *testing.T) {
	runPlacement(t, layoutFor(Layout{TP: 2}, moeModel), testClassification(), []placementCase{
		{name: "decoder.layers.1.self_attention.linear_qkv.weight", shape: []int64{24, 8}, want: []listing{
			{"mp_rank_00", "model", "decoder.layers.1.self_attention.linear_qkv.weight", "[12, 8]"},
			{"mp_rank_01", "model", "decoder.layers.1.self_attention.linear_qkv.weight", "[12, 8]"},
		}},
		{name: "decoder.layers.1.self_attention.linear_qkv.bias", shape: []int64{24}, want: []listing{
			{"mp_rank_00", "model", "decoder.layers.1.self_attention.linear_qkv.bias", "[12]"},
			{"mp_rank_01", "model", "decoder.layers.1.self_attention.linear_qkv.bias", "[12]"},
		}},
		{name: "decoder.layers.1.self_attention.linear_proj.weight", shape: []int64{8, 16}, want: []listing{
			{"mp_rank_00", "model", "decoder.layers.1.self_attention.linear_proj.weight", "[8, 8]"},
			{"mp_rank_01", "model", "decoder.layers.1.self_attention.linear_proj.weight", "[8, 8]"},
		}},
		{name: "decoder.layers.1.mlp.linear_fc1.weight", shape: []int64{16, 8}, comps: []int64{8, 8}, want: []listing{
			{"mp_rank_00", "model", "decoder.layers.1.mlp.linear_fc1.weight", "[8, 8]"},
			{"mp_rank_01", "model", "decoder.layers.1.mlp.linear_fc1.weight", "[8, 8]"},
		}},
		{name: "decoder.layers.0.self_attention.in_proj.weight", shape: []int64{40, 8}, comps: []int64{8, 8, 8, 8, 4, 4}, want: []listing{
			{"mp_rank_00", "model", "decoder.layers.0.self_attention.in_proj.weight", "[20, 8]"},
			{"mp_rank_01", "model", "decoder.layers.0.self_attention.in_proj.weight", "[20, 8]"},
		}},
		{name: "decoder.layers.0.self_attention.in_proj.weight", shape: []int64{40, 8}, comps: []int64{8, 8, 8, 8, 2, 6}, err: "do not match the linear_* sizes"},
		{name: "decoder.final_layernorm.weight", shape: []int64{8}, want: []listing{
			{"mp_rank_00", "model", "decoder.final_layernorm.weight", "[8]"},
			{"mp_rank_01", "model", "decoder.final_layernorm.weight", "[8]"},
		}},
		{name: "decoder.layers.1.self_attention.linear_qkv.weight", shape: []int64{25, 8}, err: "dim 0 of shape [25, 8] is not divisible by TP = 2"},
		{name: "decoder.layers.1.self_attention.linear_proj.bias", shape: []int64{8}, err: "no dim 1 to split"},
		{name: "decoder.layers.1.self_attention.mystery.weight", shape: []int64{8}, err: `"decoder.layers.1.self_attention.mystery.weight" (pure name ".self_attention.mystery.weight") matches no parallel class`},
		{name: "decoder.layers.7.self_attention.linear_qkv.weight", shape: []int64{24, 8}, err: "layer 7 is out of range for num_layers 4"},
		{name: "decoder.layers.2.mlp.experts.local_experts.4.linear_fc2.weight", shape: []int64{8, 4}, err: "expert 4 is out of range"},
		{name: "decoder.layers.1.mlp.linear_fc1.weight", shape: []int64{16, 8}, comps: []int64{4, 4, 8}, err: "needs 2 components"},
		{name: "decoder.layers.1.self_attention.linear_qkv.weight", shape: []int64{24, 8}, comps: []int64{12, 12}, err: "only swiglu and gdn weights"},
	})
}

func TestPlacementPP2VPP2(t *testing.T) {
	l := layoutFor(Layout{PP: 2, VPP: 2, TP: 2}, modelOpts{layers: 8, experts: 4, mtp: true, tied: true})
	runPlacement(t, l, testClassification(), []placementCase{
		{name: "decoder.layers.5.self_attention.linear_qkv.layer_norm_weight", shape: []int64{8}, want: []listing{
			{"mp_rank_00_000", "model1", "decoder.layers.1.self_attention.linear_qkv.layer_norm_weight", "[8]"},
			{"mp_rank_01_000", "model1", "decoder.layers.1.self_attention.linear_qkv.layer_norm_weight", "[8]"},
		}},
		{name: "decoder.layers.2.self_attention.linear_qkv.layer_norm_weight", shape: []int64{8}, want: []listing{
			{"mp_rank_00_001", "model0", "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight", "[8]"},
			{"mp_rank_01_001", "model0", "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight", "[8]"},
		}},
		// Tied: the first stage keeps the embedding, the last stage stores
		// it as the LM head and, with MTP layers, as the embedding the MTP
		// layers read (megatron-core's last stage has both).
		{name: "embedding.word_embeddings.weight", shape: []int64{16, 8}, want: []listing{
			{"mp_rank_00_000", "model0", "embedding.word_embeddings.weight", "[8, 8]"},
			{"mp_rank_00_001", "model1", "embedding.word_embeddings.weight", "[8, 8]"},
			{"mp_rank_00_001", "model1", "output_layer.weight", "[8, 8]"},
			{"mp_rank_01_000", "model0", "embedding.word_embeddings.weight", "[8, 8]"},
			{"mp_rank_01_001", "model1", "embedding.word_embeddings.weight", "[8, 8]"},
			{"mp_rank_01_001", "model1", "output_layer.weight", "[8, 8]"},
		}},
		{name: "decoder.final_layernorm.weight", shape: []int64{8}, want: []listing{
			{"mp_rank_00_001", "model1", "decoder.final_layernorm.weight", "[8]"},
			{"mp_rank_01_001", "model1", "decoder.final_layernorm.weight", "[8]"},
		}},
		// MTP on the last stage, index kept, .mtp_model_layer kept/added.
		{name: "mtp.layers.0.enorm.weight", shape: []int64{8}, want: []listing{
			{"mp_rank_00_001", "model1", "mtp.layers.0.enorm.weight", "[8]"},
			{"mp_rank_01_001", "model1", "mtp.layers.0.enorm.weight", "[8]"},
		}},
		{name: "mtp.layers.0.self_attention.linear_qkv.weight", shape: []int64{24, 8}, want: []listing{
			{"mp_rank_00_001", "model1", "mtp.layers.0.mtp_model_layer.self_attention.linear_qkv.weight", "[12, 8]"},
			{"mp_rank_01_001", "model1", "mtp.layers.0.mtp_model_layer.self_attention.linear_qkv.weight", "[12, 8]"},
		}},
		// A global weight in no list and without a layer is on every stage.
		{name: "vision_model.patch_embed.weight", shape: []int64{8}, err: "matches no parallel class"},
	})
}

func TestPlacementEmbeddingAndLoss(t *testing.T) {
	// PP 3 with embedding and loss accounted; untied with MTP: the
	// embedding is on the first and on the last stage.
	l := layoutFor(Layout{PP: 3, AccountForEmbedding: true, AccountForLoss: true}, moeModel)
	runPlacement(t, l, testClassification(), []placementCase{
		{name: "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight", shape: []int64{8}, want: []listing{
			{"mp_rank_00_000", "model", "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight", "[8]"}}},
		{name: "decoder.layers.2.self_attention.linear_qkv.layer_norm_weight", shape: []int64{8}, want: []listing{
			{"mp_rank_00_001", "model", "decoder.layers.1.self_attention.linear_qkv.layer_norm_weight", "[8]"}}},
		{name: "decoder.layers.3.self_attention.linear_qkv.layer_norm_weight", shape: []int64{8}, want: []listing{
			{"mp_rank_00_002", "model", "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight", "[8]"}}},
		{name: "embedding.word_embeddings.weight", shape: []int64{16, 8}, want: []listing{
			{"mp_rank_00_000", "model", "embedding.word_embeddings.weight", "[16, 8]"},
			{"mp_rank_00_002", "model", "embedding.word_embeddings.weight", "[16, 8]"},
		}},
		{name: "output_layer.weight", shape: []int64{16, 8}, want: []listing{
			{"mp_rank_00_002", "model", "output_layer.weight", "[16, 8]"}}},
	})
	// Without MTP or tying, the embedding is on the first stage only; MTP
	// weights without mtp_num_layers are an error (ROLL drops them).
	l.MTPNumLayers = 0
	runPlacement(t, l, testClassification(), []placementCase{
		{name: "embedding.word_embeddings.weight", shape: []int64{16, 8}, want: []listing{
			{"mp_rank_00_000", "model", "embedding.word_embeddings.weight", "[16, 8]"}}},
		{name: "mtp.layers.0.enorm.weight", shape: []int64{8}, err: "mtp_num_layers is 0"},
	})
}

func TestPlacementExperts(t *testing.T) {
	fc1 := "decoder.layers.3.mlp.experts.local_experts.3.linear_fc1.weight"
	fc2 := "decoder.layers.3.mlp.experts.local_experts.2.linear_fc2.weight"
	mtpFC2 := "mtp.layers.0.mtp_model_layer.mlp.experts.local_experts.1.linear_fc2.weight"
	tests := []struct {
		name  string
		l     Layout
		cases []placementCase
	}{
		{"per-expert EP2", Layout{EP: 2, TP: 2, PP: 2}, []placementCase{
			{name: fc1, shape: []int64{8, 8}, comps: []int64{4, 4}, want: []listing{
				{"mp_rank_00_001_001", "model", "decoder.layers.1.mlp.experts.local_experts.1.linear_fc1.weight", "[4, 8]"},
				{"mp_rank_01_001_001", "model", "decoder.layers.1.mlp.experts.local_experts.1.linear_fc1.weight", "[4, 8]"},
			}},
			{name: mtpFC2, shape: []int64{8, 4}, want: []listing{
				{"mp_rank_00_001_000", "model", "mtp.layers.0.mtp_model_layer.mlp.experts.local_experts.1.linear_fc2.weight", "[8, 2]"},
				{"mp_rank_01_001_000", "model", "mtp.layers.0.mtp_model_layer.mlp.experts.local_experts.1.linear_fc2.weight", "[8, 2]"},
			}},
			// Dense weights are on every expert rank.
			{name: "decoder.layers.3.mlp.router.weight", shape: []int64{4, 8}, want: []listing{
				{"mp_rank_00_001_000", "model", "decoder.layers.1.mlp.router.weight", "[4, 8]"},
				{"mp_rank_00_001_001", "model", "decoder.layers.1.mlp.router.weight", "[4, 8]"},
				{"mp_rank_01_001_000", "model", "decoder.layers.1.mlp.router.weight", "[4, 8]"},
				{"mp_rank_01_001_001", "model", "decoder.layers.1.mlp.router.weight", "[4, 8]"},
			}},
		}},
		{"ETP1 TP2 EP2", Layout{EP: 2, TP: 2, ETP: 1}, []placementCase{
			{name: fc2, shape: []int64{8, 4}, want: []listing{
				{"mp_rank_00_001", "model", "decoder.layers.3.mlp.experts.local_experts.0.linear_fc2.weight", "[8, 4]"},
				{"mp_rank_01_001", "model", "decoder.layers.3.mlp.experts.local_experts.0.linear_fc2.weight", "[8, 4]"},
			}},
		}},
		{"TE grouped", Layout{EP: 2, TP: 2, MoEGroupedGEMM: true, TEGroupedMoE: true}, []placementCase{
			{name: fc1, shape: []int64{8, 8}, comps: []int64{4, 4}, want: []listing{
				{"mp_rank_00_001", "model", "decoder.layers.3.mlp.experts.linear_fc1.weight1", "[4, 8]"},
				{"mp_rank_01_001", "model", "decoder.layers.3.mlp.experts.linear_fc1.weight1", "[4, 8]"},
			}},
			{name: fc2, shape: []int64{8, 4}, want: []listing{
				{"mp_rank_00_001", "model", "decoder.layers.3.mlp.experts.linear_fc2.weight0", "[8, 2]"},
				{"mp_rank_01_001", "model", "decoder.layers.3.mlp.experts.linear_fc2.weight0", "[8, 2]"},
			}},
			{name: mtpFC2, shape: []int64{8, 4}, want: []listing{
				{"mp_rank_00_000", "model", "mtp.layers.0.mtp_model_layer.mlp.experts.linear_fc2.weight1", "[8, 2]"},
				{"mp_rank_01_000", "model", "mtp.layers.0.mtp_model_layer.mlp.experts.linear_fc2.weight1", "[8, 2]"},
			}},
		}},
		// Legacy grouped: fc1 [8, 8] → TP share [4, 8] → transposed [8, 4],
		// 2 local experts → weight1 [H, 2·4]; fc2 [8, 4] → share [8, 2] →
		// [2, 8] → weight2 [2·2, H].
		{"legacy grouped", Layout{EP: 2, TP: 2, MoEGroupedGEMM: true}, []placementCase{
			{name: fc1, shape: []int64{8, 8}, comps: []int64{4, 4}, want: []listing{
				{"mp_rank_00_001", "model", "decoder.layers.3.mlp.experts.weight1", "[8, 8]"},
				{"mp_rank_01_001", "model", "decoder.layers.3.mlp.experts.weight1", "[8, 8]"},
			}},
			{name: fc2, shape: []int64{8, 4}, want: []listing{
				{"mp_rank_00_001", "model", "decoder.layers.3.mlp.experts.weight2", "[4, 8]"},
				{"mp_rank_01_001", "model", "decoder.layers.3.mlp.experts.weight2", "[4, 8]"},
			}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := layoutFor(tc.l, moeModel)
			runPlacement(t, l, testClassification(), tc.cases)
		})
	}
}

func TestPlacementVariants(t *testing.T) {
	t.Run("megatron_llama", func(t *testing.T) {
		l := layoutFor(Layout{EP: 2, MoEGroupedGEMM: true}, llamaModel)
		runPlacement(t, l, rollDefault(), []placementCase{
			{name: "decoder.layers.3.mlp.experts.local_experts.0.linear_fc1.weight", shape: []int64{8, 8}, comps: []int64{4, 4}, want: []listing{
				{"mp_rank_00_000", "model", "decoder.layers.3.mlp.weight1", "[8, 16]"}}},
			{name: "decoder.layers.3.input_layernorm.weight", shape: []int64{8}, want: []listing{
				{"mp_rank_00_000", "model", "decoder.layers.3.input_layernorm.weight", "[8]"},
				{"mp_rank_00_001", "model", "decoder.layers.3.input_layernorm.weight", "[8]"},
			}},
		})
		// TE grouped names would append the expert index to ".mlp.weight1".
		l.TEGroupedMoE = true
		if _, err := New(l, rollDefault(), nil); err == nil || !strings.Contains(err.Error(), `".mlp.weight1"`) {
			t.Errorf("TE grouped + megatron_llama: %v", err)
		}
	})
	t.Run("local", func(t *testing.T) {
		l := layoutFor(Layout{TP: 2, TransformerImpl: ImplLocal}, denseModel)
		runPlacement(t, l, denseClassification(), []placementCase{
			{name: "decoder.layers.1.self_attention.linear_qkv.layer_norm_weight", shape: []int64{8}, want: []listing{
				{"mp_rank_00", "model", "decoder.layers.1.input_layernorm.weight", "[8]"},
				{"mp_rank_01", "model", "decoder.layers.1.input_layernorm.weight", "[8]"},
			}},
			{name: "decoder.layers.1.mlp.linear_fc1.layer_norm_weight", shape: []int64{8}, want: []listing{
				{"mp_rank_00", "model", "decoder.layers.1.pre_mlp_layernorm.weight", "[8]"},
				{"mp_rank_01", "model", "decoder.layers.1.pre_mlp_layernorm.weight", "[8]"},
			}},
			{name: "mtp.layers.0.mtp_model_layer.self_attention.linear_qkv.layer_norm_weight", shape: []int64{8}, want: []listing{
				{"mp_rank_00", "model", "mtp.layers.0.mtp_model_layer.input_layernorm.weight", "[8]"},
				{"mp_rank_01", "model", "mtp.layers.0.mtp_model_layer.input_layernorm.weight", "[8]"},
			}},
		})
	})
}

// ROLL's te_to_local map is not invertible for MoE models: with
// shared_moe's identity entry, a dense layer's fused fc1 norm comes back
// as ".pre_mlp_layernorm.weight". This package reproduces that.
func TestLocalImplIsLossyLikeROLL(t *testing.T) {
	l := layoutFor(Layout{TransformerImpl: ImplLocal}, moeModel)
	s, err := New(l, testClassification(), nil)
	if err != nil {
		t.Fatal(err)
	}
	gen := &modelGen{rng: newRand(2)}
	w := gen.rand(tensor.BF16, 8)
	ps, err := s.Split("decoder.layers.1.mlp.linear_fc1.layer_norm_weight", w)
	if err != nil || len(ps) != 1 || ps[0].Name != "decoder.layers.1.pre_mlp_layernorm.weight" {
		t.Fatalf("split: %v %v", ps, err)
	}
	gs, err := s.Merge([]Local{{Name: ps[0].Name, Tensor: ps[0].Data}})
	if err != nil || len(gs) != 1 || gs[0].Name != "decoder.layers.1.pre_mlp_layernorm.weight" {
		t.Fatalf("merge: %v %v", gs, err)
	}
}
