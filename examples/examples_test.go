// Package examples holds worked examples of .rolltpl templates; its tests
// build each one end to end and keep the Python shown in the READMEs
// current.
package examples

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
	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/lang/langtest"
	rexec "github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/stdlib"
)

// TestWalkthrough builds examples/walkthrough/acme_vl.rolltpl, compares the
// module with the golden acme_vl.py the README shows (ROLLTPL_UPDATE=1
// rewrites it), and imports the build under the recording stand-ins to see
// what it registers.
func TestWalkthrough(t *testing.T) {
	dir := "walkthrough"
	// As rolltplc check compiles it: the stdlib's schemas and the one
	// beside the template (acme_vl_schema.rolltpl).
	res := compiler.Compile([]string{filepath.Join(dir, "acme_vl.rolltpl")}, compiler.Options{Lib: stdlib.Templates(), SchemaLib: compiler.LoadSchemaLibrary(stdlib.Schemas())})
	if res.Schemas.For(filepath.Join(dir, "acme_vl.rolltpl")).Schema("acme_vl") == nil {
		t.Error("acme_vl.rolltpl is not checked against its schema")
	}
	for _, d := range res.Diags {
		t.Errorf("%s", d.Error())
	}
	files, err := pyemit.Emit(res.Program)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "acme_build")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	var module []byte
	for _, f := range files {
		if f.Name == "acme_vl.py" {
			module = f.Content
		}
		if err := os.WriteFile(filepath.Join(out, f.Name), f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden := filepath.Join(dir, "acme_vl.py")
	if langtest.Update() {
		if err := os.WriteFile(golden, module, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(module)); diff != "" {
		t.Errorf("acme_vl.py is stale (-golden +built); run %s=1 go test ./examples:\n%s", langtest.UpdateEnv, diff)
	}

	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile(filepath.Join(dir, "acme_vl.rolltpl"))
	for name, text := range map[string][]byte{"acme_vl.rolltpl": src, "acme_vl.py": want} {
		if !bytes.Contains(readme, text) {
			t.Errorf("walkthrough/README.md does not show the current %s", name)
		}
	}

	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is required in CI")
		}
		t.Skip("python3 not found")
	}
	cmd := exec.Command(py, filepath.Join("..", "stdlib", "testdata", "record_registrations.py"), out, "core")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("import failed: %v\n%s", err, stderr.String())
	}
	var got struct {
		Templates map[string]struct {
			TemplateClass    string `json:"template_class"`
			HFLayerPrefix    string `json:"hf_layer_prefix"`
			WeightConverters []struct {
				Op       string   `json:"op"`
				HFNames  []string `json:"hf_names"`
				MCANames []string `json:"mca_names"`
			} `json:"weight_converters"`
			Effective map[string]string `json:"config_hf_to_mca_effective"`
		}
	}
	if err := json.Unmarshal(stdout, &got); err != nil {
		t.Fatal(err)
	}
	tm := got.Templates["acme_vl"]
	if tm.TemplateClass != "VisionTemplate" || tm.HFLayerPrefix != "language_model.layers." {
		t.Errorf("registered class %q prefix %q", tm.TemplateClass, tm.HFLayerPrefix)
	}
	var kinds []string
	for _, op := range tm.WeightConverters {
		kinds = append(kinds, op.Op)
	}
	wantKinds := []string{"RenameConverOp", "RenameConverOp", "RenameConverOp", "RenameConverOp", "RenameConverOp",
		"RenameConverOp", "RenameConverOp", "StackConverOp", "QKVConverOp", "QKVBiasConverOp", "RenameConverOp"}
	if diff := cmp.Diff(wantKinds, kinds); diff != "" {
		t.Errorf("registered ops mismatch (-want +got):\n%s", diff)
	}
	if tm.Effective["text_config.hidden_size"] != "hidden_size" || tm.Effective["image_token_id"] != "image_token_id" {
		t.Errorf("vision key prefixing not applied: %v", tm.Effective)
	}
}

// TestWalkthroughSchema: acme_vl_schema.rolltpl is what `rolltplc schema
// infer` makes of config.json, plus the reviewed lines, and config.json
// passes the template's checks against it.
func TestWalkthroughSchema(t *testing.T) {
	dir := "walkthrough"
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	saved, err := os.ReadFile(filepath.Join(dir, "acme_vl_schema.rolltpl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(schema.Infer("acme_vl", cfg), "\n") {
		if !bytes.Contains(saved, []byte(line)) {
			t.Errorf("acme_vl_schema.rolltpl lacks the inferred line %q", line)
		}
	}
	res := compiler.Compile([]string{filepath.Join(dir, "acme_vl.rolltpl")}, compiler.Options{Lib: stdlib.Templates(), SchemaLib: compiler.LoadSchemaLibrary(stdlib.Schemas())})
	tmpl := res.Program.Template("acme_vl")
	if tmpl == nil {
		t.Fatal("no template acme_vl")
	}
	probs, err := rexec.HFConfigProblems(tmpl, raw)
	if err != nil || len(probs) > 0 {
		t.Errorf("config.json against the template: %v %v", probs, err)
	}
}
