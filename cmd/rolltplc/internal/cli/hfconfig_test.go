package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckRealConfigs checks each real config.json against the stdlib
// template of its model type: no errors.
func TestCheckRealConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../../../stdlib/testdata/hf-configs/*.json")
	if len(files) < 3 {
		t.Fatalf("found %d configs", len(files))
	}
	for _, f := range files {
		code, _, stderr := run(t, "", "check", "--hf-config", f)
		if code != ExitOK || strings.Contains(stderr, "error:") {
			t.Errorf("check --hf-config %s = %d:\n%s", f, code, stderr)
		}
	}
}

func TestCheckBrokenConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, config string
		args         []string
		want         []string
	}{
		{"wrong type", `{"model_type": "qwen2", "hidden_size": "896", "num_attention_heads": 14, "num_hidden_layers": 24,
			"num_key_value_heads": 2, "vocab_size": 151936, "intermediate_size": 4864, "max_position_embeddings": 32768,
			"rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": true}`, nil,
			[]string{"[hf-config-type]", `hidden_size is "896"`}},
		// my_model has no stdlib schema: one is inferred from the file, so
		// every key the file lacks has no default.
		{"missing key", `{"model_type": "my_model", "hidden_size": 896}`, []string{"testdata/good.rolltpl"},
			[]string{"[hf-config-missing]", "has no num_attention_heads"}},
		{"out of range", `{"model_type": "qwen2", "hidden_size": 896, "num_attention_heads": 14, "num_hidden_layers": 0,
			"num_key_value_heads": 2, "vocab_size": 151936, "intermediate_size": 4864, "max_position_embeddings": 32768,
			"rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": "yes"}`, nil,
			[]string{"[hf-config-range]", `num_hidden_layers is 0: want an integer from 1 to 65536 (for MCA num_layers)`,
				"[hf-config-type]", `tie_word_embeddings is "yes": got string, want bool`}},
		{"not json", `{"model_type": "qwen2",`, nil, []string{"[hf-config-json]"}},
		{"no model type", `{"hidden_size": 896}`, nil, []string{"[hf-config-model-type]"}},
		{"model type mismatch", `{"model_type": "llama"}`, []string{"testdata/good.rolltpl"},
			[]string{"[hf-config-model-type]", `has model_type "llama" but the template converts "my_model"`}},
	} {
		p := write(strings.ReplaceAll(tc.name, " ", "_")+".json", tc.config)
		args := append([]string{"check", "--hf-config", p}, tc.args...)
		code, _, stderr := run(t, "", args...)
		if code != ExitError {
			t.Errorf("%s: exit %d, want 1", tc.name, code)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, stderr)
			}
		}
	}
}
