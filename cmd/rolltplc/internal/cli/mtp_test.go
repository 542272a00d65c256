package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// mtpLlamaTemplate is llama with one MTP layer kept after the decoder
// layers (DeepSeek style).
const mtpLlamaTemplate = `import "common"
import "parallel"

template llama_mtp {
    layer_prefix    = "model.layers."
    mtp_first_layer = hf.num_hidden_layers
    config {
        use llm
        intermediate_size        -> ffn_hidden_size
        num_nextn_predict_layers -> mtp_num_layers
    }
    mca { use rope }
    weights {
        use llama_decoder
        use qkv
        rename ".enorm.weight" -> ".enorm.weight"
        rename ".hnorm.weight" -> ".hnorm.weight"
        rename ".eh_proj.weight" -> ".eh_proj.weight"
        rename ".shared_head.norm.weight" -> ".final_layernorm.weight"
    }
    parallel {
        use default
        use mtp
    }
}
`

// writeLlamaMTP writes a llama checkpoint of 2 decoder layers whose third
// HF layer is an MTP layer, with the MTP block's weights in a third shard.
func writeLlamaMTP(t *testing.T, dir string) (tpl string) {
	t.Helper()
	writeLlamaLayers(t, dir, 3)
	cfgPath := filepath.Join(dir, "config.json")
	var cfg map[string]any
	b, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["model_type"], cfg["num_hidden_layers"], cfg["num_nextn_predict_layers"] = "llama_mtp", 2, 1
	b, _ = json.MarshalIndent(cfg, "", "  ")
	writeTestFile(t, cfgPath, b)
	const H = 32
	specs := []safetensors.Spec{
		{Name: "model.layers.2.enorm.weight", DType: tensor.BF16, Shape: tensor.Shape{H}},
		{Name: "model.layers.2.hnorm.weight", DType: tensor.BF16, Shape: tensor.Shape{H}},
		{Name: "model.layers.2.eh_proj.weight", DType: tensor.BF16, Shape: tensor.Shape{H, 2 * H}},
		{Name: "model.layers.2.shared_head.norm.weight", DType: tensor.BF16, Shape: tensor.Shape{H}},
	}
	extra := "model-extra.safetensors"
	err := safetensors.WriteFile(filepath.Join(dir, extra), specs, map[string]string{"format": "pt"}, func(w *safetensors.Writer) error {
		for _, s := range specs {
			if err := w.WriteTensor(s.Name, make([]byte, 2*s.Shape.NumElements())); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	idxPath := filepath.Join(dir, safetensors.IndexFileName)
	var idx map[string]any
	b, _ = os.ReadFile(idxPath)
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	wm := idx["weight_map"].(map[string]any)
	for _, s := range specs {
		wm[s.Name] = extra
	}
	b, _ = json.Marshal(idx)
	writeTestFile(t, idxPath, b)
	tpl = filepath.Join(filepath.Dir(dir), "llama_mtp.rolltpl")
	writeTestFile(t, tpl, []byte(mtpLlamaTemplate))
	return tpl
}

func writeTestFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNoMTPFlag: --no-mtp on convert, check --checkpoint and verify.
func TestNoMTPFlag(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	tpl := writeLlamaMTP(t, hf)

	code, out, errb := run(t, "", "check", "--checkpoint", hf, tpl)
	if code != ExitOK || strings.Contains(out, "MTP left out") {
		t.Fatalf("check --checkpoint: exit %d\n%s%s", code, out, errb)
	}
	// 13 MTP tensors: 9 of the MTP transformer layer, 4 of its block.
	code, out, errb = run(t, "", "check", "--checkpoint", hf, "--no-mtp", tpl)
	if code != ExitOK || !strings.Contains(out, "(MTP left out)") || !strings.Contains(out, " 13 ") {
		t.Errorf("check --checkpoint --no-mtp: exit %d\n%s%s", code, out, errb)
	}
	code, out, errb = run(t, "", "check", "--no-mtp", tpl)
	if code != ExitUsage || !strings.Contains(errb, "--no-mtp") {
		t.Errorf("check --no-mtp without --checkpoint: exit %d, want %d\n%s%s", code, ExitUsage, out, errb)
	}

	mca := filepath.Join(dir, "mca")
	code, out, errb = run(t, "", "convert", "--from", hf, "--to", mca, "--template", tpl, "--no-mtp", "--pp", "2")
	if code != ExitOK || !strings.Contains(errb, "--no-mtp: 13 tensors of MTP layers left out") {
		t.Fatalf("convert --no-mtp: exit %d\n%s%s", code, out, errb)
	}
	var mc map[string]any
	b, _ := os.ReadFile(filepath.Join(mca, "mca_config.json"))
	if err := json.Unmarshal(b, &mc); err != nil || mc["mtp_num_layers"] != nil {
		t.Errorf("mca_config mtp_num_layers = %v (%v), want null", mc["mtp_num_layers"], err)
	}

	mca2 := filepath.Join(dir, "mca2")
	code, out, errb = run(t, "", "convert", "--from", hf, "--to", mca2, "--template", tpl, "--pp", "2")
	if code != ExitOK || strings.Contains(errb, "left out") {
		t.Fatalf("convert: exit %d\n%s%s", code, out, errb)
	}
	code, out, errb = run(t, "", "verify", "--template", tpl, "--no-mtp", hf)
	if code != ExitOK || !strings.Contains(out, "left out by --no-mtp") {
		t.Errorf("verify --no-mtp: exit %d\n%s%s", code, out, errb)
	}
}
