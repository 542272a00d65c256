package exec_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

var parallelLayouts = []struct {
	name   string
	layout exec.Layout
}{
	{"tp2", exec.Layout{TP: 2}},
	{"pp2", exec.Layout{PP: 2}},
	{"pp2vpp2", exec.Layout{PP: 2, VPP: 2}},
	{"tp2pp2vpp2ep2", exec.Layout{TP: 2, PP: 2, VPP: 2, EP: 2}},
	{"ep2", exec.Layout{EP: 2}},
	{"tp2pp2ep2", exec.Layout{TP: 2, PP: 2, EP: 2}},
	{"ep2etp1grouped", exec.Layout{TP: 2, EP: 2, ETP: 1, MoEGroupedGEMM: true}},
	{"tp2local", exec.Layout{TP: 2, TransformerImpl: "local"}},
	// (4 layers + embedding + loss) / 3 stages: 1, 2 and 1 layers.
	{"pp3acct", exec.Layout{PP: 3, AccountForEmbedding: true, AccountForLoss: true}},
}

// layoutFits reports whether a conversion error says the layout does not
// divide the model.
func layoutFits(err error) bool {
	var pe *exec.PlanError
	if errors.As(err, &pe) {
		for _, p := range pe.Problems {
			if p.Kind == exec.ProblemLayout {
				return false
			}
		}
	}
	return !(err != nil && strings.Contains(err.Error(), "parallel layout"))
}

// synthDeep is synthFor with 4 decoder layers, for pipeline layouts with
// virtual stages.
func synthDeep(mt string, dt tensor.DType) synth {
	var d dims
	cfg := map[string]any{}
	arch := ""
	switch mt {
	case "llama":
		d = dims{vocab: 384, hidden: 64, inter: 160, layers: 4, heads: 8, kv: 2, denseMLP: true}
		arch = "LlamaForCausalLM"
	case "qwen3":
		d = dims{vocab: 256, hidden: 64, inter: 160, layers: 4, heads: 8, kv: 4, headDim: 16, qkNorm: true, tie: true, denseMLP: true}
		arch = "Qwen3ForCausalLM"
	case "qwen2_moe":
		d = dims{vocab: 256, hidden: 64, inter: 128, layers: 4, heads: 8, kv: 8, bias: true, experts: 4, moeInter: 48, sharedInter: 96}
		arch = "Qwen2MoeForCausalLM"
		cfg["moe_intermediate_size"] = 48
		cfg["shared_expert_intermediate_size"] = 96
		cfg["num_experts"] = 4
		cfg["num_experts_per_tok"] = 2
		cfg["decoder_sparse_step"] = 1
	default:
		return synthFor(mt, dt)
	}
	for k, v := range d.textConfig(dt) {
		if _, ok := cfg[k]; !ok {
			cfg[k] = v
		}
	}
	cfg["architectures"] = []string{arch}
	cfg["model_type"] = mt
	return synth{modelType: mt, config: cfg, tensors: d.specs(dt)}
}

// rankFiles lists the rank files of an MCA output.
func rankFiles(t *testing.T, dir string) []string {
	t.Helper()
	fs, err := filepath.Glob(filepath.Join(dir, "iter_0000001", "mp_rank_*", "model_optim_rng.pt"))
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// TestParallelRoundTrip converts synthetic checkpoints HF → MCA at several
// parallel layouts and back, bit for bit.
func TestParallelRoundTrip(t *testing.T) {
	for _, mt := range []string{"llama", "qwen3", "qwen2", "qwen2_moe", "mixtral", "qwen3_moe"} {
		for _, lc := range parallelLayouts {
			t.Run(mt+"/"+lc.name, func(t *testing.T) {
				t.Parallel()
				if lc.layout.TransformerImpl == "local" && strings.Contains(mt, "m") && (mt == "mixtral" || strings.HasSuffix(mt, "_moe")) {
					// The local name of the MoE pre-MLP norm maps back to
					// the dense TE name (te_to_local is not invertible).
					t.Skip("transformer_impl local with experts: not supported yet")
				}
				dir := t.TempDir()
				s := synthFor(mt, tensor.BF16)
				if lc.layout.VPP > 1 || lc.layout.PP == 3 {
					s = synthDeep(mt, tensor.BF16)
				}
				src := filepath.Join(dir, "hf")
				s.write(t, src, 2, uint64(len(mt)))
				m := stdlibModel(t, mt)
				mca := filepath.Join(dir, "mca")
				r1, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{Layout: lc.layout})
				if err != nil && !layoutFits(err) {
					t.Skipf("layout does not fit: %v", err)
				}
				if err != nil {
					t.Fatalf("HF → MCA: %v", err)
				}
				mc, err := os.ReadFile(filepath.Join(mca, exec.MCAConfigName))
				if err != nil {
					t.Fatal(err)
				}
				want := lc.layout
				if want.ETP == 0 {
					want.ETP = max(want.TP, 1)
				}
				for k, v := range map[string]int{"tensor_model_parallel_size": max(want.TP, 1), "pipeline_model_parallel_size": max(want.PP, 1),
					"expert_model_parallel_size": max(want.EP, 1), "expert_tensor_parallel_size": want.ETP} {
					if !strings.Contains(string(mc), fmt.Sprintf("%q: %d", k, v)) {
						t.Errorf("mca_config.json lacks %s %d", k, v)
					}
				}
				for k, v := range map[string]bool{"account_for_embedding_in_pipeline_split": want.AccountForEmbedding,
					"account_for_loss_in_pipeline_split": want.AccountForLoss} {
					if !strings.Contains(string(mc), fmt.Sprintf("%q: %v", k, v)) {
						t.Errorf("mca_config.json lacks %s %v", k, v)
					}
				}
				sl := shard.Layout{TP: want.TP, PP: want.PP, VPP: want.VPP, EP: want.EP, ETP: want.ETP}.Normalized()
				if got := len(rankFiles(t, mca)); got != len(shard.Ranks(sl)) {
					t.Errorf("%d rank files, want %d", got, len(shard.Ranks(sl)))
				}
				for _, p := range rankFiles(t, mca) {
					f, err := torchsave.Open(p)
					if err != nil {
						t.Fatal(err)
					}
					if err := f.VerifyCRC(); err != nil {
						t.Error(err)
					}
					keys := f.Root.(*torchsave.Dict).Items
					if len(keys) != len(shard.StageKeys(sl)) {
						t.Errorf("%s: %d stage keys, want %v", p, len(keys), shard.StageKeys(sl))
					}
					f.Close()
				}
				back := filepath.Join(dir, "back")
				if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{MaxShardSize: 64 << 10}); err != nil {
					t.Fatalf("MCA → HF: %v", err)
				}
				compareCheckpoints(t, src, back, r1.Plan)
			})
		}
	}
}

// corruptTensor flips one byte of tensor key/name in a .pt file.
func corruptTensor(t *testing.T, path, name string) {
	t.Helper()
	f, err := torchsave.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var off int64 = -1
	offs := map[string]int64{}
	for _, r := range f.Records() {
		offs[r.Name] = r.Offset
	}
	for _, tt := range f.Tensors() {
		if tt.Name == name {
			off = offs["data/"+tt.Storage] + tt.StorageOffset*int64(tt.DType.Size())
		}
	}
	f.Close()
	if off < 0 {
		t.Fatalf("%s: no tensor %s", path, name)
	}
	fd, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	b := make([]byte, 1)
	if _, err := fd.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := fd.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestParallelBadReplicaAndMissingRank(t *testing.T) {
	dir := t.TempDir()
	s := synthFor("qwen2_moe", tensor.BF16)
	src := filepath.Join(dir, "hf")
	s.write(t, src, 1, 7)
	m := stdlibModel(t, "qwen2_moe")
	mca := filepath.Join(dir, "mca")
	if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{Layout: exec.Layout{TP: 2, EP: 2}}); err != nil {
		t.Fatal(err)
	}
	// A duplicated weight (a layer norm) on tensor rank 1, expert rank 1.
	const name = "decoder.layers.1.self_attention.linear_qkv.layer_norm_weight"
	rf := filepath.Join(mca, "iter_0000001", "mp_rank_01_001", "model_optim_rng.pt")
	corruptTensor(t, rf, "model/"+name)
	back := filepath.Join(dir, "back")
	_, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{})
	if err == nil || !strings.Contains(err.Error(), "layer_norm_weight") || !strings.Contains(err.Error(), "mp_rank_01_001") {
		t.Errorf("corrupted replica: err = %v; want it to name the weight and mp_rank_01_001", err)
	}
	if _, serr := os.Stat(back); serr == nil {
		t.Errorf("%s was written", back)
	}

	if err := os.RemoveAll(filepath.Dir(rf)); err != nil {
		t.Fatal(err)
	}
	_, err = exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{})
	if err == nil || !strings.Contains(err.Error(), "mp_rank_01_001") {
		t.Errorf("missing rank file: err = %v; want it to name mp_rank_01_001", err)
	}
	if _, serr := os.Stat(back); serr == nil {
		t.Errorf("%s was written", back)
	}
}

// TestParallelTorchLoad loads every rank file with torch (weights_only)
// and checks its state-dict keys.
func TestParallelTorchLoad(t *testing.T) {
	py := pythonWithTorch(t)
	for _, c := range []struct {
		mt     string
		layout exec.Layout
		keys   string
	}{
		{"qwen2_moe", exec.Layout{TP: 2, PP: 2, EP: 2}, "model"},
		{"qwen3", exec.Layout{PP: 2, VPP: 2}, "model0,model1"},
		{"mixtral", exec.Layout{EP: 2, MoEGroupedGEMM: true}, "model"},
	} {
		dir := t.TempDir()
		s := synthDeep(c.mt, tensor.BF16)
		src := filepath.Join(dir, "hf")
		s.write(t, src, 1, 9)
		m := stdlibModel(t, c.mt)
		mca := filepath.Join(dir, "mca")
		if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{Layout: c.layout}); err != nil {
			t.Fatal(err)
		}
		files := rankFiles(t, mca)
		script := `
import sys, torch
keys = sys.argv[1].split(",")
for p in sys.argv[2:]:
    sd = torch.load(p, map_location="cpu", weights_only=True)
    assert list(sd.keys()) == keys, (p, list(sd.keys()))
    n = 0
    for key in keys:
        for k, v in sd[key].items():
            assert isinstance(v, torch.Tensor), (p, k)
            n += 1
    assert n > 0, p
print("ok", len(sys.argv) - 2)
`
		out, err := osexec.Command(py, append([]string{"-c", script, c.keys}, files...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %+v: torch: %v\n%s", c.mt, c.layout, err, out)
		}
		if !strings.HasPrefix(string(out), fmt.Sprintf("ok %d", len(files))) {
			t.Errorf("%s %+v: torch: %s", c.mt, c.layout, out)
		}
	}
}

// BenchmarkConvertLayout converts the 512 MiB Llama-shaped checkpoint of
// BenchmarkConvertHFToMCA to TP1 and TP4 (warm page cache), and the TP4
// output back to HF.
func BenchmarkConvertLayout(b *testing.B) {
	dir := benchCheckpoint(b, benchSize)
	m := stdlibModel(b, "llama")
	src := filepath.Join(dir, "hf")
	for _, tp := range []int{1, 4} {
		b.Run(fmt.Sprintf("HFToMCA/tp%d", tp), func(b *testing.B) {
			b.SetBytes(dirBytes(b, src))
			for i := range b.N {
				dst := filepath.Join(dir, fmt.Sprintf("mca-tp%d-%d", tp, i))
				if _, err := exec.ConvertHFToMCA(context.Background(), m, src, dst, exec.Options{Layout: exec.Layout{TP: tp}}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dst)
				b.StartTimer()
			}
		})
	}
	for _, tp := range []int{1, 4} {
		b.Run(fmt.Sprintf("MCAToHF/tp%d", tp), func(b *testing.B) {
			mca := filepath.Join(dir, fmt.Sprintf("mca-back-tp%d", tp))
			if _, err := os.Stat(mca); err != nil {
				if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{Layout: exec.Layout{TP: tp}}); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(dirBytes(b, src))
			b.ResetTimer()
			for i := range b.N {
				dst := filepath.Join(dir, fmt.Sprintf("hf-tp%d-%d", tp, i))
				if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, dst, exec.Options{}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dst)
				b.StartTimer()
			}
		})
	}
}
