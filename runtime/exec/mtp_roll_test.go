package exec_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/internal/torchtest"
	"github.com/rolltpl/rolltpl/runtime/exec"
)

// TestMTPUnderROLL runs alibaba/ROLL's own converter code on the package
// `rolltplc build` emits for testdata/mtp.rolltpl
// (testdata/mtp_roll_check.py): at TP1, TP2, PP2, PP2+VPP2 and TP2+EP2,
// ROLL's template and DistConverter must produce exactly the rank files
// the Go runtime writes, MTP layers included (where ROLL's own deepseek_v3
// template makes its DistConverter fail), and convert them back to the HF
// tensors bit for bit. It needs a checkout of ROLL, named by ROLLTPL_ROLL
// (skipped without), and a python3 with torch (ROLLTPL_PYTHON, default
// /usr/bin/python3).
func TestMTPUnderROLL(t *testing.T) {
	roll := os.Getenv("ROLLTPL_ROLL")
	if roll == "" {
		t.Skip("ROLLTPL_ROLL (a checkout of alibaba/ROLL) is not set")
	}
	py := os.Getenv("ROLLTPL_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	mtpModel(t, "mtp_trailing") // compiles testdata/mtp.rolltpl
	// mtp_fused is left out: its fused-expert ops need ROLL's
	// Qwen3VLMoeTemplate, a vision template, which this harness does not load.
	prog := *mtpProg
	prog.Templates = nil
	for _, tp := range mtpProg.Templates {
		if tp.Name != "mtp_fused" {
			prog.Templates = append(prog.Templates, tp)
		}
	}
	files, err := pyemit.Emit(&prog)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	build := filepath.Join(dir, "mtpbuild")
	if err := os.Mkdir(build, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		writeFile(t, filepath.Join(build, f.Name), f.Content)
	}
	// mtp_cond: a per-layer name, so a generated template class under
	// mtp_template; its checkpoints are mtp_trailing's.
	for _, mt := range []string{"mtp_trailing", "mtp_prefixed", "mtp_cond"} {
		style := strings.TrimPrefix(mt, "mtp_")
		ckStyle := style
		if style == "cond" {
			ckStyle = "trailing"
		}
		c := newMTPCheckpoint(ckStyle)
		c.modelType = mt
		hf := filepath.Join(dir, style, "hf")
		c.write(t, hf)
		m := mtpModel(t, mt)
		for _, lc := range []struct {
			name string
			l    exec.Layout
		}{
			{"tp1", exec.Layout{}},
			{"tp2", exec.Layout{TP: 2}},
			{"pp2", exec.Layout{PP: 2}},
			{"pp2vpp2", exec.Layout{PP: 2, VPP: 2}},
			{"tp2ep2", exec.Layout{TP: 2, EP: 2}},
		} {
			t.Run(style+"/"+lc.name, func(t *testing.T) {
				mca := filepath.Join(dir, style, lc.name)
				if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{Layout: lc.l}); err != nil {
					t.Fatal(err)
				}
				cmd := torchtest.Command(py, filepath.Join("testdata", "mtp_roll_check.py"), roll, build, mt, hf, mca)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				err := cmd.Run()
				t.Logf("%s", out.String())
				if err != nil || !bytes.Contains(out.Bytes(), []byte("ALL OK")) {
					t.Fatalf("ROLL's converter on the built module: %v", err)
				}
			})
		}
	}
}
