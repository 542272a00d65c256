package exec_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

const setTemplate = `template tiny {
    layer_prefix = "model.layers."
    config {
        hidden_size       -> hidden_size
        num_attention_heads -> num_attention_heads
        num_hidden_layers -> num_layers
        set mca.ffn_hidden_size = hf.intermediate_size // hf.divisor when hf.intermediate_size
        set mca.moe_layer_freq = [0] * hf.dense + [1] * (hf.num_hidden_layers - hf.dense) when hf.dense != null
        set hf.dense = count(mca.moe_layer_freq, 0) when is_list(mca.moe_layer_freq)
        set hf.scaled = {scale}
    }
    weights {
        rename ".input_layernorm.weight" -> ".a.weight" if layer >= hf.split else ".b.weight"
    }
    parallel { duplicated ".a.weight", ".b.weight" }
}
`

func setModel(t *testing.T, scale string) *exec.Model {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tiny.rolltpl")
	if err := os.WriteFile(p, []byte(strings.Replace(setTemplate, "{scale}", scale, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	res := compiler.Compile([]string{p}, compiler.Options{})
	if res.Diags.HasErrors() {
		t.Fatal(res.Diags.Err())
	}
	m, err := exec.NewModel(res.Program, "tiny", nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSetBothDirections: `set mca` computes MCA keys from config.json
// (after the maps), `set hf` rebuilds HF keys from the MCA config, and an
// evaluation error names the file, the statement and its position.
func TestSetBothDirections(t *testing.T) {
	m := setModel(t, "mca.hidden_size * 1.5")
	hf := `{"model_type": "tiny", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 4, "intermediate_size": 30, "divisor": 4, "dense": 1, "split": 2}`
	mc, err := exec.BuildMCAConfig(m, []byte(hf), "config.json", "tiny", exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(mc.JSON(), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{7.0, []any{0.0, 1.0, 1.0, 1.0}}, []any{got["ffn_hidden_size"], got["moe_layer_freq"]}); diff != "" {
		t.Errorf("set mca (-want +got):\n%s", diff)
	}
	back, err := exec.BuildHFConfig(m, mc, "mca_config.json")
	if err != nil {
		t.Fatal(err)
	}
	var hfBack map[string]any
	if err := json.Unmarshal(back, &hfBack); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{1.0, 12.0}, []any{hfBack["dense"], hfBack["scaled"]}); diff != "" {
		t.Errorf("set hf (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(back), `"scaled": 12.0`) {
		t.Errorf("a float keeps its kind in config.json:\n%s", back)
	}

	// Per-layer names read the HF config recorded in the MCA config.
	var metas []exec.TensorMeta
	for _, n := range []string{"model.layers.0.input_layernorm.weight", "model.layers.3.input_layernorm.weight"} {
		metas = append(metas, exec.TensorMeta{Name: n, DType: tensor.F32, Shape: tensor.Shape{2}, Size: 8})
	}
	p := exec.PlanHFToMCA(m, mc, metas)
	var outs []string
	for _, s := range p.Steps {
		for _, o := range s.Outputs {
			outs = append(outs, o.Name)
		}
	}
	if diff := cmp.Diff([]string{"decoder.layers.0.b.weight", "decoder.layers.3.a.weight"}, outs); diff != "" {
		t.Errorf("per-layer names (-want +got):\n%s", diff)
	}

	// Errors.
	bad := `{"model_type": "tiny", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 4, "intermediate_size": 30, "divisor": 0}`
	_, err = exec.BuildMCAConfig(m, []byte(bad), "config.json", "tiny", exec.Layout{})
	if err == nil || !strings.Contains(err.Error(), "config.json: set mca.ffn_hidden_size") || !strings.Contains(err.Error(), "division or modulo by zero") {
		t.Errorf("division by zero: got %v", err)
	}
	noSplit := `{"model_type": "tiny", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 4}`
	mc2, err := exec.BuildMCAConfig(m, []byte(noSplit), "config.json", "tiny", exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	p = exec.PlanHFToMCA(m, mc2, metas[:1])
	if len(p.Problems) == 0 || !strings.Contains(p.Problems[0].Msg, "unsupported operand types for >=: int and null") {
		t.Errorf("a per-layer condition failing: problems %v", p.Problems)
	}
}
