package lsp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/lang/format"
	"github.com/rolltpl/rolltpl/stdlib"
)

// posOf is the position delta bytes after the start of needle in text.
func posOf(t *testing.T, text, needle string, delta int) Position {
	t.Helper()
	i := strings.Index(text, needle)
	if i < 0 {
		t.Fatalf("%q not found", needle)
	}
	i += delta
	line := strings.Count(text[:i], "\n")
	return Position{Line: line, Character: i - (strings.LastIndex(text[:i], "\n") + 1)}
}

// lineOf is the 1-based line where needle starts.
func lineOf(t *testing.T, text, needle string) int {
	return posOf(t, text, needle, 0).Line + 1
}

// openStdlib opens a stdlib template from its place on disk (so that its
// imports are the files beside it) and returns its URI and text.
func openStdlib(t *testing.T, c *testClient, name string) (string, string) {
	t.Helper()
	p, text := stdlibFile(t, name)
	uri := pathToURI(p)
	c.open(uri, text)
	return uri, text
}

func hoverAt(t *testing.T, c *testClient, uri string, p Position) *Hover {
	t.Helper()
	m := c.request("textDocument/hover", TextDocumentPositionParams{TextDocument: TextDocumentIdentifier{URI: uri}, Position: p})
	if m.Error != nil {
		t.Fatalf("hover: %v", m.Error)
	}
	if string(m.Result) == "null" {
		return nil
	}
	var h Hover
	if err := json.Unmarshal(m.Result, &h); err != nil {
		t.Fatal(err)
	}
	if h.Contents.Kind != "markdown" {
		t.Errorf("hover kind %q, want markdown", h.Contents.Kind)
	}
	return &h
}

func TestHover(t *testing.T) {
	// Key docs from the schemas have tests of their own (TestSchemaKeyDoc,
	// TestUserSchema); these cases pin the rest of the hover text.
	noDocs := func(string, string, string) (string, bool) { return "", false }
	c := newInitialized(t, Options{KeyDocs: noDocs})
	_, common := stdlibFile(t, "common.rolltpl")
	_, llama := stdlibFile(t, "llama.rolltpl")
	qkv := vocab.Op("qkv")
	stack := vocab.Op("stack")
	cases := []struct {
		name          string
		file, needle  string
		delta         int
		want          string
		wantHighlight string // the text the hover range covers
	}{
		{
			name: "op kind", file: "common.rolltpl", needle: `qkv ".self_attn.q_proj.weight"`, delta: 1,
			want: "```rolltpl\nqkv(hidden_size = int?) hf1, hf2, hf3 -> mca\n```\n" +
				"**op** `qkv` · 3 HF names → 1 MCA name · ROLL `QKVConverOp`\n\n" + qkv.Doc +
				"\n\nParameters:\n- `hidden_size` (int or null, optional): " + qkv.Params[0].Doc +
				"\n\nReads MCA config: `num_attention_heads`, `num_query_groups`, `kv_channels`, `hidden_size`",
			wantHighlight: "qkv",
		},
		{
			name: "op with one-side arity", file: "common.rolltpl", needle: "stack(dim", delta: 0,
			want: "```rolltpl\nstack(dim = int) hf -> mca, ...  |  hf, ... -> mca\n```\n" +
				"**op** `stack` · 1 HF name → N MCA names, or N → 1 · ROLL `StackConverOp`\n\n" + stack.Doc +
				"\n\nParameters:\n- `dim` (int, optional): " + stack.Params[0].Doc,
			wantHighlight: "stack",
		},
		{
			name: "lossy op", file: "common.rolltpl", needle: `zero_centered_rmsnorm ".linear_attn.norm.weight"`, delta: 1,
			want: "```rolltpl\nzero_centered_rmsnorm hf -> mca\n```\n" +
				"**op** `zero_centered_rmsnorm` · 1 HF name → 1 MCA name · ROLL `ZeroCenteredRMSNormConverOp`\n\n" + vocab.Op("zero_centered_rmsnorm").Doc +
				"\n\nLossy in `BF16`, `F16`, `F32`, `F64`: a round trip may not give the same bytes back; `verify` compares its tensors with their own round trip",
			wantHighlight: "zero_centered_rmsnorm",
		},
		{
			name: "op parameter", file: "common.rolltpl", needle: "stack(dim", delta: 7,
			want:          "**parameter** `dim` of `stack` (int, optional)\n\n" + stack.Params[0].Doc + ".",
			wantHighlight: "dim",
		},
		{
			name: "template field", file: "llama.rolltpl", needle: "layer_prefix", delta: 3,
			want:          "**template field** `layer_prefix` (string)\n\n" + vocab.TemplateFields["layer_prefix"] + ".",
			wantHighlight: "layer_prefix",
		},
		{
			name: "parallel class", file: "parallel.rolltpl", needle: "    duplicated", delta: 6,
			want:          "**parallel class** `duplicated` (list of MCA name patterns)\n\n" + vocab.ParallelClassDoc["duplicated"] + ".",
			wantHighlight: "duplicated",
		},
		{
			name: "use of a block in the same file", file: "llama.rolltpl", needle: "use llama_core", delta: 6,
			want: "```rolltpl\nconfig llama_core {\n    use llm\n    intermediate_size -> ffn_hidden_size\n    attention_bias    -> add_qkv_bias\n}\n```\n" +
				fmt.Sprintf("**config block** `llama_core` · this file, line %d", lineOf(t, llama, "config llama_core")),
			wantHighlight: "llama_core",
		},
		{
			name: "use of a block in an import, with its doc comment", file: "qwen2.rolltpl", needle: "use qkv_and_bias", delta: 4,
			want: "```rolltpl\nweights qkv_and_bias {\n    use qkv\n    qkv_bias \".self_attn.q_proj.bias\", \".self_attn.k_proj.bias\", \".self_attn.v_proj.bias\"\n        -> \".self_attention.linear_qkv.bias\"\n}\n```\n" +
				fmt.Sprintf("**weights block** `qkv_and_bias` · common.rolltpl, line %d", lineOf(t, common, "weights qkv_and_bias")) +
				"\n\nq, k, v weights and biases fused into Megatron's interleaved layout.",
			wantHighlight: "qkv_and_bias",
		},
		{
			name: "extends", file: "qwen2_5_vl.rolltpl", needle: "extends qwen2_vl", delta: 9,
			wantHighlight: "qwen2_vl",
		},
		{
			name: "HF key with prefix rules", file: "qwen2_vl.rolltpl", needle: "intermediate_size", delta: 2,
			want: "**HF config key** `intermediate_size`\n\n" +
				"Mapped to MCA key `ffn_hidden_size` here (this file, line 11): copied HF → MCA on load and back on save.\n\n" +
				"In template `qwen2_vl` the HF key read is `text_config.intermediate_size` (key prefix rules).\n\n" +
				"Used by templates: `qwen2_vl`",
			wantHighlight: "intermediate_size",
		},
		{
			name: "MCA key of a map", file: "llama.rolltpl", needle: "-> rope_scaling", delta: 4,
			want:          "**MCA config key** `rope_scaling`\n\nIn template `llama`: mapped from HF key `rope_scaling`.",
			wantHighlight: "rope_scaling",
		},
		{
			name: "MCA constant", file: "qwen2.rolltpl", needle: "add_qkv_bias", delta: 0,
			want: "**MCA config key** `add_qkv_bias`\n\nConstant (ROLL's constant_mca_config): merged last, so it wins over mapped values.\n\n" +
				"Constant in templates: `qwen2` = `true`",
			wantHighlight: "add_qkv_bias",
		},
		{
			name: "MCA key read by ops", file: "common.rolltpl", needle: "-> hidden_size\n", delta: 4,
			want:          "**MCA config key** `hidden_size`\n\nRead at run time by ops: `qkv`, `gated_qkv`, `next_gdn`",
			wantHighlight: "hidden_size",
		},
		{
			name: "HF weight name", file: "common.rolltpl", needle: `".self_attn.k_proj.weight"`, delta: 3,
			want: "**HF weight name** `.self_attn.k_proj.weight` (layer-relative)\n\n" +
				"Consumed by `qkv` (HF name 2 of 3), which produces `\".self_attention.linear_qkv.weight\"`.",
			wantHighlight: `".self_attn.k_proj.weight"`,
		},
		{
			name: "MCA weight name with its parallel classes", file: "qwen2_vl.rolltpl", needle: `"vision_model.{}"`, delta: 2,
			want: "**MCA weight name** `vision_model.{}` (with a `{}` wildcard for a whole sub-tree)\n\n" +
				"Produced by `rename` (MCA name 1 of 1) from `\"visual.{}\"`.\n\n" +
				"In template `qwen2_vl`: parallel class `pre_process`, class `duplicated`\n\n" +
				"Used by templates: `qwen2_vl`",
			wantHighlight: `"vision_model.{}"`,
		},
		{
			name: "build flag", file: "common.rolltpl", needle: "if megatron_llama", delta: 5,
			want:          "**build flag** `megatron_llama`\n\n" + vocab.BuildFlags["megatron_llama"] + ".",
			wantHighlight: "megatron_llama",
		},
		{
			name: "per-layer name condition", file: "common.rolltpl", needle: `mca.layer_types[layer] == "linear_attention"`, delta: 23,
			want: "**expression** · type `bool`\n\nPython (generated template class):\n```python\n" +
				"getattr(mca_config, 'layer_types', None)[layer_idx] == 'linear_attention'\n```",
			wantHighlight: `mca.layer_types[layer] == "linear_attention"`,
		},
		{
			name: "MCA key in an expression", file: "common.rolltpl", needle: `mca.layer_types[layer]`, delta: 5,
			want:          "**MCA config key** `layer_types`\n\nRead by an expression; a missing key is null (`getattr(mca_config, 'layer_types', None)`).",
			wantHighlight: "layer_types",
		},
		{
			name: "ignored name", file: "llama.rolltpl", needle: `".self_attn.rotary_emb.inv_freq"`, delta: 1,
			want:          "**HF weight name** `.self_attn.rotary_emb.inv_freq` (layer-relative)\n\nIgnored on purpose (ROLL's hf_invalid_keys): skipped without a warning.",
			wantHighlight: `".self_attn.rotary_emb.inv_freq"`,
		},
		{
			name: "parallel entry", file: "parallel.rolltpl", needle: `".mlp.linear_fc1.lora_A.weight"`, delta: 1,
			want:          "**MCA name pattern** `.mlp.linear_fc1.lora_A.weight` in parallel class `duplicated`: " + vocab.ParallelClassDoc["duplicated"] + ".",
			wantHighlight: `".mlp.linear_fc1.lora_A.weight"`,
		},
		{
			name: "quant weight pattern", file: "common.rolltpl", needle: `"{}.gate_up_proj" ->`, delta: 2,
			want:          "**HF weight name pattern** `{}.gate_up_proj` (whole name, one `{}`)\n\nAn F8_E4M3 weight it matches is paired with the scale grid `{}.gate_up_proj_scales_inv` names for the same `{}`; the FP8 pre-pass dequantizes it before any op runs.",
			wantHighlight: `"{}.gate_up_proj"`,
		},
		{
			name: "quant scale pattern", file: "common.rolltpl", needle: `"{}.weight_scale_inv"`, delta: 2,
			want:          "**HF scale name pattern** `{}.weight_scale_inv` (whole name, one `{}`)\n\nThe block scale grid of the weight `{}.weight` names for the same `{}`; consumed by the FP8 pre-pass, never by an op.",
			wantHighlight: `"{}.weight_scale_inv"`,
		},
		{
			name: "quant section used", file: "deepseek_v3.rolltpl", needle: "use deepseek_fp8_scales", delta: 6,
			wantHighlight: "deepseek_fp8_scales",
		},
		{name: "comment", file: "llama.rolltpl", needle: "# Llama", delta: 3},
		{name: "white space", file: "llama.rolltpl", needle: "\n\nconfig llama_core", delta: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			uri, text := openStdlib(t, c, tc.file)
			h := hoverAt(t, c, uri, posOf(t, text, tc.needle, tc.delta))
			if tc.wantHighlight == "" {
				if h != nil {
					t.Errorf("hover = %q, want none", h.Contents.Value)
				}
				return
			}
			if h == nil {
				t.Fatalf("no hover")
			}
			if tc.want != "" {
				if diff := cmp.Diff(tc.want, h.Contents.Value); diff != "" {
					t.Errorf("hover (-want +got):\n%s", diff)
				}
			}
			start := posOf(t, text, tc.needle, strings.Index(tc.needle, strings.Trim(tc.wantHighlight, `"`)))
			if strings.HasPrefix(tc.wantHighlight, `"`) {
				start.Character--
			}
			want := Range{start, Position{start.Line, start.Character + len(tc.wantHighlight)}}
			if h.Range == nil || *h.Range != want {
				t.Errorf("hover range %+v, want %+v (%q)", h.Range, want, tc.wantHighlight)
			}
		})
	}

	t.Run("import", func(t *testing.T) {
		uri, text := openStdlib(t, c, "qwen2_vl.rolltpl")
		h := hoverAt(t, c, uri, posOf(t, text, `import "common"`, 9))
		if h == nil {
			t.Fatal("no hover")
		}
		first, rest, _ := strings.Cut(h.Contents.Value, "\n\n")
		if diff := cmp.Diff("**import** `common` → `common.rolltpl`", first); diff != "" {
			t.Errorf("hover (-want +got):\n%s", diff)
		}
		if !regexp.MustCompile(`^Declares \d+ config blocks, \d+ mca blocks, (\d+ quant blocks, )?\d+ weights blocks\.$`).MatchString(rest) {
			t.Errorf("declarations: %q", rest)
		}
	})
}

// TestKeyDocs checks the hook a config schema fills: its text appears in
// hover and completion.
func TestKeyDocs(t *testing.T) {
	var asked [][3]string
	docs := func(modelType, side, key string) (string, bool) {
		asked = append(asked, [3]string{modelType, side, key})
		if side == "hf" && key == "intermediate_size" {
			return "int: the MLP's inner size (" + modelType + ")", true
		}
		return "", false
	}
	c := newInitialized(t, Options{KeyDocs: docs})
	uri, text := openStdlib(t, c, "qwen2.rolltpl")
	h := hoverAt(t, c, uri, posOf(t, text, "intermediate_size", 0))
	if h == nil || !strings.HasPrefix(h.Contents.Value, "**HF config key** `intermediate_size`\n\nint: the MLP's inner size (qwen2)\n\n") {
		t.Errorf("hover does not show the key's doc: %+v", h)
	}
	if !slices.Contains(asked, [3]string{"qwen2", "hf", "intermediate_size"}) {
		t.Errorf("KeyDocs asked %v", asked)
	}
	// Completion in the same config section documents the key too.
	edited := strings.Replace(text, "        intermediate_size -> ffn_hidden_size\n", "        intermediate_size -> ffn_hidden_size\n        \n", 1)
	c.notify("textDocument/didChange", DidChangeTextDocumentParams{TextDocument: VersionedTextDocumentIdentifier{URI: uri, Version: 2},
		ContentChanges: []TextDocumentContentChangeEvent{{Text: edited}}})
	var list CompletionList
	p := posOf(t, edited, "ffn_hidden_size\n        \n", len("ffn_hidden_size\n        "))
	c.call("textDocument/completion", TextDocumentPositionParams{TextDocument: TextDocumentIdentifier{URI: uri}, Position: p}, &list)
	i := slices.IndexFunc(list.Items, func(it CompletionItem) bool { return it.Label == "intermediate_size" })
	if i < 0 || list.Items[i].Documentation == nil || list.Items[i].Documentation.Value != "int: the MLP's inner size (qwen2)" {
		t.Errorf("completion item: %+v", list.Items)
	}
}

func labels(items []CompletionItem) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, it.Label)
	}
	return out
}

func TestCompletion(t *testing.T) {
	c := newInitialized(t, Options{})
	opKinds := append(vocab.OpKinds(), "use", "ignore")
	sections := []string{"config", "mca", "weights", "parallel", "quant", "expert_prefix", "layer_prefix", "mtp_first_layer", "mtp_hf_prefix"}
	classes := append(slices.Clone(ir.ParallelClasses), append(slices.Clone(ir.ParallelMaps), "use")...)
	cases := []struct {
		name           string
		file, after    string // insert is typed after the first occurrence of after
		insert         string
		want           []string // exactly these labels, in order
		contains       []string // at least these
		excludes       []string
		kind           int // every item's kind, when set
		wantDetailOf   string
		wantDetail     string
		wantInsertText string
	}{
		{name: "op kinds in a weights section", file: "llama.rolltpl", after: "use llama_decoder", insert: "\n        ", want: opKinds,
			wantDetailOf: "qkv", wantDetail: "qkv(hidden_size = int?) hf1, hf2, hf3 -> mca"},
		{name: "op kinds while typing", file: "llama.rolltpl", after: "use llama_decoder", insert: "\n        ren", want: opKinds},
		{name: "op kinds in a named weights block", file: "common.rolltpl", after: "weights down {", insert: "\n    ", want: opKinds},
		{name: "op parameters", file: "llama.rolltpl", after: "use llama_decoder", insert: "\n        stack(", want: []string{"dim"},
			wantDetailOf: "dim", wantDetail: "int, optional", wantInsertText: "dim = "},
		{name: "build flags", file: "llama.rolltpl", after: "use llama_decoder", insert: "\n        rename \"a\" -> \"b\" if ", want: []string{"megatron_llama"}},
		{name: "section keywords and fields", file: "llama.rolltpl", after: `layer_prefix = "model.layers."`, insert: "\n    ", want: sections},
		{name: "parallel classes", file: "llama.rolltpl", after: "parallel { use default", insert: "\n        ", want: classes, kind: 0},
		{name: "use in config: config blocks only", file: "llama.rolltpl", after: "use llama_core", insert: "\n        use ",
			contains: []string{"attention_shape", "dense_llm", "llama_core", "llm", "vision"}, excludes: []string{"qkv", "rope", "default", "llama"}, kind: CompletionModule},
		{name: "use in a named block leaves itself out", file: "llama.rolltpl", after: "config llama_core {", insert: "\n    use l",
			contains: []string{"llm"}, excludes: []string{"llama_core"}, kind: CompletionModule},
		{name: "use in a quant section: quant blocks only", file: "llama.rolltpl", after: "parallel { use default }", insert: "\n    quant { use ",
			contains: []string{"fp8_block", "fp8_fused_experts"}, excludes: []string{"llm", "default"}, kind: CompletionModule},
		{name: "use in weights", file: "llama.rolltpl", after: "use llama_decoder", insert: "\n        use ",
			contains: []string{"qkv", "llama_decoder", "gate_up"}, excludes: []string{"llm", "default"}, kind: CompletionModule},
		{name: "use in parallel, same line", file: "llama.rolltpl", after: "parallel { use default", insert: " use ",
			contains: []string{"default", "shared_moe", "vision"}, excludes: []string{"llm"}, kind: CompletionModule},
		{name: "extends", file: "qwen2_5_vl.rolltpl", after: "extends ", insert: "", want: []string{"qwen2_vl"}, kind: CompletionClass},
		{name: "HF keys in config", file: "llama.rolltpl", after: "use llama_core", insert: "\n        ",
			contains: []string{"hidden_size", "intermediate_size", "rope_theta", "vocab_size", "use", "prefix", "set"}, excludes: []string{"ffn_hidden_size"}},
		{name: "MCA keys after ->", file: "llama.rolltpl", after: "use llama_core", insert: "\n        foo -> ",
			contains: []string{"ffn_hidden_size", "num_query_groups", "kv_channels", "rotary_base"}, excludes: []string{"intermediate_size", "use"}, kind: CompletionProperty},
		{name: "MCA keys in mca", file: "llama.rolltpl", after: "mca { use rope", insert: "\n        ",
			contains: []string{"add_qkv_bias", "position_embedding_type", "swiglu", "use"}},
		{name: "imports", file: "llama.rolltpl", after: `import "parallel"`, insert: "\nimport ",
			contains: []string{"common", "parallel", "qwen2"}, excludes: []string{"llama"}, kind: CompletionFile,
			wantDetailOf: "common", wantDetail: "beside this file", wantInsertText: `"common"`},
		{name: "declarations at top level", file: "llama.rolltpl", after: `import "parallel"`, insert: "\n",
			contains: []string{"config", "import", "mca", "parallel", "template", "weights"}, kind: CompletionKeyword},
		{name: "nothing in a comment", file: "llama.rolltpl", after: `import "parallel"`, insert: "\n# use ", want: []string{}},
		{name: "nothing inside an op's names", file: "llama.rolltpl", after: "use llama_decoder", insert: "\n        rename ", want: []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, text := stdlibFile(t, tc.file)
			uri := pathToURI(p)
			text = strings.Replace(text, tc.after, tc.after+tc.insert, 1)
			c.open(uri, text)
			var list CompletionList
			at := posOf(t, text, tc.after+tc.insert, len(tc.after+tc.insert))
			c.call("textDocument/completion", TextDocumentPositionParams{TextDocument: TextDocumentIdentifier{URI: uri}, Position: at}, &list)
			got := labels(list.Items)
			if tc.want != nil {
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("labels (-want +got):\n%s", diff)
				}
			}
			for _, w := range tc.contains {
				if !slices.Contains(got, w) {
					t.Errorf("%q missing from %v", w, got)
				}
			}
			for _, w := range tc.excludes {
				if slices.Contains(got, w) {
					t.Errorf("%q should not be offered: %v", w, got)
				}
			}
			if tc.kind != 0 {
				for _, it := range list.Items {
					if it.Kind != tc.kind && it.Kind != CompletionKeyword {
						t.Errorf("%s: kind %d, want %d", it.Label, it.Kind, tc.kind)
					}
				}
			}
			if tc.wantDetailOf != "" {
				i := slices.Index(got, tc.wantDetailOf)
				if i < 0 {
					t.Fatalf("%q missing", tc.wantDetailOf)
				}
				if it := list.Items[i]; it.Detail != tc.wantDetail || it.InsertText != tc.wantInsertText {
					t.Errorf("%s: detail %q insert %q, want %q %q", it.Label, it.Detail, it.InsertText, tc.wantDetail, tc.wantInsertText)
				}
			}
		})
	}
}

func TestDefinition(t *testing.T) {
	libDir := filepath.Join(t.TempDir(), "lib")
	c := newInitialized(t, Options{LibDir: libDir})
	dir := filepath.Dir(func() string { p, _ := stdlibFile(t, "common.rolltpl"); return p }())
	uriOf := func(name string) string { return pathToURI(filepath.Join(dir, name)) }
	ident := func(file, needle, name string) Location {
		_, text := stdlibFile(t, file)
		p := posOf(t, text, needle, strings.Index(needle, name))
		return Location{URI: uriOf(file), Range: Range{p, Position{p.Line, p.Character + len(name)}}}
	}
	cases := []struct {
		name, file, needle string
		delta              int
		want               []Location
	}{
		{"use, imported", "llama.rolltpl", "use llm", 5, []Location{ident("common.rolltpl", "config llm {", "llm")}},
		{"use, same file", "llama.rolltpl", "use llama_core", 6, []Location{ident("llama.rolltpl", "config llama_core {", "llama_core")}},
		{"use of a parallel set", "qwen2.rolltpl", "parallel { use default", 15, []Location{ident("parallel.rolltpl", "parallel default {", "default")}},
		{"extends", "qwen2_5_vl.rolltpl", "extends qwen2_vl", 9, []Location{ident("qwen2_vl.rolltpl", "template qwen2_vl {", "qwen2_vl")}},
		{"a declaration's own name", "llama.rolltpl", "config llama_core", 8, []Location{ident("llama.rolltpl", "config llama_core {", "llama_core")}},
		{"import", "llama.rolltpl", `import "common"`, 10, []Location{{URI: uriOf("common.rolltpl")}}},
		{"nothing", "llama.rolltpl", "layer_prefix", 2, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			uri, text := openStdlib(t, c, tc.file)
			var got []Location
			c.call("textDocument/definition", TextDocumentPositionParams{TextDocument: TextDocumentIdentifier{URI: uri}, Position: posOf(t, text, tc.needle, tc.delta)}, &got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("definition (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("into the library", func(t *testing.T) {
		// A file with no common.rolltpl beside it imports the library's:
		// definitions point into a read-only copy on disk.
		path := filepath.Join(t.TempDir(), "mine.rolltpl")
		uri := pathToURI(path)
		text := "import \"common\"\n\nconfig mine {\n    use llm\n}\n"
		c.open(uri, text)
		var got []Location
		c.call("textDocument/definition", TextDocumentPositionParams{TextDocument: TextDocumentIdentifier{URI: uri}, Position: posOf(t, text, "use llm", 5)}, &got)
		lib, err := stdlib.Templates().Open("common.rolltpl")
		if err != nil {
			t.Fatal(err)
		}
		lib.Close()
		_, common := stdlibFile(t, "common.rolltpl")
		p := posOf(t, common, "config llm {", 7)
		want := []Location{{URI: pathToURI(filepath.Join(libDir, "common.rolltpl")), Range: Range{p, Position{p.Line, p.Character + 3}}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("definition (-want +got):\n%s", diff)
		}
		onDisk, err := os.ReadFile(filepath.Join(libDir, "common.rolltpl"))
		if err != nil || !bytes.Equal(onDisk, []byte(common)) {
			t.Errorf("library copy: %v, equal %v", err, bytes.Equal(onDisk, []byte(common)))
		}
		var imp []Location
		c.call("textDocument/definition", TextDocumentPositionParams{TextDocument: TextDocumentIdentifier{URI: uri}, Position: posOf(t, text, `"common"`, 2)}, &imp)
		if diff := cmp.Diff([]Location{{URI: want[0].URI}}, imp); diff != "" {
			t.Errorf("import definition (-want +got):\n%s", diff)
		}
	})

	t.Run("quant section", func(t *testing.T) {
		// `use` in a template's quant section goes to the library's
		// quant section; hovering it shows it.
		path := filepath.Join(t.TempDir(), "q.rolltpl")
		uri := pathToURI(path)
		text := "import \"common\"\n\ntemplate q {\n    layer_prefix = \"model.layers.\"\n    quant { use fp8_fused_experts }\n}\n"
		c.open(uri, text)
		var got []Location
		c.call("textDocument/definition", TextDocumentPositionParams{TextDocument: TextDocumentIdentifier{URI: uri}, Position: posOf(t, text, "use fp8_fused", 6)}, &got)
		_, common := stdlibFile(t, "common.rolltpl")
		p := posOf(t, common, "quant fp8_fused_experts {", 6)
		want := []Location{{URI: pathToURI(filepath.Join(libDir, "common.rolltpl")), Range: Range{p, Position{p.Line, p.Character + len("fp8_fused_experts")}}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("definition (-want +got):\n%s", diff)
		}
		h := hoverAt(t, c, uri, posOf(t, text, "use fp8_fused", 6))
		if h == nil || !strings.Contains(h.Contents.Value, "**quant block** `fp8_fused_experts`") {
			t.Errorf("hover %+v", h)
		}
	})
}

// TestUnsavedImports: an open document is compiled with the unsaved text of
// the documents it imports, and re-checked when they change.
func TestUnsavedImports(t *testing.T) {
	c := newInitialized(t, Options{})
	dir := t.TempDir()
	aURI, bURI := pathToURI(filepath.Join(dir, "a.rolltpl")), pathToURI(filepath.Join(dir, "b.rolltpl"))
	a := "import \"b\"\n\nconfig mine {\n    use shared\n}\n"
	c.open(bURI, "config shared {\n    hidden_size -> hidden_size\n}\n")
	c.diagnostics(bURI, 1)
	c.open(aURI, a)
	if got := c.diagnostics(aURI, 1); len(got.Diagnostics) != 0 {
		t.Errorf("a with b's unsaved text: %+v, want none", got.Diagnostics)
	}
	var loc []Location
	c.call("textDocument/definition", TextDocumentPositionParams{TextDocument: TextDocumentIdentifier{URI: aURI}, Position: posOf(t, a, "use shared", 5)}, &loc)
	if diff := cmp.Diff([]Location{{URI: bURI, Range: Range{Position{0, 7}, Position{0, 13}}}}, loc); diff != "" {
		t.Errorf("definition into the unsaved import (-want +got):\n%s", diff)
	}
	// Renaming the block in b breaks a: a is re-checked without being
	// touched.
	c.notify("textDocument/didChange", DidChangeTextDocumentParams{TextDocument: VersionedTextDocumentIdentifier{URI: bURI, Version: 2},
		ContentChanges: []TextDocumentContentChangeEvent{{Range: &Range{Position{0, 7}, Position{0, 13}}, Text: "other"}}})
	c.diagnostics(bURI, 2)
	got := c.diagnostics(aURI, 1)
	if codes := pick(got.Diagnostics, "unknown-reference"); len(codes) != 1 {
		t.Errorf("a after b changed: %+v, want one unknown-reference", got.Diagnostics)
	}
}

func TestFormatting(t *testing.T) {
	c := newInitialized(t, Options{})
	p, orig := stdlibFile(t, "qwen2.rolltpl")
	uri := pathToURI(p)
	// Mangle the layout: indentation of one space (a declaration keyword
	// at the start of a line starts a new declaration), spaces collapsed, a
	// blank line doubled.
	var mangled []string
	for _, l := range strings.Split(orig, "\n") {
		m := strings.Join(strings.Fields(l), " ")
		if strings.HasPrefix(l, " ") {
			m = " " + m
		}
		mangled = append(mangled, m)
	}
	text := strings.Replace(strings.Join(mangled, "\n"), "\n\n", "\n\n\n", 1)
	c.open(uri, text)
	var edits []TextEdit
	c.call("textDocument/formatting", DocumentFormattingParams{TextDocument: TextDocumentIdentifier{URI: uri}}, &edits)
	want, err := format.Source(p, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(text, "\n")
	wantEdits := []TextEdit{{Range: Range{End: Position{len(lines) - 1, len(lines[len(lines)-1])}}, NewText: string(want)}}
	if diff := cmp.Diff(wantEdits, edits); diff != "" {
		t.Errorf("edits (-want +got):\n%s", diff)
	}
	if string(want) != orig {
		t.Logf("note: rolltplc fmt does not reproduce %s exactly", p)
	}

	// Applying the edit leaves nothing to format.
	c.notify("textDocument/didChange", DidChangeTextDocumentParams{TextDocument: VersionedTextDocumentIdentifier{URI: uri, Version: 2},
		ContentChanges: []TextDocumentContentChangeEvent{{Range: &edits[0].Range, Text: edits[0].NewText}}})
	c.call("textDocument/formatting", DocumentFormattingParams{TextDocument: TextDocumentIdentifier{URI: uri}}, &edits)
	if len(edits) != 0 {
		t.Errorf("formatting formatted text: %+v, want no edits", edits)
	}

	// Syntax errors: refused with an error answer.
	c.notify("textDocument/didChange", DidChangeTextDocumentParams{TextDocument: VersionedTextDocumentIdentifier{URI: uri, Version: 3},
		ContentChanges: []TextDocumentContentChangeEvent{{Text: "template t {\n    weights { rename \"a\" -> }\n}\n"}}})
	m := c.request("textDocument/formatting", DocumentFormattingParams{TextDocument: TextDocumentIdentifier{URI: uri}})
	if m.Error == nil || m.Error.Code != codeRequestFailed || !strings.Contains(m.Error.Message, "syntax errors") || !strings.Contains(m.Error.Message, "line 2") {
		t.Errorf("formatting a broken file: %s, want error %d about syntax errors on line 2", m.raw, codeRequestFailed)
	}
}

// symbolOutline is a DocumentSymbol without ranges, for comparing.
type symbolOutline struct {
	Name, Detail string
	Kind         int
	Children     []symbolOutline
}

func outline(syms []DocumentSymbol) []symbolOutline {
	var out []symbolOutline
	for _, s := range syms {
		out = append(out, symbolOutline{s.Name, s.Detail, s.Kind, outline(s.Children)})
	}
	return out
}

func TestDocumentSymbols(t *testing.T) {
	c := newInitialized(t, Options{})
	uri, text := openStdlib(t, c, "qwen2.rolltpl")
	var syms []DocumentSymbol
	c.call("textDocument/documentSymbol", DocumentSymbolParams{TextDocument: TextDocumentIdentifier{URI: uri}}, &syms)
	want := []symbolOutline{
		{Name: "qwen2_decoder", Detail: "weights block", Kind: SymbolModule},
		{Name: "qwen2", Detail: "template", Kind: SymbolClass, Children: []symbolOutline{
			{Name: "layer_prefix", Detail: `"model.layers."`, Kind: SymbolField},
			{Name: "config", Detail: "2 items", Kind: SymbolNamespace},
			{Name: "mca", Detail: "2 items", Kind: SymbolNamespace},
			{Name: "weights", Detail: "1 item", Kind: SymbolNamespace},
			{Name: "parallel", Detail: "1 item", Kind: SymbolNamespace},
		}},
	}
	if diff := cmp.Diff(want, outline(syms)); diff != "" {
		t.Errorf("symbols (-want +got):\n%s", diff)
	}
	if len(syms) == 2 {
		tm := syms[1]
		start := posOf(t, text, "template qwen2", 0)
		end := posOf(t, text[strings.LastIndex(text, "\n}\n"):], "\n}\n", 2)
		end.Line += strings.Count(text[:strings.LastIndex(text, "\n}\n")], "\n")
		if tm.Range != (Range{start, end}) {
			t.Errorf("template range %+v, want %+v", tm.Range, Range{start, end})
		}
		name := posOf(t, text, "template qwen2", 9)
		if tm.SelectionRange != (Range{name, Position{name.Line, name.Character + 5}}) {
			t.Errorf("template selection range %+v", tm.SelectionRange)
		}
		cfg := tm.Children[1]
		if cfg.Range.Start != posOf(t, text, "    config {", 4) {
			t.Errorf("config section range %+v", cfg.Range)
		}
	}

	// Broken declarations are left out; the rest stays.
	path := filepath.Join(t.TempDir(), "broken.rolltpl")
	buri := pathToURI(path)
	c.open(buri, "template t { weights { rename \"a\" -> } }\n\nmca m { x = 1 }\n")
	c.call("textDocument/documentSymbol", DocumentSymbolParams{TextDocument: TextDocumentIdentifier{URI: buri}}, &syms)
	if diff := cmp.Diff([]symbolOutline{{Name: "m", Detail: "mca block", Kind: SymbolModule}}, outline(syms)); diff != "" {
		t.Errorf("symbols of a broken file (-want +got):\n%s", diff)
	}
}
