package pyemit_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/lang/langtest"
)

// TestModelOpsAndPrefixRules builds a template using the ops ROLL defines
// beside its models and a key-prefix rule that is not ROLL's VisionTemplate,
// compares the Python with goldens (ROLLTPL_UPDATE=1 rewrites them), and
// imports it under the recording stand-ins.
func TestModelOpsAndPrefixRules(t *testing.T) {
	res := compiler.Compile([]string{filepath.Join("testdata", "model_ops.rolltpl")}, compiler.Options{})
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
		if f.Name == "__init__.py" {
			continue
		}
		golden := filepath.Join("testdata", "model_ops.golden", f.Name)
		if langtest.Update() {
			_ = os.MkdirAll(filepath.Dir(golden), 0o755)
			if err := os.WriteFile(golden, f.Content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(f.Content)); diff != "" {
			t.Errorf("%s mismatch (-golden +emitted):\n%s", f.Name, diff)
		}
	}

	out := recordRegistrations(t, dir)
	var got struct {
		Templates map[string]struct {
			Class     string            `json:"template_class"`
			Effective map[string]string `json:"config_hf_to_mca_effective"`
			Ops       []map[string]any  `json:"weight_converters"`
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	tm := got.Templates["custom_ops"]
	wantEff := map[string]string{"image_token_id": "image_token_id"}
	for _, k := range []string{"hidden_size", "num_experts", "linear_key_head_dim", "linear_value_head_dim", "linear_num_key_heads", "linear_num_value_heads"} {
		mca := k
		if k == "num_experts" {
			mca = "num_moe_experts"
		}
		wantEff["thinker_config."+k] = mca
	}
	if diff := cmp.Diff(wantEff, tm.Effective); diff != "" {
		t.Errorf("effective config map mismatch (-want +got):\n%s", diff)
	}
	// The emitted rules (Python's fnmatch) prefix every key as the Go
	// side's rollname does.
	for _, tpl := range res.Program.Templates {
		if py, ok := got.Templates[tpl.Name]; ok && len(tpl.KeyPrefixes) > 0 {
			goEff := map[string]string{}
			for _, e := range tpl.Config {
				goEff[tpl.EffectiveKey(e.HF)] = e.MCA
			}
			if diff := cmp.Diff(goEff, py.Effective); diff != "" {
				t.Errorf("%s: effective keys, Go vs emitted Python (-go +python):\n%s", tpl.Name, diff)
			}
		}
	}
	opClasses := func(name string) []string {
		var classes []string
		for _, op := range got.Templates[name].Ops {
			mod, _ := op["module"].(string)
			classes = append(classes, mod+":"+op["op"].(string))
		}
		return classes
	}
	wantClasses := []string{
		"mcore_adapter.models.qwen3_next:NextGDNConverOp",
		"mcore_adapter.models.qwen3_5:Qwen3_5_GDNConverOp",
		":DropConverOp",
	}
	if diff := cmp.Diff(wantClasses, opClasses("custom_ops")); diff != "" {
		t.Errorf("op classes mismatch (-want +got):\n%s", diff)
	}
	fe := got.Templates["fused_experts"]
	if fe.Class != "Qwen3VLMoeTemplate" {
		t.Errorf("fused experts: template class %q, want ROLL's Qwen3VLMoeTemplate", fe.Class)
	}
	if diff := cmp.Diff(map[string]string{"text_config.hidden_size": "hidden_size", "text_config.num_experts": "num_moe_experts", "image_token_id": "image_token_id"}, fe.Effective); diff != "" {
		t.Errorf("fused experts: effective config map mismatch (-want +got):\n%s", diff)
	}
	wantClasses = []string{"mcore_adapter.models.qwen3_vl_moe:SplitStackConverOp", "mcore_adapter.models.qwen3_vl_moe:SplitConverOp"}
	if diff := cmp.Diff(wantClasses, opClasses("fused_experts")); diff != "" {
		t.Errorf("fused experts: op classes mismatch (-want +got):\n%s", diff)
	}
}

// TestFusedExpertsWithoutClass: split ops whose model module has no known
// template class, or a key-prefix rule that class cannot follow, are an
// error naming the template and the op, not a module that would never
// convert the experts back.
func TestFusedExpertsWithoutClass(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"no vision rule", `template t {
    layer_prefix  = "model.layers."
    expert_prefix = ".mlp.experts."
    config { num_experts -> num_moe_experts }
    weights { split_experts(transpose = true) "down_proj" -> ".linear_fc2.weight" }
    parallel { row ".linear_fc2.weight" }
}
`, "template t: mcore_adapter.models.qwen3_vl_moe.Qwen3VLMoeTemplate, which its fused-expert split ops need, extends VisionTemplate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t.rolltpl")
			if err := os.WriteFile(path, []byte(c.src), 0o644); err != nil {
				t.Fatal(err)
			}
			res := compiler.Compile([]string{path}, compiler.Options{})
			if res.Diags.HasErrors() {
				t.Fatalf("%v", res.Diags.Err())
			}
			_, err := pyemit.Emit(res.Program)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Emit error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// recordRegistrations imports the emitted package in dir under the
// recording stand-ins for ROLL (stdlib/testdata/record_registrations.py,
// "core" mode) and returns the JSON they print; it skips without python3
// unless CI is set.
func recordRegistrations(t *testing.T, dir string) []byte {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is required in CI")
		}
		t.Skip("python3 not found")
	}
	cmd := exec.Command(py, filepath.Join("..", "..", "stdlib", "testdata", "record_registrations.py"), dir, "core")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("import failed: %v\n%s", err, stderr.String())
	}
	return out
}
