package examples

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/langtest"
	rexec "github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/stdlib"
)

// TestPhi3 compiles examples/phi3/phi3.rolltpl (no errors, no warnings
// but the schema one its user schema answers; `rolltplc check` with the
// schemas runs in the diagnostic corpus of the CLI), checks it against
// the real Phi-3-mini and phi-4 config.json files, builds the MCA config
// from each and requires the tensor steps' sizes to come out as the
// model's (MHA and GQA), and keeps the golden phi3.py and the README
// current.
func TestPhi3(t *testing.T) {
	dir := "phi3"
	res := compiler.Compile([]string{filepath.Join(dir, "phi3.rolltpl")}, compiler.Options{Lib: stdlib.Templates()})
	for _, d := range res.Diags {
		if d.Severity == diag.Error || d.Code != diag.NoSchema {
			t.Errorf("%s", d.Error())
		}
	}
	tm := res.Program.Template("phi3")
	if tm == nil {
		t.Fatal("no phi3 template")
	}
	// Phi-3-mini (MHA: 32 heads, 32 KV heads of 96) and phi-4, the same
	// architecture with GQA (40 heads, 10 KV heads of 128).
	for _, c := range []struct {
		file, name string
		want       map[string][]int64
	}{
		{"config.json", "microsoft/Phi-3-mini-4k-instruct", map[string][]int64{
			".self_attn.qkv_proj.weight": {3072, 3072, 3072},
			".mlp.gate_up_proj.weight":   {8192, 8192},
		}},
		{"phi-4-config.json", "microsoft/phi-4", map[string][]int64{
			".self_attn.qkv_proj.weight": {5120, 1280, 1280},
			".mlp.gate_up_proj.weight":   {17920, 17920},
		}},
	} {
		cfgPath := filepath.Join(dir, "testdata", c.file)
		cfg, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		problems, err := rexec.HFConfigProblems(tm, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %+v", c.file, p)
		}
		m, err := rexec.NewModel(res.Program, "phi3", nil)
		if err != nil {
			t.Fatal(err)
		}
		mc, err := rexec.BuildMCAConfig(m, cfg, cfgPath, c.name, rexec.Layout{})
		if err != nil {
			t.Fatal(err)
		}
		sizes := map[string][]int64{}
		for _, op := range tm.Ops {
			if len(op.Inputs) == 0 {
				continue
			}
			comp, err := rexec.ComposeOp(op, mc)
			if err != nil {
				t.Fatal(err)
			}
			sizes[op.HF[0].Value] = comp.Inputs[0].Sizes
		}
		if diff := cmp.Diff(c.want, sizes); diff != "" {
			t.Errorf("%s: step sizes (-want +got):\n%s", c.file, diff)
		}
	}

	files, err := pyemit.Emit(res.Program)
	if err != nil {
		t.Fatal(err)
	}
	var module []byte
	for _, f := range files {
		if f.Name == "phi3.py" {
			module = f.Content
		}
	}
	golden := filepath.Join(dir, "phi3.py")
	if langtest.Update() {
		if err := os.WriteFile(golden, module, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gold, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(gold), string(module)); diff != "" {
		t.Errorf("phi3.py is stale (-golden +built); run %s=1 go test ./examples:\n%s", langtest.UpdateEnv, diff)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile(filepath.Join(dir, "phi3.rolltpl"))
	if !bytes.Contains(readme, src) {
		t.Errorf("examples/README.md does not show the current phi3/phi3.rolltpl")
	}
}
