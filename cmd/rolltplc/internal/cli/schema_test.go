package cli

import (
	"os"
	"path/filepath"
	"strings"
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

func TestSchemaInferStdinAndName(t *testing.T) {
	code, stdout, stderr := run(t, `{"hidden_size": 8}`, "schema", "infer", "--name", "my_model", "-")
	if code != ExitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "schema my_model {\n    hidden_size: int = 8\n}\n") {
		t.Errorf("unexpected output:\n%s", stdout)
	}
}

func TestSchemaInferErrors(t *testing.T) {
	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stderr string
	}{
		{"no subcommand", "", nil, ExitUsage, "missing subcommand"},
		{"unknown subcommand", "", []string{"guess", "x.json"}, ExitUsage, `unknown subcommand "guess"`},
		{"no file", "", []string{"infer"}, ExitUsage, "want one CONFIG.json"},
		{"two files", "", []string{"infer", "a", "b"}, ExitUsage, "want one CONFIG.json"},
		{"bad name", "{}", []string{"infer", "--name", "a-b", "-"}, ExitUsage, `--name "a-b" is not a name`},
		{"bad flag", "", []string{"infer", "--nope", "-"}, ExitUsage, "unknown flag"},
		{"missing file", "", []string{"infer", filepath.Join(t.TempDir(), "none.json")}, ExitError, "no such file"},
		{"not JSON", "{", []string{"infer", "-"}, ExitError, "<stdin>: not JSON"},
		{"trailing data", "{} {}", []string{"infer", "-"}, ExitError, "data after the top-level value"},
		{"not an object", "[1]", []string{"infer", "-"}, ExitError, "not a JSON object"},
		{"no model_type", `{"a": 1}`, []string{"infer", "-"}, ExitError, "give the schema a name with --name"},
		{"odd model_type", `{"model_type": "a.b"}`, []string{"infer", "-"}, ExitError, `no usable model_type ("a.b")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tt.stdin, append([]string{"schema"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
			if stdout != "" {
				t.Errorf("unexpected stdout %q", stdout)
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.stderr)
			}
		})
	}
}

func TestSchemaHelp(t *testing.T) {
	code, stdout, _ := run(t, "", "help", "schema")
	if code != ExitOK || !strings.Contains(stdout, "rolltplc schema infer") || !strings.Contains(stdout, "--name") {
		t.Errorf("help schema: exit %d\n%s", code, stdout)
	}
}
