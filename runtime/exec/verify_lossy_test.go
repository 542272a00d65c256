package exec_test

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// lossyQwen35 writes a bf16 Qwen3.5 checkpoint whose zero-centred GDN
// output norms hold random values (not the near-1 values trained ones
// have, which come back exactly) and returns, per randomized norm, its
// original bytes.
func lossyQwen35(t *testing.T, dir string, v qwen35Variant) map[string][]byte {
	t.Helper()
	synthQwen35(t, v, tensor.BF16).write(t, dir, 2, 13)
	return randomNorms(t, dir)
}

// randomNorms fills the zero-centred GDN output norms of the checkpoint in
// dir with random finite bf16 values and returns their bytes by name.
func randomNorms(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	norms := map[string][]byte{}
	rng := rand.New(rand.NewPCG(17, 19))
	editShard(t, dir, func(specs []safetensors.Spec, data map[string][]byte) []safetensors.Spec {
		for _, sp := range specs {
			if strings.HasSuffix(sp.Name, "linear_attn.norm.weight") {
				d := data[sp.Name]
				for i := 0; i+2 <= len(d); i += 2 {
					// Finite values of every magnitude, both signs.
					binary.LittleEndian.PutUint16(d[i:], uint16(rng.UintN(0x7F80))|uint16(rng.UintN(2))<<15)
				}
				norms[sp.Name] = slices.Clone(d)
			}
		}
		return specs
	})
	if len(norms) == 0 {
		t.Fatal("no zero-centred norms in the checkpoint")
	}
	return norms
}

// bf16RoundTrip is (w - 1) + 1 in bf16, computed here element by element
// with torch's rounding (float32 then round to nearest even), apart from
// the runtime's op.
func bf16RoundTrip(src []byte) []byte {
	out := make([]byte, len(src))
	le := binary.LittleEndian
	for i := 0; i+2 <= len(src); i += 2 {
		m := tensor.F32ToBF16(tensor.BF16ToF32(le.Uint16(src[i:])) - 1)
		le.PutUint16(out[i:], tensor.F32ToBF16(tensor.BF16ToF32(m)+1))
	}
	return out
}

// TestVerifyLossy: verify of a bf16 Qwen3.5 (dense, MoE) and Qwen3-Next
// checkpoint
// with random zero-centred norms passes: the norms are compared with
// their own round trip and reported as lossy, with the number of changed
// elements and the largest ulp distance computed independently here;
// every other tensor is still compared byte for byte.
func TestVerifyLossy(t *testing.T) {
	next := qwen35Variant{id: "qwen3_next", modelType: "qwen3_next"}
	for _, v := range []qwen35Variant{qwen35Variants[0], qwen35Variants[3], next} {
		t.Run(v.id, func(t *testing.T) {
			dir := t.TempDir()
			hf := filepath.Join(dir, "hf")
			var norms map[string][]byte
			if v.modelType == "qwen3_next" {
				synthWith("qwen3_next", tensor.BF16, func(d *dims, cfg map[string]any) { d.layers = 4 }).write(t, hf, 2, 13)
				norms = randomNorms(t, hf)
			} else {
				norms = lossyQwen35(t, hf, v)
			}
			layout := exec.Layout{TP: 2}
			if v.modelType != "qwen3_5" {
				layout.EP = 2
			}
			rep, err := exec.Verify(context.Background(), stdlibModel(t, v.modelType), hf, exec.VerifyOptions{TempDir: dir, Layout: layout})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				t.Fatalf("verify failed: %v", rep.Diffs)
			}
			got := map[string]exec.LossyTensor{}
			for _, l := range rep.Lossy {
				got[l.Name] = l
			}
			if len(got) != len(norms) {
				t.Errorf("%d lossy tensors reported, want the %d zero-centred norms: %v", len(got), len(norms), rep.Lossy)
			}
			for name, orig := range norms {
				changed, ulp := ops.ULPDiff(tensor.BF16, orig, bf16RoundTrip(orig))
				want := exec.LossyTensor{Name: name, Kind: ops.KindZeroCenteredRMSNorm, DType: tensor.BF16, Changed: changed, MaxULP: ulp}
				if got[name] != want {
					t.Errorf("%s: reported %+v, want %+v", name, got[name], want)
				}
				if changed == 0 {
					t.Errorf("%s: the round trip changes nothing: the test exercises nothing", name)
				}
			}
			n, maxULP, kinds := rep.LossySummary()
			if n != len(norms) || maxULP == 0 || !slices.Equal(kinds, []string{"zero_centered_rmsnorm in BF16"}) {
				t.Errorf("summary: %d changed, %d ulp, %v", n, maxULP, kinds)
			}
			t.Logf("%d tensors compared, %d lossy (max %d ulp)", rep.Compared, n, maxULP)
		})
	}
}

// flipInRankFiles flips the byte at element elem (byte: which of its
// bytes, mask: which bits) of every rank file's copy of the first MCA
// tensor whose name ends in suffix, choosing the element with pick; it
// returns the MCA name.
func flipInRankFiles(t *testing.T, mca, suffix string, pick func(data []byte, es int) int, byteOf int, mask byte) string {
	t.Helper()
	var name string
	for _, p := range rankFiles(t, mca) {
		f, err := torchsave.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var off int64 = -1
		for _, tt := range f.Tensors() {
			if !strings.HasSuffix(tt.Name, suffix) || name != "" && tt.Name != name {
				continue
			}
			es := tt.DType.Size()
			elem := pick(tt.Data, es)
			for _, r := range f.Records() {
				if r.Name == "data/"+tt.Storage {
					off = r.Offset + (tt.StorageOffset+int64(elem))*int64(es) + int64(byteOf)
				}
			}
			name = tt.Name
			break
		}
		f.Close()
		if off < 0 {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[off] ^= mask
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if name == "" {
		t.Fatalf("no MCA tensor *%s in %s", suffix, mca)
	}
	return name
}

// TestVerifyLossyMutations: a byte flipped in the intermediate MCA
// checkpoint still fails verify, both in an exact tensor and in a lossy
// norm beyond what its round trip explains, naming the HF tensor.
func TestVerifyLossyMutations(t *testing.T) {
	v := qwen35Variants[0]
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	lossyQwen35(t, hf, v)
	m := stdlibModel(t, v.modelType)
	first := func([]byte, int) int { return 0 }
	// A norm element m = w - 1 with |m| >= 2 (finite): its sign flipped,
	// -m + 1 cannot round to m + 1.
	large := func(d []byte, es int) int {
		for i := 0; i+es <= len(d); i += es {
			b := binary.LittleEndian.Uint16(d[i:])
			if f := tensor.BF16ToF32(b); (f >= 2 || f <= -2) && b&0x7F80 != 0x7F80 {
				return i / es
			}
		}
		t.Fatal("no norm element of magnitude >= 2")
		return 0
	}
	for _, c := range []struct {
		name, suffix, hfSuffix, reason string
		pick                           func([]byte, int) int
		byteOf                         int
		mask                           byte
	}{
		{"exact", ".self_attention.out_proj.weight", ".linear_attn.out_proj.weight", "bytes differ from byte", first, 0, 0x01},
		{"lossy", ".self_attention.out_norm.weight", ".linear_attn.norm.weight", "differ from its own round trip through zero_centered_rmsnorm", large, 1, 0x80},
	} {
		t.Run(c.name, func(t *testing.T) {
			var flipped string
			exec.SetVerifyMCAHook(func(mca string) error {
				flipped = flipInRankFiles(t, mca, c.suffix, c.pick, c.byteOf, c.mask)
				return nil
			})
			defer exec.SetVerifyMCAHook(nil)
			rep, err := exec.Verify(context.Background(), m, hf, exec.VerifyOptions{TempDir: t.TempDir(), Layout: exec.Layout{TP: 2}})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || len(rep.Diffs) != 1 {
				t.Fatalf("%s flipped: ok=%v, diffs %v", flipped, rep.OK(), rep.Diffs)
			}
			d := rep.Diffs[0]
			if !strings.HasSuffix(d.Name, c.hfSuffix) || !strings.Contains(d.Reason, c.reason) {
				t.Errorf("%s flipped: diff %s: %s; want *%s: %s", flipped, d.Name, d.Reason, c.hfSuffix, c.reason)
			}
			for _, l := range rep.Lossy {
				if l.Name == d.Name {
					t.Errorf("%s is both a diff and a lossy tensor", d.Name)
				}
			}
		})
	}
}

// TestPlanLossyOps: a plan names the ops that are lossy in its tensors'
// dtypes (Qwen3.5's zero-centred GDN norms, one per linear-attention
// layer, in both directions; in F32 too), in its report and its summary,
// and none for a template without them.
func TestPlanLossyOps(t *testing.T) {
	dir := t.TempDir()
	for _, dt := range []tensor.DType{tensor.BF16, tensor.F32} {
		hf := filepath.Join(dir, dt.String(), "hf")
		synthQwen35(t, qwen35Variants[1], dt).write(t, hf, 2, 5)
		m := stdlibModel(t, "qwen3_5")
		cp, err := exec.PlanConversion(m, hf, exec.Layout{})
		if err != nil {
			t.Fatal(err)
		}
		want := []exec.LossyOp{{Kind: "zero_centered_rmsnorm", DType: dt.String(), Tensors: 3}}
		if diff := cmp.Diff(want, cp.Plan.Report().Lossy); diff != "" {
			t.Errorf("%v HF -> MCA (-want +got):\n%s", dt, diff)
		}
		var sum strings.Builder
		cp.Plan.WriteSummary(&sum)
		if line := "note: zero_centered_rmsnorm is lossy in " + dt.String() + " (3 tensors)"; !strings.Contains(sum.String(), line) {
			t.Errorf("summary lacks %q:\n%s", line, sum.String())
		}
		mca := filepath.Join(dir, dt.String(), "mca")
		if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{}); err != nil {
			t.Fatal(err)
		}
		back, err := exec.PlanConversion(m, mca, exec.Layout{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, back.Plan.Report().Lossy); diff != "" {
			t.Errorf("%v MCA -> HF (-want +got):\n%s", dt, diff)
		}
	}
	hf := filepath.Join(dir, "qwen3")
	synthFor("qwen3", tensor.BF16).write(t, hf, 2, 7)
	cp, err := exec.PlanConversion(stdlibModel(t, "qwen3"), hf, exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	if l := cp.Plan.Report().Lossy; l != nil {
		t.Errorf("qwen3 has lossy ops %v", l)
	}
}
