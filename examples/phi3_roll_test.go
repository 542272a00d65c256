package examples

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/stdlib"
)

// TestPhi3UnderROLL runs alibaba/ROLL's own converter code on the package
// `rolltplc build` emits for examples/phi3 (phi3/testdata/roll_check.py):
// its rank tensors must equal those of ROLL's llama template on the same
// weights stored apart, at TP1, TP2 and TP2+PP2, MHA and GQA, and
// converting back must restore the fused HF tensors bit for bit. It needs
// a checkout of ROLL, named by ROLLTPL_ROLL (skipped without), and a
// python3 with torch (ROLLTPL_PYTHON, default /usr/bin/python3).
func TestPhi3UnderROLL(t *testing.T) {
	roll := os.Getenv("ROLLTPL_ROLL")
	if roll == "" {
		t.Skip("ROLLTPL_ROLL (a checkout of alibaba/ROLL) is not set")
	}
	py := os.Getenv("ROLLTPL_PYTHON") // as internal/torchtest
	if py == "" {
		py = "/usr/bin/python3"
	}
	res := compiler.Compile([]string{filepath.Join("phi3", "phi3.rolltpl")}, compiler.Options{Lib: stdlib.Templates()})
	if res.Diags.HasErrors() {
		t.Fatal(res.Diags.Err())
	}
	files, err := pyemit.Emit(res.Program)
	if err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(t.TempDir(), "phi3build")
	if err := os.Mkdir(build, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(build, f.Name), f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(py, filepath.Join("phi3", "testdata", "roll_check.py"), roll, build)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("%s", out.String())
	if err != nil || !bytes.Contains(out.Bytes(), []byte("ALL OK")) {
		t.Fatalf("ROLL's converter on the built phi3 module: %v", err)
	}
}
