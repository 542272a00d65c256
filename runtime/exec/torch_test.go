package exec_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/internal/torchtest"
	rexec "github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// The torch interop check: for every stdlib model type and for BF16, F16
// and F32 checkpoints, the MCA .pt we write is loaded by Debian's torch
// (torch.load, and with weights_only=True) and testdata/recompute.py
// recomputes every MCA tensor from the HF safetensors with torch, from the
// op formulas, and compares them bit for bit. Skipped when torch cannot be
// imported, unless the environment variable CI is set. ROLLTPL_PYTHON
// names the interpreter (default /usr/bin/python3).

type torchCase struct {
	ID      string         `json:"id"`
	HFDir   string         `json:"hf_dir"`
	PT      string         `json:"pt"`
	Config  map[string]any `json:"config"`
	Ignored []string       `json:"ignored"`
	Dropped []string       `json:"dropped"`
	Steps   []torchStep    `json:"steps"`
	Resave  string         `json:"resave,omitempty"`
}

type torchStep struct {
	Kind    string         `json:"kind"`
	Params  map[string]any `json:"params"`
	Inputs  []string       `json:"inputs"`
	Outputs []torchOut     `json:"outputs"`
}

type torchOut struct {
	Name  string `json:"name"`
	Class string `json:"class"`
}

// manifestCase describes a finished HF → MCA conversion for recompute.py.
func manifestCase(id, hfDir, mcaDir string, plan *rexec.Plan) torchCase {
	oc := plan.Config.OpsConfig()
	c := torchCase{ID: id, HFDir: hfDir, PT: filepath.Join(mcaDir, "iter_0000001", "mp_rank_00", "model_optim_rng.pt"),
		Config: map[string]any{
			"hidden_size": oc.HiddenSize, "num_attention_heads": oc.NumAttentionHeads, "num_query_groups": oc.NumQueryGroups,
			"kv_channels": oc.KVChannels, "linear_num_key_heads": oc.LinearNumKeyHeads, "linear_num_value_heads": oc.LinearNumValueHeads,
			"linear_key_head_dim": oc.LinearKeyHeadDim, "linear_value_head_dim": oc.LinearValueHeadDim, "num_moe_experts": oc.NumMoEExperts,
		},
		Ignored: []string{}, Dropped: []string{}, Steps: []torchStep{}}
	for _, i := range plan.Ignored {
		c.Ignored = append(c.Ignored, plan.Inputs[i].Name)
	}
	ops := plan.Model.Template.Ops
	for _, st := range plan.Steps {
		if st.Dropped {
			for _, i := range st.Inputs {
				c.Dropped = append(c.Dropped, plan.Inputs[i].Name)
			}
			continue
		}
		ts := torchStep{Kind: st.Kind, Params: map[string]any{}}
		for k, v := range ops[st.OpIndex].Params {
			switch k {
			case "dim", "hidden_size":
				if n, err := strconv.Atoi(v.Text); err == nil {
					ts.Params[k] = n
				}
			case "transpose":
				ts.Params[k] = v.Bool
			}
		}
		for _, i := range st.Inputs {
			ts.Inputs = append(ts.Inputs, plan.Inputs[i].Name)
		}
		for _, o := range st.Outputs {
			ts.Outputs = append(ts.Outputs, torchOut{Name: o.Name, Class: o.Class})
		}
		c.Steps = append(c.Steps, ts)
	}
	return c
}

// torchResult is what a torch check script reports for one case.
type torchResult struct {
	Checked int      `json:"checked"`
	Files   int      `json:"files"`
	Errors  []string `json:"errors"`
}

// runTorchScript writes manifest as JSON in dir, runs testdata/script on
// it with py, and returns the per-case results it wrote; each case's
// errors fail the test, and a case without a result is reported.
func runTorchScript(t *testing.T, py, script, dir string, manifest any, ids []string) map[string]torchResult {
	t.Helper()
	path := filepath.Join(dir, "manifest.json")
	b, err := json.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
	result := filepath.Join(dir, "result.json")
	if out, err := torchtest.Command(py, filepath.Join("testdata", script), path, result).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	var res struct {
		TorchVersion string                 `json:"torch_version"`
		Cases        map[string]torchResult `json:"cases"`
	}
	rb, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rb, &res); err != nil {
		t.Fatal(err)
	}
	t.Logf("torch %s", res.TorchVersion)
	for _, id := range ids {
		r, ok := res.Cases[id]
		if !ok {
			t.Errorf("%s: no result", id)
		}
		for _, e := range r.Errors {
			t.Errorf("%s: %s", id, e)
		}
	}
	return res.Cases
}

// runRecompute runs testdata/recompute.py on the cases and fails the test
// for every error it reports.
func runRecompute(t *testing.T, py string, dir string, cases []torchCase) {
	t.Helper()
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = c.ID
	}
	res := runTorchScript(t, py, "recompute.py", dir, cases, ids)
	for _, c := range cases {
		r, ok := res[c.ID]
		if !ok {
			continue
		}
		want := 0
		for _, s := range c.Steps {
			want += len(s.Outputs)
		}
		if r.Checked != want || want == 0 {
			t.Errorf("%s: recomputed %d of %d MCA tensors", c.ID, r.Checked, want)
		}
	}
}

func TestTorchRecompute(t *testing.T) { torchtest.Run(t, testTorchRecompute, "numpy") }

func testTorchRecompute(t *testing.T, py string) {
	dir := t.TempDir()
	var cases []torchCase
	for _, dt := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F32} {
		for i, mt := range stdlibTypes {
			id := mt + "/" + dt.String()
			hf := filepath.Join(dir, id, "hf")
			mca := filepath.Join(dir, id, "mca")
			synthFor(mt, dt).write(t, hf, 1+i%2, uint64(i)+uint64(dt)*100)
			r, err := rexec.ConvertHFToMCA(context.Background(), stdlibModel(t, mt), hf, mca, rexec.Options{})
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			c := manifestCase(id, hf, mca, r.Plan)
			c.Resave = filepath.Join(dir, id, "torch-mca", "iter_0000001", "mp_rank_00", "model_optim_rng.pt")
			cases = append(cases, c)
		}
	}
	runRecompute(t, py, dir, cases)

	// The files torch.save wrote from our checkpoints convert back to the
	// original HF tensors.
	for _, c := range cases {
		tdir := filepath.Join(filepath.Dir(c.Resave), "..", "..")
		mca := filepath.Join(filepath.Dir(c.PT), "..", "..")
		for _, f := range []string{rexec.MCAConfigName, rexec.TrackerName} {
			b, err := os.ReadFile(filepath.Join(mca, f))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(tdir, f), b)
		}
		mt := c.ID[:strings.IndexByte(c.ID, '/')]
		back := filepath.Join(tdir, "..", "back")
		if _, err := rexec.ConvertMCAToHF(context.Background(), stdlibModel(t, mt), tdir, back, rexec.Options{}); err != nil {
			t.Errorf("%s: reading torch's own file: %v", c.ID, err)
			continue
		}
		hfPlan := &rexec.Plan{Inputs: []rexec.TensorMeta{}}
		for _, name := range append(append([]string(nil), c.Ignored...), c.Dropped...) {
			hfPlan.Inputs = append(hfPlan.Inputs, rexec.TensorMeta{Name: name})
			hfPlan.Ignored = append(hfPlan.Ignored, len(hfPlan.Inputs)-1)
		}
		compareCheckpoints(t, c.HFDir, back, hfPlan)
	}
}
