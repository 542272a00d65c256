package exec_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestReadCheckpointModel: the model type comes from config.json's
// model_type (HF) or mca_config.json's hf_model_type (MCA, parsed and
// kept); absent or not a string is ""; an unreadable or non-object file
// is an error naming it.
func TestReadCheckpointModel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		isMCA   bool
		file    string // written as config.json or mca_config.json
		want    string // model type
		wantErr string
	}{
		{"hf", false, `{"model_type": "llama", "hidden_size": 8}`, "llama", ""},
		{"hf none", false, `{"hidden_size": 8}`, "", ""},
		{"hf not a string", false, `{"model_type": 3}`, "", ""},
		{"hf not an object", false, `[1]`, "", "config.json: not a JSON object"},
		{"hf missing", false, "", "", "config.json"},
		{"mca", true, `{"hf_model_type": "qwen2", "num_layers": 2, "hidden_size": 8, "num_attention_heads": 2}`, "qwen2", ""},
		{"mca none", true, `{"num_layers": 2, "hidden_size": 8, "num_attention_heads": 2}`, "", ""},
		{"mca bad", true, `{"num_layers": `, "", "mca_config.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			name, key := exec.HFConfigName, "model_type"
			if tc.isMCA {
				name, key = exec.MCAConfigName, "hf_model_type"
			}
			if tc.file != "" {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cm, err := exec.ReadCheckpointModel(dir, tc.isMCA)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, name)) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %s (%q)", err, filepath.Join(dir, name), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []string{cm.ModelType, cm.Key, cm.Path, cm.From()}
			want := []string{tc.want, key, filepath.Join(dir, name), filepath.Join(dir, name) + "'s " + key}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if (cm.MCA != nil) != tc.isMCA {
				t.Errorf("MCA config %v for isMCA %v", cm.MCA, tc.isMCA)
			}
		})
	}
}

// TestConvertReadsConfigOnce: Convert and PlanCheckpoint use the config
// file as ReadCheckpointModel read it (the one the template was chosen
// from), never reading it again: with the file broken after that read,
// both directions still convert, to the same bytes as from the intact
// checkpoint.
func TestConvertReadsConfigOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, ref, back := filepath.Join(dir, "hf"), filepath.Join(dir, "ref"), filepath.Join(dir, "back")
	synthFor("llama", tensor.BF16).write(t, src, 2, 7)
	m := stdlibModel(t, "llama")
	ctx := context.Background()
	if _, err := exec.ConvertHFToMCA(ctx, m, src, ref, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.ConvertMCAToHF(ctx, m, ref, back, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, src, want, config string
		isMCA                   bool
	}{
		{"HF -> MCA", src, ref, exec.HFConfigName, false},
		{"MCA -> HF", ref, back, exec.MCAConfigName, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cm, err := exec.ReadCheckpointModel(tc.src, tc.isMCA)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(tc.src, tc.config)
			good, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(`{"broken": `), 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, good, 0o644)
			if _, err := exec.PlanCheckpoint(m, cm, exec.Layout{}); err != nil {
				t.Errorf("PlanCheckpoint read the config again: %v", err)
			}
			dst := filepath.Join(t.TempDir(), "out")
			if _, err := exec.Convert(ctx, m, cm, dst, exec.Options{}); err != nil {
				t.Fatalf("Convert read the config again: %v", err)
			}
			want, got := readTree(t, tc.want), readTree(t, dst)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("output differs from the intact checkpoint's (-want +got):\n%s", diff)
			}
		})
	}
}
