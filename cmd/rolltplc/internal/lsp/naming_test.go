package lsp

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestHoverParallelClassROLL checks that hover on an MCA name reports the
// tensor-parallel class ROLL's DistConverter uses for it (rollname): a
// ".bias" is classified as its ".weight", patterns are fnmatch globs
// ("[!z]" negates), and the first class in ROLL's order wins, with the
// class the name falls back to without swiglu.
func TestHoverParallelClassROLL(t *testing.T) {
	const text = `template naming_hover {
    layer_prefix = "model.layers."
    weights {
        rename ".self_attn.qkv.bias" -> ".self_attention.linear_qkv.bias"
        rename ".mlp.fc1.weight" -> ".mlp.linear_fc1.weight"
        rename ".self_attn.o_proj.weight" -> ".self_attention.linear_proj.weight"
        rename ".self_attn.z_proj.weight" -> ".self_attention.linear_z.weight"
        rename "model.embed_tokens.weight" -> "embedding.word_embeddings.weight"
    }
    parallel {
        pre_process "embedding.*"
        column ".self_attention.linear_qkv.weight", ".mlp.linear_fc1.weight", "embedding.word_embeddings.weight"
        swiglu ".mlp.linear_fc1.weight"
        row ".self_attention.linear_[!z]*.weight"
    }
}
`
	c := newInitialized(t, Options{})
	uri := pathToURI(filepath.Join(t.TempDir(), "naming_hover.rolltpl"))
	c.open(uri, text)
	for _, tc := range []struct{ name, want string }{
		{".self_attention.linear_qkv.bias", "parallel class `column`"},
		{".mlp.linear_fc1.weight", "parallel class `swiglu` (`column` without swiglu)"},
		{".self_attention.linear_proj.weight", "parallel class `row`"},
		{".self_attention.linear_z.weight", ""},
		{"embedding.word_embeddings.weight", "parallel class `pre_process`, class `column`"},
	} {
		h := hoverAt(t, c, uri, posOf(t, text, `-> "`+tc.name, 5))
		if h == nil {
			t.Fatalf("%s: no hover", tc.name)
		}
		got := ""
		for _, para := range strings.Split(h.Contents.Value, "\n\n") {
			if rest, ok := strings.CutPrefix(para, "In template `naming_hover`: "); ok {
				got = rest
			}
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("hover on %s (-want +got):\n%s\nwhole hover:\n%s", tc.name, d, h.Contents.Value)
		}
	}
	// Hover on a parallel pattern lists the ops whose MCA names it
	// classifies, by the same rules.
	for _, tc := range []struct {
		pattern string
		lines   []int // lines of the producing ops
	}{
		{`".self_attention.linear_qkv.weight"`, []int{4}},
		{`".self_attention.linear_[!z]*.weight"`, []int{4, 6}}, // the .bias of line 4 too
	} {
		h := hoverAt(t, c, uri, posOf(t, text, tc.pattern, 2))
		if h == nil {
			t.Fatalf("%s: no hover", tc.pattern)
		}
		var got []int
		for _, l := range []int{4, 5, 6, 7, 8} {
			if strings.Contains(h.Contents.Value, fmt.Sprintf("line %d)", l)) {
				got = append(got, l)
			}
		}
		if d := cmp.Diff(tc.lines, got); d != "" {
			t.Errorf("hover on %s: producers (-want +got):\n%s\nwhole hover:\n%s", tc.pattern, d, h.Contents.Value)
		}
	}
}

// TestHoverStdlibQKVBias: with the stdlib's default parallel set (ROLL's
// default_dist_config, whose column class lists the qkv weight only),
// hover on a qkv bias reports column, as check and the runtime classify
// it.
func TestHoverStdlibQKVBias(t *testing.T) {
	const text = `import "parallel"
import "common"

template qkv_bias_hover {
    layer_prefix = "model.layers."
    weights {
        use qkv
        qkv_bias ".self_attn.q_proj.bias", ".self_attn.k_proj.bias", ".self_attn.v_proj.bias"
            -> ".self_attention.linear_qkv.bias"
    }
    parallel { use default }
}
`
	c := newInitialized(t, Options{})
	uri := pathToURI(filepath.Join(t.TempDir(), "qkv_bias_hover.rolltpl"))
	c.open(uri, text)
	h := hoverAt(t, c, uri, posOf(t, text, `-> ".self_attention.linear_qkv.bias"`, 5))
	if h == nil {
		t.Fatal("no hover")
	}
	if !strings.Contains(h.Contents.Value, "\n\nIn template `qkv_bias_hover`: parallel class `column`\n\n") {
		t.Errorf("hover does not report the column class:\n%s", h.Contents.Value)
	}
}
