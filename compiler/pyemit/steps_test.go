package pyemit_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/lang/diag"
)

// TestStepOpsEmit: an op with tensor steps is emitted as a generated
// subclass of its kind's class, registered under it, with no
// python-backend warning; a step the backend cannot invert (a cat of
// unknown sizes) is a python-backend warning at the op and refused by
// Emit. The classes' behaviour is cross-checked with torch against the Go
// runtime in runtime/exec (TestGeneratedStepOpsMatchRuntime).
func TestStepOpsEmit(t *testing.T) {
	compile := func(op string) *compiler.Result {
		file := filepath.Join(t.TempDir(), "t.rolltpl")
		src := "template t {\n    layer_prefix = \"model.layers.\"\n    weights {\n        " + op + "\n    }\n}\n"
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return compiler.Compile([]string{file}, compiler.Options{})
	}
	res := compile(`stack split(".gu", [mca.ffn_hidden_size, mca.ffn_hidden_size]) -> ".fc1"`)
	if ds := pyemit.Check(res.Program); len(ds) > 0 {
		t.Errorf("unexpected python-backend diagnostics: %v", ds)
	}
	files, err := pyemit.Emit(res.Program)
	if err != nil {
		t.Fatal(err)
	}
	mod := string(files[0].Content)
	for _, want := range []string{
		"class StackConverOpSteps1(StackConverOp):",
		"StackConverOpSteps1(hf_names=\".gu\", mca_names=\".fc1\", dim=0)",
		"with hf_parts(self, 2):",
		"torch.cat([parts[0], parts[1]], dim=0)",
	} {
		if !strings.Contains(mod, want) {
			t.Errorf("module lacks %q:\n%s", want, mod)
		}
	}
	var support string
	for _, f := range files {
		if f.Name == pyemit.SupportModule+".py" {
			support = string(f.Content)
		}
	}
	if !strings.Contains(support, "def hf_parts(op, n):") || !strings.Contains(support, "from mcore_adapter.models.converter.convert_utils import StackedTensors") {
		t.Errorf("support module lacks the step helpers:\n%s", support)
	}

	res = compile(`rename cat(".a", ".b") -> ".m"`)
	ds := pyemit.Check(res.Program)
	if len(ds) != 1 || ds[0].Code != diag.PythonBackend || !strings.Contains(ds[0].Detail, "cat at") {
		t.Errorf("want one python-backend warning for the cat, got %v", ds)
	}
	if _, err := pyemit.Emit(res.Program); err == nil {
		t.Error("Emit wrote an op whose cat cannot be inverted")
	}
}
