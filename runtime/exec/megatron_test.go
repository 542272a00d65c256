package exec_test

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/rolltpl/rolltpl/internal/torchtest"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// megatronize has torch rewrite every rank file under mca the way
// Megatron-Core saves state dicts during training: Transformer Engine
// "._extra_state" entries (an io.BytesIO and an empty byte tensor) beside
// the weights, and the training arguments, iteration, RNG states (NumPy's
// among them) and optimizer state beside the model. With none set, it
// puts a None under one weight's name instead.
const megatronize = `
import argparse, glob, io, random, sys
import numpy as np
import torch
root, mode = sys.argv[1], sys.argv[2]
for path in sorted(glob.glob(root + "/iter_0000001/*/model_optim_rng.pt")):
    # Ours load with torch.load's default (weights_only=True from torch 2.6);
    # in mode none the files hold what the extras run added (io.BytesIO,
    # argparse.Namespace), which, as in Megatron, needs weights_only=False.
    sd = torch.load(path) if mode == "extras" else torch.load(path, weights_only=False)
    for key in [k for k in sd if k.startswith("model")]:
        model = sd[key]
        for name in list(model):
            if mode == "none" and name.endswith("linear_fc2.weight"):
                model[name] = None
                break
            if name.endswith("linear_qkv.weight"):
                model[name[:-len("weight")] + "_extra_state"] = io.BytesIO(b"fp8 meta")
            if name.endswith("linear_fc1.weight"):
                model[name[:-len("weight")] + "_extra_state"] = torch.empty(0, dtype=torch.uint8)
    sd["args"] = argparse.Namespace(lr=1e-5, params_dtype=torch.bfloat16, tensor_model_parallel_size=2)
    sd["iteration"] = 100
    sd["checkpoint_version"] = 3.0
    sd["rng_state"] = [{"random_rng_state": random.getstate(), "np_rng_state": np.random.get_state(),
                        "torch_rng_state": torch.get_rng_state()}]
    sd["optimizer"] = {"state": {0: {"exp_avg": torch.zeros(4), "step": 3}}, "param_groups": [{"lr": 1e-5, "params": [0]}]}
    torch.save(sd, path)
`

// TestMegatronCheckpoint converts back to HF the rank files of a model as
// Megatron-Core saves it in training: what is beside the weights is read
// without constructing anything and skipped, and the weights come back
// bit for bit; a value under a weight's name that is not a tensor is an
// error naming it.
func TestMegatronCheckpoint(t *testing.T) { torchtest.Run(t, testMegatronCheckpoint, "numpy") }

func testMegatronCheckpoint(t *testing.T, py string) {
	m := stdlibModel(t, "qwen3")
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthFor("qwen3", tensor.BF16).write(t, src, 1, 11)
	script := filepath.Join(dir, "megatronize.py")
	writeFile(t, script, []byte(megatronize))
	for _, l := range []exec.Layout{{}, {TP: 2, PP: 2}} {
		t.Run(fmt.Sprintf("tp%d-pp%d", max(l.TP, 1), max(l.PP, 1)), func(t *testing.T) {
			mca := filepath.Join(dir, fmt.Sprintf("mca-%d-%d", l.TP, l.PP))
			res, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{Layout: l})
			if err != nil {
				t.Fatal(err)
			}
			if out, err := torchtest.Command(py, script, mca, "extras").CombinedOutput(); err != nil {
				t.Fatalf("megatronize: %v\n%s", err, out)
			}
			back := filepath.Join(dir, fmt.Sprintf("back-%d-%d", l.TP, l.PP))
			if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
				t.Fatal(err)
			}
			compareCheckpoints(t, src, back, res.Plan)

			if out, err := torchtest.Command(py, script, mca, "none").CombinedOutput(); err != nil {
				t.Fatalf("megatronize: %v\n%s", err, out)
			}
			_, err = exec.ConvertMCAToHF(context.Background(), m, mca, filepath.Join(dir, "never"), exec.Options{})
			want := regexp.MustCompile(`model_optim_rng\.pt: model/decoder\.layers\.\d+\.mlp\.linear_fc2\.weight is a None, not a tensor`)
			if err == nil || !want.MatchString(err.Error()) {
				t.Errorf("None under a weight's name: %v", err)
			}
		})
	}
}
