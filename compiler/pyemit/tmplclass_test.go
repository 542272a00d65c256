package pyemit_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/internal/torchtest"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestGeneratedTemplateClass builds testdata/generated/tiny.rolltpl (per-
// layer names under general conditions over mca, hf and layer; `set` in
// both directions), runs the generated Template subclass with python3
// against stand-ins for ROLL's Template/ConverOp contract
// (testdata/generated/standins.py), and checks that it picks the same
// per-layer names and computes the same config as the Go runtime, for
// several configs and both build-flag modes.
func TestGeneratedTemplateClass(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 is required under CI: %v", err)
		}
		t.Skip("no /usr/bin/python3")
	}
	res := compiler.Compile([]string{filepath.Join("testdata", "generated", "tiny.rolltpl")}, compiler.Options{})
	if res.Diags.HasErrors() {
		t.Fatalf("%v", res.Diags.Err())
	}
	files, err := pyemit.Emit(res.Program)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "built")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Contains(files[0].Content, []byte("class TinyTemplate(Template):")) {
		t.Fatalf("no generated class in:\n%s", files[0].Content)
	}

	const layers = 6
	configs := []map[string]any{
		{"first_k_dense_replace": 2, "intermediate_size": 96, "rope_scaling": map[string]any{"factor": 4.0}},
		{"intermediate_size": 97, "odd_only": false},
		{"first_k_dense_replace": 5, "intermediate_size": 10, "odd_only": true, "rope_scaling": nil},
	}
	hfNames := []string{"model.embed_tokens.weight"}
	for l := range layers {
		for _, n := range []string{".input_layernorm.weight", ".post_attention_layernorm.weight", ".mlp.down_proj.weight"} {
			hfNames = append(hfNames, fmt.Sprintf("model.layers.%d%s", l, n))
		}
	}
	picked := map[string]bool{}
	for ci, extra := range configs {
		hf := map[string]any{"model_type": "tiny", "hidden_size": 8, "num_hidden_layers": layers, "num_attention_heads": 2,
			"layer_types": []string{"linear_attention", "linear_attention", "full_attention", "linear_attention", "linear_attention", "full_attention"}}
		for k, v := range extra {
			hf[k] = v
		}
		hfText, _ := json.Marshal(hf)
		for _, mode := range []string{"core", "megatron_llama"} {
			name := fmt.Sprintf("config%d/%s", ci, mode)
			m, err := exec.NewModel(res.Program, "tiny", map[string]bool{"megatron_llama": mode == "megatron_llama"})
			if err != nil {
				t.Fatal(err)
			}
			mc, err := exec.BuildMCAConfig(m, hfText, "config.json", "tiny", exec.Layout{})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var metas []exec.TensorMeta
			for _, n := range hfNames {
				metas = append(metas, exec.TensorMeta{Name: n, DType: tensor.F32, Shape: tensor.Shape{2}, Size: 8})
			}
			goToMCA, mcaNames := stepNames(exec.PlanHFToMCA(m, mc, metas))
			var mcaMetas []exec.TensorMeta
			for _, n := range mcaNames {
				mcaMetas = append(mcaMetas, exec.TensorMeta{Name: n, DType: tensor.F32, Shape: tensor.Shape{2}, Size: 8})
			}
			goToHF, _ := stepNames(exec.PlanMCAToHF(m, mc, mcaMetas))
			hfBack, err := exec.BuildHFConfig(m, mc, "mca_config.json")
			if err != nil {
				t.Fatal(err)
			}

			var mcaObj map[string]any
			if err := json.Unmarshal(mc.JSON(), &mcaObj); err != nil {
				t.Fatal(err)
			}
			req, _ := json.Marshal(map[string]any{"model_type": "tiny", "hf_config": hf, "mca_config": mcaObj,
				"hf_names": hfNames, "mca_names": mcaNames})
			cmd := torchtest.Command(py, filepath.Join("testdata", "generated", "standins.py"), dir, mode)
			cmd.Stdin = bytes.NewReader(req)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: python3: %v\n%s", name, err, stderr.String())
			}
			var got struct {
				ToMCA    map[string][]string `json:"to_mca"`
				Names    map[string][]string `json:"names"`
				ToHF     map[string][]string `json:"to_hf"`
				Kws      map[string]any      `json:"kws"`
				HFConfig map[string]any      `json:"hf_config"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s: %v: %s", name, err, out)
			}
			if diff := cmp.Diff(goToMCA, got.ToMCA); diff != "" {
				t.Errorf("%s: HF -> MCA names (-go +python):\n%s", name, diff)
			}
			// hf_name_to_mca_names gives the names the conversion of
			// each HF name writes, per-layer choices included.
			for hfName, ns := range goToMCA {
				if len(ns) > 0 {
					if diff := cmp.Diff(ns, got.Names[hfName]); diff != "" {
						t.Errorf("%s: hf_name_to_mca_names(%s) (-conversion +python):\n%s", name, hfName, diff)
					}
				}
			}
			if diff := cmp.Diff(goToHF, got.ToHF); diff != "" {
				t.Errorf("%s: MCA -> HF names (-go +python):\n%s", name, diff)
			}
			for _, k := range []string{"moe_layer_freq", "ffn_hidden_size", "rotary_scaling_factor", "kv_channels"} {
				if diff := cmp.Diff(mcaObj[k], got.Kws[k]); diff != "" {
					t.Errorf("%s: set mca.%s (-go +python):\n%s", name, k, diff)
				}
			}
			var goHF map[string]any
			if err := json.Unmarshal(hfBack, &goHF); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"first_k_dense_replace", "layer_kinds"} {
				if diff := cmp.Diff(goHF[k], got.HFConfig[k]); diff != "" {
					t.Errorf("%s: set hf.%s (-go +python):\n%s", name, k, diff)
				}
			}
			for _, ns := range goToMCA {
				for _, n := range ns {
					picked[n[strings.LastIndex(n, ".self_attention")+1:]] = true
				}
			}
		}
	}
	// Both branches of the per-layer conditions were taken somewhere.
	for _, want := range []string{"self_attention.in_proj.layer_norm_weight", "self_attention.linear_qkv.layer_norm_weight"} {
		if !picked[want] {
			t.Errorf("no layer converted to %s; picked %v", want, picked)
		}
	}
}

// stepNames returns, per input name, the sorted names a plan's steps
// write from it, and all written names sorted.
func stepNames(p *exec.Plan) (map[string][]string, []string) {
	out := map[string][]string{}
	var all []string
	for _, s := range p.Steps {
		for _, i := range s.Inputs {
			for _, o := range s.Outputs {
				out[p.Inputs[i].Name] = append(out[p.Inputs[i].Name], o.Name)
			}
		}
		for _, o := range s.Outputs {
			all = append(all, o.Name)
		}
	}
	for k := range out {
		sort.Strings(out[k])
	}
	sort.Strings(all)
	return out, all
}
