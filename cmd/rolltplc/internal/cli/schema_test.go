package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/lang/parser"
)

const schemaQwen3Config = `{
  "architectures": ["Qwen3ForCausalLM"],
  "head_dim": 128,
  "model_type": "qwen3",
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "tie_word_embeddings": true,
  "text_config": {"hidden_size": 8}
}
`

func schemaWriteTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSchemaInfer: the inferred schema parses and loads. Its text, --name,
// standard input, usage and input errors are tested by
// testdata/script/schema.txtar.
func TestSchemaInfer(t *testing.T) {
	code, stdout, stderr := run(t, "", "schema", "infer", schemaWriteTemp(t, "config.json", schemaQwen3Config))
	if code != ExitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := "# Inferred by `rolltplc schema infer` from a config.json: review the types and defaults.\n" +
		`schema qwen3 {
    architectures: list[str]
    head_dim: int = 128
    model_type: str = "qwen3"
    rms_norm_eps: float = 1e-06
    rope_scaling: any? = null
    rope_theta: int = 1000000
    text_config: qwen3_text_config
    tie_word_embeddings: bool = true
}

` + "# Inferred by `rolltplc schema infer` from text_config in a config.json: review the types and defaults.\n" +
		`schema qwen3_text_config {
    hidden_size: int = 8
}
`
	if diff := cmp.Diff(want, stdout); diff != "" {
		t.Errorf("output mismatch (-want +got):\n%s", diff)
	}
	f, diags := parser.ParseFile("out.rolltpl", []byte(stdout))
	if len(diags) > 0 {
		t.Fatalf("output does not parse: %v", diags)
	}
	if _, diags := schema.Load([]schema.Source{{File: f, Src: []byte(stdout)}}); len(diags) > 0 {
		t.Errorf("output does not load: %v", diags)
	}
}
