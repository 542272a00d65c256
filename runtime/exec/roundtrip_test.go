package exec_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// TestRoundTripStdlib converts a synthetic checkpoint of every stdlib
// model type HF → MCA → HF and requires every tensor back byte for byte,
// single-file and sharded.
func TestRoundTripStdlib(t *testing.T) {
	for _, mt := range stdlibTypes {
		for _, shards := range []int{1, 3} {
			name := mt
			if shards > 1 {
				name += "/sharded"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				s := synthFor(mt, tensor.BF16)
				src := filepath.Join(dir, "hf")
				s.write(t, src, shards, uint64(len(mt)*shards))
				m := stdlibModel(t, mt)
				mca := filepath.Join(dir, "mca")
				r1, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{})
				if err != nil {
					t.Fatalf("HF → MCA: %v", err)
				}
				for _, p := range r1.Plan.Problems {
					t.Errorf("unexpected %v problem: %v", p.Severity, p.Error())
				}
				checkMCA(t, mca, r1.Plan)
				back := filepath.Join(dir, "back")
				if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{MaxShardSize: 64 << 10}); err != nil {
					t.Fatalf("MCA → HF: %v", err)
				}
				compareCheckpoints(t, src, back, r1.Plan)
				for _, f := range []string{"tokenizer_config.json", "generation_config.json"} {
					if _, err := os.Stat(filepath.Join(mca, f)); err != nil {
						t.Errorf("MCA output: %v", err)
					}
					if _, err := os.Stat(filepath.Join(back, f)); err != nil {
						t.Errorf("HF output: %v", err)
					}
				}
			})
		}
	}
}

// checkMCA checks the MCA directory's files against the plan.
func checkMCA(t *testing.T, dir string, plan *exec.Plan) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, exec.TrackerName))
	if err != nil || string(b) != "1" {
		t.Errorf("tracker: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		t.Errorf("the MCA directory has a config.json")
	}
	f, err := torchsave.Open(filepath.Join(dir, "iter_0000001", "mp_rank_00", "model_optim_rng.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.VerifyCRC(); err != nil {
		t.Error(err)
	}
	root := f.Root.(*torchsave.Dict)
	if len(root.Items) != 1 || root.Items[0].Key != "model" {
		t.Errorf("root keys: %v, want just model", root.Items)
	}
	outs := plan.Outputs()
	if len(f.Tensors()) != len(outs) {
		t.Fatalf("%d tensors in the .pt, plan has %d", len(f.Tensors()), len(outs))
	}
	for i, tt := range f.Tensors() {
		if tt.Name != "model/"+outs[i].Name || tt.DType != outs[i].DType || !tt.Shape.Equal(outs[i].Shape) {
			t.Errorf("tensor %d: %s %v%v, planned %s %v%v", i, tt.Name, tt.DType, tt.Shape, outs[i].Name, outs[i].DType, outs[i].Shape)
		}
	}
}

// compareCheckpoints requires every tensor of a (except those the plan
// ignores or drops) to be in b with the same dtype, shape and bytes, and b
// to have nothing else.
func compareCheckpoints(t *testing.T, a, b string, plan *exec.Plan) {
	t.Helper()
	skip := map[string]bool{}
	for _, i := range plan.Ignored {
		skip[plan.Inputs[i].Name] = true
	}
	for _, st := range plan.Steps {
		if st.Dropped {
			for _, i := range st.Inputs {
				skip[plan.Inputs[i].Name] = true
			}
		}
	}
	x, err := safetensors.OpenSharded(a)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	y, err := safetensors.OpenSharded(b)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	n := 0
	for _, tx := range x.Tensors() {
		if skip[tx.Name] {
			if _, ok := y.Lookup(tx.Name); ok {
				t.Errorf("ignored tensor %s came back", tx.Name)
			}
			continue
		}
		ty, ok := y.Lookup(tx.Name)
		if !ok {
			t.Errorf("%s: missing after the round trip", tx.Name)
			continue
		}
		if tx.DType != ty.DType || !tx.Shape.Equal(ty.Shape) || !bytes.Equal(tx.File.Data(tx.TensorInfo), ty.File.Data(ty.TensorInfo)) {
			t.Errorf("%s: %v%v became %v%v or bytes differ", tx.Name, tx.DType, tx.Shape, ty.DType, ty.Shape)
		}
		tx.File.Release(tx.TensorInfo)
		ty.File.Release(ty.TensorInfo)
		n++
	}
	if len(y.Tensors()) != n {
		t.Errorf("round trip has %d tensors, want %d", len(y.Tensors()), n)
	}
	if y.Index == nil {
		t.Errorf("no index written")
	}
	for _, f := range y.Files {
		if md := f.Metadata(); md["format"] != "pt" {
			t.Errorf("%s: metadata %v", f.Path(), md)
		}
		if !strings.Contains(filepath.Base(f.Path()), "-of-") {
			t.Errorf("shard name %s", f.Path())
		}
	}
}

// TestPerLayerNames: Qwen3-Next fuses a linear attention layer's input norm
// into the GDN in_proj and a full attention layer's into linear_qkv, by
// mca_config's layer_types, which comes from config.json or, when that has
// none, from full_attention_interval (Qwen3NextConfig's rule), or from
// transformers' default interval of 4 when config.json has neither.
func TestPerLayerNames(t *testing.T) {
	m := stdlibModel(t, "qwen3_next")
	for _, c := range []struct {
		name   string
		drop   []string // config.json keys removed
		every4 bool     // full attention every fourth layer, not every second
	}{
		{"layer_types", nil, false},
		{"interval", []string{"layer_types"}, false},
		{"transformers default", []string{"layer_types", "full_attention_interval"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "hf")
			s := synthWith("qwen3_next", tensor.BF16, func(d *dims, cfg map[string]any) { d.layers = 4 })
			for _, k := range c.drop {
				delete(s.config, k)
			}
			s.write(t, src, 1, 3)
			mca := filepath.Join(dir, "mca")
			if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{}); err != nil {
				t.Fatal(err)
			}
			f, err := torchsave.Open(filepath.Join(mca, "iter_0000001", "mp_rank_00", exec.MCACheckpointPT))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var got []string
			for _, tt := range f.Tensors() {
				if strings.HasSuffix(tt.Name, "layer_norm_weight") {
					got = append(got, strings.TrimPrefix(tt.Name, "model/"))
				}
			}
			sort.Strings(got)
			want := []string{ // every second layer full attention
				"decoder.layers.0.self_attention.in_proj.layer_norm_weight",
				"decoder.layers.1.self_attention.linear_qkv.layer_norm_weight",
				"decoder.layers.2.self_attention.in_proj.layer_norm_weight",
				"decoder.layers.3.self_attention.linear_qkv.layer_norm_weight",
			}
			if c.every4 {
				want[1] = "decoder.layers.1.self_attention.in_proj.layer_norm_weight"
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("fused input norms (-want +got):\n%s", diff)
			}
			back := filepath.Join(dir, "back")
			if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
