package exec_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
	"github.com/rolltpl/rolltpl/runtime/torchtest"
)

// parallelTemplates is every stdlib template.
var parallelTemplates = stdlibTypes

// moeTemplate reports whether the template's synthetic model has experts.
func moeTemplate(mt string) bool {
	return mt == "mixtral" || mt == "qwen3_next" || strings.HasSuffix(mt, "_moe")
}

// parallelLayouts are the layouts of acceptance 1. Those with expert
// parallelism apply only to models with experts: for the others they are
// the expected refusal of [parallelRefusal].
var parallelLayouts = []struct {
	name   string
	layout exec.Layout
}{
	{"tp2", exec.Layout{TP: 2}},
	{"tp4", exec.Layout{TP: 4}},
	{"pp2", exec.Layout{PP: 2}},
	{"pp2vpp2", exec.Layout{PP: 2, VPP: 2}},
	// (4 layers + embedding + loss) / 3 stages: 1, 2 and 1 layers.
	{"pp3acct", exec.Layout{PP: 3, AccountForEmbedding: true, AccountForLoss: true}},
	{"tp2local", exec.Layout{TP: 2, TransformerImpl: "local"}},
	{"ep2", exec.Layout{EP: 2}},
	{"tp2etp2ep2", exec.Layout{TP: 2, ETP: 2, EP: 2}},
	{"tp2pp2ep2", exec.Layout{TP: 2, PP: 2, EP: 2}},
	{"tp2pp2vpp2ep2", exec.Layout{TP: 2, PP: 2, VPP: 2, EP: 2}},
	// Expert naming schemes: TE grouped (linear_fc1.weight<k>).
	{"ep2tegrouped", exec.Layout{EP: 2, MoEGroupedGEMM: true}},
	{"ep2etp1tegrouped", exec.Layout{TP: 2, EP: 2, ETP: 1, MoEGroupedGEMM: true}},
	// Legacy grouped (GroupedMLP weight1/weight2, experts interleaved).
	{"ep2legacy", exec.Layout{EP: 2, MoEGroupedGEMM: true, LegacyGroupedGEMM: true}},
	{"tp2etp2ep2legacy", exec.Layout{TP: 2, ETP: 2, EP: 2, MoEGroupedGEMM: true, LegacyGroupedGEMM: true}},
	{"tp2pp2vpp2ep2legacy", exec.Layout{TP: 2, PP: 2, VPP: 2, EP: 2, MoEGroupedGEMM: true, LegacyGroupedGEMM: true}},
	{"tp2legacy", exec.Layout{TP: 2, MoEGroupedGEMM: true, LegacyGroupedGEMM: true}},
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

// synthDeep is synthFor widened for the parallel layouts: 4 decoder
// layers (PP2×VPP2, and PP3 with embedding and loss accounted), and
// attention heads and key-value groups divisible by 4 (TP4).
func synthDeep(mt string, dt tensor.DType) synth {
	return synthWith(mt, dt, func(d *dims, cfg map[string]any) {
		d.layers = 4
		switch mt {
		case "qwen2", "qwen2_5_vl": // 14 heads / 2 groups: 16 / 4, head_dim 8 kept
			d.hidden, d.heads, d.kv = 128, 16, 4
			if vc, ok := cfg["vision_config"].(map[string]any); ok {
				vc["out_hidden_size"] = 128
			}
		case "seed_oss": // 10 heads / 1 group, head_dim 16: 8 / 4
			d.heads, d.kv = 8, 4
		default:
			d.kv = max(d.kv, 4)
		}
	})
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
	// One HF checkpoint per template, written once and only read by the
	// template's subtests (the same bytes each subtest wrote for itself
	// before); removed after them all.
	sources := t.TempDir()
	for _, mt := range parallelTemplates {
		src := filepath.Join(sources, mt)
		synthDeep(mt, tensor.BF16).write(t, src, 2, uint64(len(mt)))
		for _, lc := range parallelLayouts {
			t.Run(mt+"/"+lc.name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				m := stdlibModel(t, mt)
				mca := filepath.Join(dir, "mca")
				r1, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{Layout: lc.layout})
				refused, why := parallelRefusal(mt, lc.layout)
				if refused == "HF → MCA" {
					wantRefusal(t, err, why, mca)
					return
				}
				if err != nil && !layoutFits(err) {
					// synthDeep is sized so that every layout divides.
					t.Fatalf("layout does not fit the synthetic model: %v", err)
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
				// The expert naming scheme (per-expert, TE grouped, legacy
				// grouped) shows in every rank file's expert names.
				expertName := ".mlp.experts.local_experts.0.linear_fc1.weight"
				if lc.layout.LegacyGroupedGEMM {
					expertName = ".mlp.experts.weight1"
				} else if lc.layout.MoEGroupedGEMM {
					expertName = ".mlp.experts.linear_fc1.weight0"
				}
				for _, p := range rankFiles(t, mca) {
					f, err := torchsave.Open(p)
					if err != nil {
						t.Fatal(err)
					}
					if err := f.VerifyCRC(); err != nil {
						t.Error(err)
					}
					if moeTemplate(mt) {
						found := false
						for _, tt := range f.Tensors() {
							found = found || strings.HasSuffix(tt.Name, expertName)
						}
						if !found {
							t.Errorf("%s: no expert tensor named …%s", p, expertName)
						}
					}
					keys := f.Root.(*torchsave.Dict).Items
					if len(keys) != len(shard.StageKeys(sl)) {
						t.Errorf("%s: %d stage keys, want %v", p, len(keys), shard.StageKeys(sl))
					}
					f.Close()
				}
				if strings.HasSuffix(mt, "_vl") {
					checkVisionPlacement(t, mca, sl)
				}
				// Shards of 256 KiB: several per checkpoint (the synthetic
				// models are 0.5-1.5 MB), so every layout's way back still
				// writes a sharded checkpoint and its index.
				// TestRoundTripStdlib writes every template in 64 KiB
				// shards; here those 4x more files cost 40% of the test.
				back := filepath.Join(dir, "back")
				_, err = exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{MaxShardSize: 256 << 10})
				if refused == "MCA → HF" {
					wantRefusal(t, err, why, back)
					return
				}
				if err != nil {
					t.Fatalf("MCA → HF: %v", err)
				}
				compareCheckpoints(t, src, back, r1.Plan)
			})
		}
	}
}

// parallelRefusal says which direction of the round trip of template mt
// at layout l must be refused ("HF → MCA" or "MCA → HF"; "" for none) and
// what the error says.
func parallelRefusal(mt string, l exec.Layout) (direction, why string) {
	switch {
	case l.EP > 1 && !moeTemplate(mt):
		// Expert parallelism of a model without experts.
		return "HF → MCA", fmt.Sprintf("expert_model_parallel_size %d needs num_moe_experts", l.EP)
	case l.TransformerImpl == "local" && mt == "mixtral":
		// ROLL's mixtral uses the default parallel classes, whose
		// te_to_local maps the MoE layers' local pre-MLP norm back to the
		// dense TE name, which no op of the template reads: ROLL cannot
		// read such a checkpoint back either, so it is not written.
		return "HF → MCA", `transformer_impl local: with the template's parallel set (its te_to_local map), ROLL's converter reads .pre_mlp_layernorm.weight back as .mlp.linear_fc1.layer_norm_weight (4 weights, first decoder.layers.0.pre_mlp_layernorm.weight), ` +
			`and then no op of template mixtral matches the name (pure name ".mlp.linear_fc1.layer_norm_weight")`
	}
	return "", ""
}

// wantRefusal checks that a conversion failed with an error saying why,
// and left nothing at its destination to.
func wantRefusal(t *testing.T, err error, why, to string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), why) {
		t.Fatalf("got error %v, want one saying %q", err, why)
	}
	if _, err := os.Stat(to); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after a refused conversion: %v", to, err)
	}
}

// TestParallelLegacyGroupedMemory checks that writing legacy grouped
// experts buffers at most the two grouped tensors (weight1, weight2) of
// one layer at a time, in buffers reused from layer to layer.
func TestParallelLegacyGroupedMemory(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthDeep("qwen3_moe", tensor.BF16).write(t, src, 1, 3)
	m := stdlibModel(t, "qwen3_moe")
	var mu sync.Mutex
	peaks := map[string]int64{}
	allocs := map[string]int{}
	exec.SetRankBufferHook(func(path string, peak int64, n int) {
		mu.Lock()
		peaks[path], allocs[path] = peak, n
		mu.Unlock()
	})
	defer exec.SetRankBufferHook(nil)
	mca := filepath.Join(dir, "mca")
	r, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{Layout: exec.Layout{EP: 2, MoEGroupedGEMM: true, LegacyGroupedGEMM: true}})
	if err != nil {
		t.Fatal(err)
	}
	// 8 experts, EP 2: 4 local experts of hidden 64 and moe_intermediate 32
	// in bf16: weight1 64×(4·2·32), weight2 (4·32)×64.
	const layer = (64*4*2*32 + 4*32*64) * 2
	if len(peaks) != 2 {
		t.Fatalf("%d rank files reported, want 2", len(peaks))
	}
	for p, peak := range peaks {
		if peak == 0 || peak > layer {
			t.Errorf("%s: %d bytes buffered at a time, want at most one layer's %d", p, peak, layer)
		}
		if allocs[p] > 2 {
			t.Errorf("%s: %d buffers allocated for 4 layers, want them reused (at most 2)", p, allocs[p])
		}
	}
	back := filepath.Join(dir, "back")
	if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	compareCheckpoints(t, src, back, r.Plan)
}

// checkVisionPlacement checks that the vision tower is on the first
// pipeline stage only (pp 0, first virtual stage) and duplicated: the same
// tensors, bit for bit, on every tensor and expert rank.
func checkVisionPlacement(t *testing.T, mca string, l shard.Layout) {
	t.Helper()
	var ref map[string][]byte
	first := shard.StageKey(0, l)
	n := 0
	for _, p := range rankFiles(t, mca) {
		rk, err := shard.ParseRankDir(filepath.Base(filepath.Dir(p)), l)
		if err != nil {
			t.Fatal(err)
		}
		f, err := torchsave.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]byte{}
		for _, tt := range f.Tensors() {
			key, name, _ := strings.Cut(tt.Name, "/")
			if !strings.HasPrefix(name, "vision_model.") {
				continue
			}
			if rk.PP != 0 || key != first {
				t.Errorf("%s: vision weight %s in %s, want only on the first stage", p, name, key)
				continue
			}
			got[name] = bytes.Clone(tt.Data)
		}
		f.Close()
		if rk.PP != 0 {
			continue
		}
		n++
		if len(got) == 0 {
			t.Errorf("%s: no vision weights on the first stage", p)
		}
		if ref == nil {
			ref = got
			continue
		}
		if len(got) != len(ref) {
			t.Errorf("%s: %d vision weights, the first rank has %d", p, len(got), len(ref))
		}
		for name, b := range ref {
			if !bytes.Equal(got[name], b) {
				t.Errorf("%s: vision weight %s differs from the first rank's", p, name)
			}
		}
	}
	if n == 0 {
		t.Errorf("no first-stage rank files")
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
func TestParallelTorchLoad(t *testing.T) { torchtest.Run(t, testParallelTorchLoad, "numpy") }

func testParallelTorchLoad(t *testing.T, py string) {
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
		out, err := torchtest.Command(py, append([]string{"-c", script, c.keys}, files...)...).CombinedOutput()
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
