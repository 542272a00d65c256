package lsp

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// generated returns a realistic .rolltpl file of at least n lines: templates
// in the stdlib's style, each with its own ops, importing the stdlib's
// shared blocks.
func generated(n int) string {
	var b strings.Builder
	b.WriteString("# Generated for BenchmarkDidChange2000Lines.\nimport \"common\"\nimport \"parallel\"\n")
	for i := 0; strings.Count(b.String(), "\n") < n; i++ {
		fmt.Fprintf(&b, `
# Model %[1]d: a dense decoder with q/k/v biases.
template model_%[1]d {
    layer_prefix = "model.layers."
    config {
        use llm
        intermediate_size -> ffn_hidden_size
    }
    mca {
        use rope
        add_qkv_bias = true
    }
    weights {
        use llama_decoder
        qkv ".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight"
            -> ".self_attention.linear_qkv.weight"
        qkv_bias ".self_attn.q_proj.bias", ".self_attn.k_proj.bias", ".self_attn.v_proj.bias"
            -> ".self_attention.linear_qkv.bias"
        ignore ".self_attn.rotary_emb.inv_freq"
    }
    parallel { use default }
}
`, i)
	}
	return b.String()
}

// BenchmarkDidChange2000Lines measures the time from a one-character
// didChange on a 2,000-line file to the publishDiagnostics for it, through
// the real framing. It reports the median in ms.
func BenchmarkDidChange2000Lines(b *testing.B) {
	c := newInitialized(b, Options{})
	text := generated(2000)
	uri := pathToURI(filepath.Join(b.TempDir(), "big.rolltpl"))
	c.open(uri, text)
	// The templates are named model_N, for which the stdlib has no config
	// schema: one no-schema warning each, and no errors.
	first := c.diagnostics(uri, 1)
	for _, d := range first.Diagnostics {
		if d.Severity == SeverityError {
			b.Fatalf("the generated file has errors: %+v", d)
		}
	}
	// Type and delete one character in a comment near the middle, in
	// turn.
	lines := strings.Split(text, "\n")
	line := len(lines) / 2
	for !strings.HasPrefix(lines[line], "# Model") {
		line++
	}
	col := len(lines[line])
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ch := TextDocumentContentChangeEvent{Range: &Range{Position{line, col}, Position{line, col}}, Text: "x"}
		if i%2 == 1 {
			ch = TextDocumentContentChangeEvent{Range: &Range{Position{line, col}, Position{line, col + 1}}, Text: ""}
		}
		version := int32(i + 2)
		start := time.Now()
		c.notify("textDocument/didChange", DidChangeTextDocumentParams{TextDocument: VersionedTextDocumentIdentifier{URI: uri, Version: version},
			ContentChanges: []TextDocumentContentChangeEvent{ch}})
		got := c.diagnostics(uri, version)
		times = append(times, time.Since(start))
		if len(got.Diagnostics) != len(first.Diagnostics) {
			b.Fatalf("%d diagnostics after a change in a comment, want %d", len(got.Diagnostics), len(first.Diagnostics))
		}
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(strings.Count(text, "\n")), "lines")
}
