package exec_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

var peftTargetRE = regexp.MustCompile(`^(.*)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$`)

// writePEFTFixture writes a PEFT adapter of rank r for the HF checkpoint
// described by s into dir: F32 A and B for every attention and MLP
// projection, A shared by q/k/v and by gate/up (as an export from MCA has
// it) unless distinct is set.
func writePEFTFixture(t testing.TB, s synth, dir string, r int64, alpha float64, distinct bool) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var specs []safetensors.Spec
	data := map[string][]byte{}
	gen := func(key string, n int64) []byte {
		rng := rand.New(rand.NewPCG(uint64(len(key)), uint64(crc(key))))
		var b []byte
		for range n {
			b = appendFloat(b, tensor.F32, rng.NormFloat64()*0.05)
		}
		return b
	}
	mods := map[string]bool{}
	for _, sp := range s.tensors {
		m := peftTargetRE.FindStringSubmatch(sp.Name)
		if m == nil || len(sp.Shape) != 2 {
			continue
		}
		mods[m[2]] = true
		stem := m[1] + "." + m[2]
		group := m[2]
		if !distinct {
			switch group {
			case "q_proj", "k_proj", "v_proj":
				group = "qkv"
			case "gate_proj", "up_proj":
				group = "gateup"
			}
		}
		an, bn := exec.PEFTPrefix+stem+".lora_A.weight", exec.PEFTPrefix+stem+".lora_B.weight"
		specs = append(specs, safetensors.Spec{Name: an, DType: tensor.F32, Shape: tensor.Shape{r, sp.Shape[1]}},
			safetensors.Spec{Name: bn, DType: tensor.F32, Shape: tensor.Shape{sp.Shape[0], r}})
		data[an] = gen(m[1]+"/"+group+"/A", r*sp.Shape[1])
		data[bn] = gen(stem+"/B", r*sp.Shape[0])
	}
	writeSafetensors(t, filepath.Join(dir, exec.AdapterModelName), specs, func(n string) []byte { return data[n] })
	var tm []string
	for m := range mods {
		tm = append(tm, m)
	}
	cfg, _ := json.Marshal(map[string]any{"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": tm,
		"lora_dropout": 0.0, "bias": "none", "task_type": "CAUSAL_LM", "inference_mode": true})
	writeFile(t, filepath.Join(dir, exec.AdapterConfigName), cfg)
}

func crc(s string) uint32 {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// loraFixture writes a qwen2 HF base, a PEFT adapter for it and imports
// the adapter as ROLL's LoRA checkpoint SAVE/default at layout l.
func loraFixture(t *testing.T, l exec.Layout) (dir, hf, peft, save string) {
	t.Helper()
	dir = t.TempDir()
	hf, peft, save = filepath.Join(dir, "hf"), filepath.Join(dir, "peft"), filepath.Join(dir, "save")
	s := synthDeep("qwen2", tensor.BF16)
	s.write(t, hf, 1, 3)
	writePEFTFixture(t, s, peft, 8, 16, false)
	if err := os.MkdirAll(save, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.ImportPEFT(context.Background(), stdlibModel(t, "qwen2"), peft, hf, filepath.Join(save, "default"),
		exec.LoRAImportOptions{Options: exec.Options{Layout: l}}); err != nil {
		t.Fatal(err)
	}
	return dir, hf, peft, save
}

// TestImportPEFTBaseConfigOnce: with BaseConfig (the text the caller
// read for choosing the template) ImportPEFT does not read the base's
// config.json again, and gives the same adapter as reading it.
func TestImportPEFTBaseConfigOnce(t *testing.T) {
	dir := t.TempDir()
	hf, peft := filepath.Join(dir, "hf"), filepath.Join(dir, "peft")
	s := synthDeep("qwen2", tensor.BF16)
	s.write(t, hf, 1, 3)
	writePEFTFixture(t, s, peft, 8, 16, false)
	m := stdlibModel(t, "qwen2")
	ctx := context.Background()
	read := filepath.Join(dir, "read")
	if _, err := exec.ImportPEFT(ctx, m, peft, hf, read, exec.LoRAImportOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := exec.ReadCheckpointModel(hf, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hf, exec.HFConfigName), []byte(`{"broken": `), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.ImportPEFT(ctx, m, peft, hf, filepath.Join(dir, "reread"), exec.LoRAImportOptions{}); err == nil {
		t.Fatalf("ImportPEFT without BaseConfig: no error for a broken config.json")
	}
	given := filepath.Join(dir, "given")
	if _, err := exec.ImportPEFT(ctx, m, peft, hf, given, exec.LoRAImportOptions{BaseConfig: cm.HFConfig}); err != nil {
		t.Fatalf("ImportPEFT read config.json again: %v", err)
	}
	if diff := cmp.Diff(readTree(t, read), readTree(t, given)); diff != "" {
		t.Errorf("adapter with BaseConfig differs (-read +given):\n%s", diff)
	}
}

// TestLoRAPEFTRoundTrip: a PEFT adapter imported at TP2xPP2 and exported
// again gives the same adapter_model.safetensors tensors (names, dtypes,
// shapes, bytes).
func TestLoRAPEFTRoundTrip(t *testing.T) {
	dir, _, peft, save := loraFixture(t, exec.Layout{TP: 2, PP: 2})
	out := filepath.Join(dir, "out")
	if _, err := exec.ConvertLoRAToPEFT(context.Background(), stdlibModel(t, "qwen2"), save, out, exec.LoRAOptions{}); err != nil {
		t.Fatal(err)
	}
	a, b := readAllTensors(t, filepath.Join(peft, exec.AdapterModelName)), readAllTensors(t, filepath.Join(out, exec.AdapterModelName))
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("%d tensors vs %d", len(a), len(b))
	}
	for n, x := range a {
		if y, ok := b[n]; !ok || x != y {
			t.Errorf("%s differs after PEFT -> MCA -> PEFT", n)
		}
	}
}

func readAllTensors(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	for _, ti := range f.Tensors() {
		out[ti.Name] = ti.DType.String() + ti.Shape.String() + string(f.Data(ti))
	}
	return out
}

// TestLoRAFuse is acceptance 3's second half: a PEFT adapter with distinct
// A_q/A_k/A_v is refused by the exact import, naming the tensors; the
// expand import stacks them, and merging it gives the same bytes as
// merging the PEFT adapter's own q/k/v deltas (checked against the
// ordered-f64 formula computed here from the PEFT tensors).
func TestLoRAFuse(t *testing.T) {
	dir := t.TempDir()
	hf, peft := filepath.Join(dir, "hf"), filepath.Join(dir, "peft")
	s := synthDeep("qwen2", tensor.BF16)
	s.write(t, hf, 1, 5)
	rng := rand.New(rand.NewPCG(5, 6))
	writeShards(t, hf, s.tensors, 1, func(name string) []byte {
		for _, sp := range s.tensors {
			if sp.Name == name {
				var b []byte
				for range sp.Shape.NumElements() {
					b = appendFloat(b, sp.DType, rng.NormFloat64()*0.05)
				}
				return b
			}
		}
		return nil
	})
	writePEFTFixture(t, s, peft, 4, 8, true)
	m := stdlibModel(t, "qwen2")
	exact := filepath.Join(dir, "exact")
	_, err := exec.ImportPEFT(context.Background(), m, peft, hf, exact, exec.LoRAImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "lora-fuse-mismatch") || !strings.Contains(err.Error(), "_proj.lora_A.weight") {
		t.Fatalf("exact import: got %v, want lora-fuse-mismatch naming the A tensors", err)
	}
	if _, err := os.Stat(exact); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("refused import wrote %s", exact)
	}
	save := filepath.Join(dir, "save", "default")
	if err := os.MkdirAll(filepath.Dir(save), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.ImportPEFT(context.Background(), m, peft, hf, save, exec.LoRAImportOptions{Fuse: exec.LoRAFuseExpand,
		Options: exec.Options{Layout: exec.Layout{TP: 2}}}); err != nil {
		t.Fatal(err)
	}
	merged := filepath.Join(dir, "merged")
	if _, err := exec.MergeLoRAIntoHF(context.Background(), m, filepath.Dir(save), hf, merged, exec.LoRAOptions{}); err != nil {
		t.Fatal(err)
	}
	base := readTensorValues(t, filepath.Join(hf, safetensors.SingleFileName))
	ad := readTensorValues(t, filepath.Join(peft, exec.AdapterModelName))
	got := readTensorValues(t, filepath.Join(merged, safetensors.SingleFileName))
	n := 0
	for name, w := range base {
		stem := strings.TrimSuffix(name, ".weight")
		a, ok := ad[exec.PEFTPrefix+stem+".lora_A.weight"]
		want := w.raw
		if ok {
			want = refMerge(w, a, ad[exec.PEFTPrefix+stem+".lora_B.weight"], 8.0/4.0)
			n++
		}
		if got[name].raw != want {
			t.Errorf("%s: merged (expand import) differs from the ordered-f64 merge of the PEFT adapter", name)
		}
	}
	if n == 0 {
		t.Fatal("nothing merged")
	}
}

type tv struct {
	dt    tensor.DType
	shape tensor.Shape
	raw   string
}

func readTensorValues(t *testing.T, path string) map[string]tv {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]tv{}
	for _, ti := range f.Tensors() {
		out[ti.Name] = tv{ti.DType, ti.Shape, string(f.Data(ti))}
	}
	return out
}

// refMerge is the ordered-f64 formula of lora-fp8.md §1.5.6 on BF16 W
// and F32 A, B, written out independently of the runtime.
func refMerge(w, a, b tv, s float64) string {
	f32 := func(x tv, i int) float64 {
		return float64(math.Float32frombits(binary.LittleEndian.Uint32([]byte(x.raw[4*i : 4*i+4]))))
	}
	O, I, R := int(w.shape[0]), int(w.shape[1]), int(a.shape[0])
	out := make([]byte, 0, len(w.raw))
	for i := range O {
		for j := range I {
			var acc float64
			for k := range R {
				acc += f32(b, i*R+k) * f32(a, k*I+j)
			}
			wv := float64(tensor.BF16ToF32(uint16(w.raw[2*(i*I+j)]) | uint16(w.raw[2*(i*I+j)+1])<<8))
			h := tensor.F32ToBF16(float32(wv + acc*s))
			out = append(out, byte(h), byte(h>>8))
		}
	}
	return string(out)
}

// TestLoRAMalformed is acceptance 4: malformed adapters are refused
// naming the tensor (or rank file), and nothing is written.
func TestLoRAMalformed(t *testing.T) {
	m := stdlibModel(t, "qwen2")
	rank := func(save string, tp int) string {
		return filepath.Join(save, "default", "iter_0000001", "mp_rank_0"+string(rune('0'+tp)), exec.MCACheckpointPT)
	}
	for _, c := range []struct {
		name  string
		edit  func(t *testing.T, save string)
		wants []string
	}{
		{"A/B rank mismatch", func(t *testing.T, save string) {
			for tp := range 2 {
				editPT(t, rank(save, tp), func(d *torchsave.Dict) {
					setSpec(d, "decoder.layers.1.self_attention.linear_proj.lora_B.weight", func(s *torchsave.TensorSpec) {
						s.Shape = tensor.Shape{s.Shape[0], s.Shape[1] / 2}
					})
				})
			}
		}, []string{"decoder.layers.1.self_attention.linear_proj.lora_B.weight", "B [out, rank]"}},
		{"TP copies differ", func(t *testing.T, save string) {
			editPT(t, rank(save, 1), func(d *torchsave.Dict) {
				// a new spec gets zero bytes (editPT): this copy differs
				setSpec(d, "decoder.layers.0.self_attention.linear_qkv.lora_A.weight", func(*torchsave.TensorSpec) {})
			})
		}, []string{"decoder.layers.0.self_attention.linear_qkv.lora_A.weight", "differ"}},
		{"missing rank file", func(t *testing.T, save string) {
			if err := os.Remove(rank(save, 1)); err != nil {
				t.Fatal(err)
			}
		}, []string{"mp_rank_01", "missing"}},
		{"no rule", func(t *testing.T, save string) {
			p := filepath.Join(save, "default", exec.AdapterConfigName)
			b, _ := os.ReadFile(p)
			b = []byte(strings.Replace(string(b), `"linear_qkv"`, `"linear_qkv", "linear_qkv_bias_typo"`, 1))
			writeFile(t, p, b)
		}, []string{"linear_qkv_bias_typo"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, _, _, save := loraFixture(t, exec.Layout{TP: 2})
			c.edit(t, save)
			out := filepath.Join(dir, "out")
			_, err := exec.ConvertLoRAToPEFT(context.Background(), m, save, out, exec.LoRAOptions{})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("refused export wrote %s", out)
			}
		})
	}
}

// TestLoRAUnderivable: a LoRA target whose base op has no LoRA rule (a
// concat, an expert split) is refused as lora-underivable naming the op
// and its source line; ops with a rule derive A and B ops.
func TestLoRAUnderivable(t *testing.T) {
	m := allopsModel(t, "allops_next")
	var withRule, without int
	for _, lo := range exec.DeriveLoRAOps(m, func(string) int64 { return 4 }) {
		if lo.Err != nil {
			without++
			if !strings.Contains(lo.Err.Error(), "allops.rolltpl:") {
				t.Errorf("%s: error %v does not name the source line", lo.Module, lo.Err)
			}
			continue
		}
		withRule++
		if lo.A == nil || lo.B == nil || !strings.HasSuffix(lo.B.MCA[0].Resolve(nil), ".lora_B.weight") {
			t.Errorf("%s: bad derived ops %+v %+v", lo.Module, lo.A, lo.B)
		}
	}
	if withRule == 0 || without == 0 {
		t.Fatalf("%d ops with a rule, %d without", withRule, without)
	}
	ad := &exec.LoRAAdapter{Name: "default", ConfigPath: "adapter_config.json", R: 4, Alpha: 8, Targets: []string{"linear_fc2"}}
	_, err := exec.LoRAModel(m, ad)
	if err == nil || !strings.Contains(err.Error(), "lora-underivable") || !strings.Contains(err.Error(), "concat op") || !strings.Contains(err.Error(), "allops.rolltpl:49") {
		t.Fatalf("got %v, want lora-underivable naming the concat op at allops.rolltpl:49", err)
	}
}

// TestVerifyLoRA: an adapter round-trips through PEFT unchanged (TP2), and
// a rank file edited so that its round trip cannot restore it is reported.
func TestVerifyLoRA(t *testing.T) {
	_, _, _, save := loraFixture(t, exec.Layout{TP: 2})
	m := stdlibModel(t, "qwen2")
	rep, err := exec.VerifyLoRA(context.Background(), m, save, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Compared == 0 {
		t.Fatalf("round trip: %d compared, diffs %v", rep.Compared, rep.Diffs)
	}
	// An extra F32 tensor in one rank file, which no op claims, is a
	// plan error of the export, not a silent drop.
	p := filepath.Join(save, "default", "iter_0000001", "mp_rank_00", exec.MCACheckpointPT)
	editPT(t, p, func(d *torchsave.Dict) {
		d.Items = append(d.Items, torchsave.Item{Key: "decoder.layers.0.mlp.router.lora_A.weight", Value: &torchsave.TensorSpec{DType: tensor.F32, Shape: tensor.Shape{8, 128}}})
	})
	if _, err := exec.VerifyLoRA(context.Background(), m, save, "", t.TempDir()); err == nil || !strings.Contains(err.Error(), "router.lora_A.weight") {
		t.Fatalf("got %v, want an error naming the unclaimed tensor", err)
	}
}

// readDirTensors reads every tensor of the safetensors files in dir.
func readDirTensors(t *testing.T, dir string) map[string]tv {
	t.Helper()
	out := map[string]tv{}
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if strings.HasSuffix(e.Name(), ".safetensors") {
			for k, v := range readTensorValues(t, filepath.Join(dir, e.Name())) {
				out[k] = v
			}
		}
	}
	return out
}

// TestLoRAMergeMCA: the merged MCA output (from an HF base, and from an
// MCA base) converts back to exactly the merged HF output.
func TestLoRAMergeMCA(t *testing.T) {
	dir, hf, _, save := loraFixture(t, exec.Layout{TP: 2})
	m := stdlibModel(t, "qwen2")
	ctx := context.Background()
	mergedHF := filepath.Join(dir, "merged-hf")
	if _, err := exec.MergeLoRAIntoHF(ctx, m, save, hf, mergedHF, exec.LoRAOptions{}); err != nil {
		t.Fatal(err)
	}
	want := readDirTensors(t, mergedHF)
	baseMCA := filepath.Join(dir, "base-mca")
	if _, err := exec.ConvertHFToMCA(ctx, m, hf, baseMCA, exec.Options{Layout: exec.Layout{PP: 2}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, base string }{{"hf base", hf}, {"mca base", baseMCA}} {
		out := filepath.Join(dir, c.name, "mca")
		os.MkdirAll(filepath.Dir(out), 0o755)
		res, err := exec.MergeLoRA(ctx, m, save, c.base, out, true, exec.LoRAOptions{Options: exec.Options{Layout: exec.Layout{TP: 2, PP: 2}}})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(res.Merged) == 0 {
			t.Fatalf("%s: nothing merged", c.name)
		}
		back := filepath.Join(dir, c.name, "back")
		if _, err := exec.ConvertMCAToHF(ctx, m, out, back, exec.Options{}); err != nil {
			t.Fatal(err)
		}
		got := readDirTensors(t, back)
		if len(got) != len(want) {
			t.Fatalf("%s: %d tensors, want %d", c.name, len(got), len(want))
		}
		for n, w := range want {
			if got[n].raw != w.raw {
				t.Errorf("%s: %s differs from the merged HF output", c.name, n)
			}
		}
	}
}

// TestLoRAExportDType: --lora-dtype bf16 rounds the F32 adapter tensors to
// nearest even, keep and f32 leave them as they are, and a bad value is
// refused before anything is written.
func TestLoRAExportDType(t *testing.T) {
	dir, _, _, save := loraFixture(t, exec.Layout{})
	m := stdlibModel(t, "qwen2")
	ctx := context.Background()
	f32 := filepath.Join(dir, "f32")
	if _, err := exec.ConvertLoRAToPEFT(ctx, m, save, f32, exec.LoRAOptions{DType: "keep"}); err != nil {
		t.Fatal(err)
	}
	bf := filepath.Join(dir, "bf16")
	if _, err := exec.ConvertLoRAToPEFT(ctx, m, save, bf, exec.LoRAOptions{DType: "bf16"}); err != nil {
		t.Fatal(err)
	}
	a := readTensorValues(t, filepath.Join(f32, exec.AdapterModelName))
	b := readTensorValues(t, filepath.Join(bf, exec.AdapterModelName))
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("%d vs %d tensors", len(a), len(b))
	}
	for n, x := range a {
		y := b[n]
		if x.dt != tensor.F32 || y.dt != tensor.BF16 || !x.shape.Equal(y.shape) {
			t.Fatalf("%s: %v %v -> %v %v", n, x.dt, x.shape, y.dt, y.shape)
		}
		for i := 0; i < len(x.raw)/4; i++ {
			f := math.Float32frombits(binary.LittleEndian.Uint32([]byte(x.raw[4*i : 4*i+4])))
			h := binary.LittleEndian.Uint16([]byte(y.raw[2*i : 2*i+2]))
			if want := tensor.F32ToBF16(f); h != want {
				t.Fatalf("%s[%d]: %#04x, want %#04x", n, i, h, want)
			}
		}
	}
	bad := filepath.Join(dir, "bad")
	if _, err := exec.ConvertLoRAToPEFT(ctx, m, save, bad, exec.LoRAOptions{DType: "f8"}); err == nil || !strings.Contains(err.Error(), "lora-dtype") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(bad); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a refused export wrote its destination")
	}
}
