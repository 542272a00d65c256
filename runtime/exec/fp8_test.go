package exec_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rolltpl/rolltpl/compiler/ir"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// fp8Fixture is a synthetic FP8 block-quantized checkpoint written byte by
// byte, and its dequantization computed element by element here (the
// oracle the runtime's output must equal).
type fp8Fixture struct {
	dir, ref  string
	quantized []string // weights that are F8_E4M3
	scaleDT   tensor.DType
	block     [2]int64
}

// plantedCodes are E4M3 codes every quantized weight starts with: ±0, ±the
// smallest subnormal, ±448.
var plantedCodes = []byte{0x00, 0x80, 0x01, 0x81, 0x7E, 0xFE}

// quantizable reports whether a synthetic tensor is one an FP8 release
// quantizes: the 2-D (or expert-stacked 3-D) projections, not embeddings,
// lm_head, norms or the router.
func quantizable(sp safetensors.Spec) bool {
	return len(sp.Shape) >= 2 && (strings.HasSuffix(sp.Name, "_proj.weight") || strings.HasSuffix(sp.Name, "rotary_emb.inv_freq"))
}

// writeFP8 writes s as an FP8 checkpoint into dir (shards files) with
// scales of dtype scaleDT and the given block, and the oracle BF16
// checkpoint into ref. extra tensors are added unquantized (an F32 bias).
func writeFP8(t *testing.T, s synth, dir, ref string, scaleDT tensor.DType, block [2]int64, shards int, seed uint64) fp8Fixture {
	t.Helper()
	return writeFP8Mut(t, s, dir, ref, scaleDT, block, shards, seed, nil)
}

// fp8Mutation changes an FP8 fixture before it is written: its tensor
// list, data and config.json.
type fp8Mutation func(specs []safetensors.Spec, data map[string][]byte, cfg map[string]any) []safetensors.Spec

// writeFP8Mut is writeFP8 with the FP8 checkpoint changed by mut.
func writeFP8Mut(t *testing.T, s synth, dir, ref string, scaleDT tensor.DType, block [2]int64, shards int, seed uint64, mut fp8Mutation) fp8Fixture {
	t.Helper()
	fx := fp8Fixture{dir: dir, ref: ref, scaleDT: scaleDT, block: block}
	rng := rand.New(rand.NewPCG(seed, 11))
	data := map[string][]byte{}
	refData := map[string][]byte{}
	var specs, refSpecs []safetensors.Spec
	for _, sp := range s.tensors {
		n := sp.Shape.NumElements()
		if !quantizable(sp) {
			b := make([]byte, n*int64(sp.DType.Size()))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			data[sp.Name], refData[sp.Name] = b, b
			specs, refSpecs = append(specs, sp), append(refSpecs, sp)
			continue
		}
		fx.quantized = append(fx.quantized, sp.Name)
		codes := make([]byte, n)
		for i := range codes {
			if i < len(plantedCodes) {
				codes[i] = plantedCodes[i]
				continue
			}
			for codes[i] = byte(rng.Uint32()); codes[i]&0x7F == 0x7F; codes[i] = byte(rng.Uint32()) {
			}
		}
		d := len(sp.Shape)
		M, N := sp.Shape[d-2], sp.Shape[d-1]
		gm, gn := (M+block[0]-1)/block[0], (N+block[1]-1)/block[1]
		grid := append(slices.Clone(sp.Shape[:d-2]), gm, gn)
		scales := make([]float32, grid.NumElements())
		var sb []byte
		for k := range scales {
			v := float32(math.Ldexp(1+rng.Float64(), -2-rng.IntN(19))) // [2^-20, 2^-2]
			switch scaleDT {
			case tensor.BF16:
				h := tensor.F32ToBF16(v)
				v = tensor.BF16ToF32(h)
				sb = binary.LittleEndian.AppendUint16(sb, h)
			case tensor.F16:
				h := tensor.F32ToF16(v)
				v = tensor.F16ToF32(h)
				sb = binary.LittleEndian.AppendUint16(sb, h)
			default:
				sb = binary.LittleEndian.AppendUint32(sb, math.Float32bits(v))
			}
			scales[k] = v
		}
		out := make([]byte, 0, 2*n)
		for e := int64(0); e < n; e++ {
			lead, i, j := e/(M*N), (e/N)%M, e%N
			s := scales[lead*gm*gn+(i/block[0])*gn+j/block[1]]
			out = binary.LittleEndian.AppendUint16(out, tensor.F32ToBF16(tensor.E4M3ToF32(codes[e])*s))
		}
		data[sp.Name] = codes
		data[sp.Name+"_scale_inv"] = sb
		refData[sp.Name] = out
		specs = append(specs, safetensors.Spec{Name: sp.Name, DType: tensor.F8E4M3, Shape: sp.Shape},
			safetensors.Spec{Name: sp.Name + "_scale_inv", DType: scaleDT, Shape: grid})
		refSpecs = append(refSpecs, sp)
	}
	for _, d := range []string{dir, ref} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(d, "tokenizer_config.json"), []byte(`{"model_max_length": 4096}`))
		writeFile(t, filepath.Join(d, "modeling_x.py"), []byte("# remote code\n"))
	}
	cfg, _ := json.MarshalIndent(s.config, "", "  ")
	writeFile(t, filepath.Join(ref, "config.json"), cfg)
	qc := map[string]any{"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": block[:]}
	c := map[string]any{}
	for k, v := range s.config {
		c[k] = v
	}
	c["quantization_config"] = qc
	if mut != nil {
		specs = mut(specs, data, c)
	}
	cfg, _ = json.MarshalIndent(c, "", "  ")
	writeFile(t, filepath.Join(dir, "config.json"), cfg)
	writeShards(t, dir, specs, shards, func(name string) []byte { return data[name] })
	writeShards(t, ref, refSpecs, shards, func(name string) []byte { return refData[name] })
	return fx
}

// fp8Synth is the synthetic checkpoint of a model type with two KV
// heads, so that it splits at TP2.
func fp8Synth(model string) synth {
	return synthWith(model, tensor.BF16, func(d *dims, cfg map[string]any) { d.kv = 2 })
}

// fp8RankFiles returns the model_optim_rng.pt files under dir by relative path.
func fp8RankFiles(t *testing.T, dir string) map[string][]byte {
	return readFiles(t, dir, func(name string) bool { return name == exec.MCACheckpointPT })
}

func sameRankFiles(t *testing.T, what, a, b string) {
	t.Helper()
	fa, fb := fp8RankFiles(t, a), fp8RankFiles(t, b)
	if len(fa) == 0 || len(fa) != len(fb) {
		t.Fatalf("%s: %d rank files vs %d", what, len(fa), len(fb))
	}
	for k, v := range fa {
		if !bytes.Equal(v, fb[k]) {
			i := 0
			for i < len(v) && i < len(fb[k]) && v[i] == fb[k][i] {
				i++
			}
			t.Errorf("%s: %s differs from the dequantize-then-convert one at byte %d of %d/%d: %q", what, k, i, len(v), len(fb[k]), v[max(0, i-40):min(len(v), i+40)])
		}
	}
}

// TestFP8ConvertEqualsDequantizeThenConvert: converting an FP8 checkpoint
// to MCA in one pass gives the rank files of converting the oracle's BF16
// checkpoint, at TP1, TP2 and TP2+EP2, with F32, BF16 and F16 scales and
// blocks that leave partial edge blocks; the plan announces the pass; the
// MCA side has no quantization_config and holds the sidecar.
func TestFP8ConvertEqualsDequantizeThenConvert(t *testing.T) {
	cases := []struct {
		model   string
		scaleDT tensor.DType
		block   [2]int64
		layouts []exec.Layout
	}{
		{"qwen3", tensor.F32, [2]int64{128, 128}, []exec.Layout{{}, {TP: 2}}},
		{"qwen3", tensor.BF16, [2]int64{48, 40}, []exec.Layout{{}, {TP: 2}}},
		{"llama", tensor.F16, [2]int64{32, 24}, []exec.Layout{{TP: 2}}},
		{"qwen3_moe", tensor.F32, [2]int64{24, 40}, []exec.Layout{{}, {TP: 2, EP: 2}, {TP: 2, EP: 2, MoEGroupedGEMM: true, LegacyGroupedGEMM: true}}},
	}
	// Every FP8 weight is decoded as it is written, each rank file its
	// part, never whole, except where the sharder transposes (legacy
	// grouped GEMM experts).
	var mu sync.Mutex
	var streamed, whole int64
	exec.SetFP8DecodeHook(func(_ string, n int64, w bool) {
		mu.Lock()
		defer mu.Unlock()
		if w {
			whole += n
		} else {
			streamed += n
		}
	})
	defer exec.SetFP8DecodeHook(nil)
	m := map[string]*exec.Model{}
	for _, c := range cases {
		t.Run(c.model+"-"+c.scaleDT.String(), func(t *testing.T) {
			if m[c.model] == nil {
				m[c.model] = stdlibModel(t, c.model)
			}
			tmp := t.TempDir()
			fx := writeFP8(t, fp8Synth(c.model), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), c.scaleDT, c.block, 2, 5)
			// Dequantize, then convert: the reference of the one pass.
			deq := filepath.Join(tmp, "deq")
			if _, err := exec.DequantizeHF(context.Background(), fx.dir, deq, exec.DequantizeOptions{Scales: stdlibScales(t)}); err != nil {
				t.Fatal(err)
			}
			sameTensors(t, fx.ref, deq)
			for li, l := range c.layouts {
				a, b := filepath.Join(tmp, "a", string(rune('0'+li))), filepath.Join(tmp, "b", string(rune('0'+li)))
				streamed, whole = 0, 0
				ra, err := exec.ConvertHFToMCA(context.Background(), m[c.model], fx.dir, a, exec.Options{Layout: l})
				if err != nil {
					t.Fatal(err)
				}
				switch out := ra.Plan.FP8.OutBytes; {
				case l.LegacyGroupedGEMM && whole == 0:
					t.Errorf("%+v: no weight decoded whole for the transposed experts", l)
				case !l.LegacyGroupedGEMM && whole != 0:
					t.Errorf("%+v: %d bytes decoded whole, want none", l, whole)
				case l.TP <= 1 && l.EP <= 1 && streamed != out:
					t.Errorf("%+v: %d bytes decoded as written, want the %d of the FP8 weights", l, streamed, out)
				case streamed+whole < out:
					t.Errorf("%+v: %d+%d bytes decoded, less than the %d of the FP8 weights", l, streamed, whole, out)
				}
				if _, err := exec.ConvertHFToMCA(context.Background(), m[c.model], deq, b, exec.Options{Layout: l}); err != nil {
					t.Fatal(err)
				}
				sameRankFiles(t, c.model, a, b)
				f := ra.Plan.FP8
				if f == nil || f.Weights != len(fx.quantized) || f.Scales != len(fx.quantized) || f.DType != tensor.BF16 {
					t.Fatalf("plan FP8 info %+v, want %d weights", f, len(fx.quantized))
				}
				if !strings.Contains(f.Summary(), "FP8 block-quantized") {
					t.Errorf("summary %q", f.Summary())
				}
				var sum strings.Builder
				ra.Plan.WriteSummary(&sum)
				if !strings.Contains(sum.String(), f.Summary()) {
					t.Errorf("the plan summary does not announce the FP8 pass:\n%s", sum.String())
				}
				mc, err := os.ReadFile(filepath.Join(a, exec.MCAConfigName))
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(mc, []byte("quantization_config")) {
					t.Errorf("mca_config.json still records quantization_config")
				}
				side, err := os.ReadFile(filepath.Join(a, exec.FP8SidecarName))
				if err != nil {
					t.Fatal(err)
				}
				for _, q := range fx.quantized {
					if !bytes.Contains(side, []byte(`"`+q+`"`)) {
						t.Errorf("sidecar does not name %s", q)
					}
				}
				if _, err := os.Stat(filepath.Join(a, exec.FP8ScalesName)); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestFP8DequantizeCommand: DequantizeHF writes the oracle's tensors,
// the same shard names, the index without scales and config.json without
// quantization_config, and copies the tokenizer and remote code.
func TestFP8DequantizeCommand(t *testing.T) {
	for _, shards := range []int{1, 3} {
		tmp := t.TempDir()
		fx := writeFP8(t, synthFor("qwen3_moe", tensor.BF16), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.BF16, [2]int64{128, 128}, shards, 9)
		out := filepath.Join(tmp, "out")
		res, err := exec.DequantizeHF(context.Background(), fx.dir, out, exec.DequantizeOptions{Scales: stdlibScales(t)})
		if err != nil {
			t.Fatal(err)
		}
		if res.FP8.Weights != len(fx.quantized) {
			t.Errorf("%d weights dequantized, want %d", res.FP8.Weights, len(fx.quantized))
		}
		sameTensors(t, fx.ref, out)
		srcFiles, _ := filepath.Glob(filepath.Join(fx.dir, "*.safetensors"))
		outFiles, _ := filepath.Glob(filepath.Join(out, "*.safetensors"))
		for i := range srcFiles {
			srcFiles[i] = filepath.Base(srcFiles[i])
		}
		for i := range outFiles {
			outFiles[i] = filepath.Base(outFiles[i])
		}
		if d := cmp.Diff(srcFiles, outFiles); d != "" {
			t.Errorf("shard names differ:\n%s", d)
		}
		if shards > 1 {
			ix, err := safetensors.ReadIndex(filepath.Join(out, safetensors.IndexFileName))
			if err != nil {
				t.Fatal(err)
			}
			for name := range ix.WeightMap {
				if strings.HasSuffix(name, "_scale_inv") {
					t.Errorf("index still maps %s", name)
				}
			}
			rix, _ := safetensors.ReadIndex(filepath.Join(fx.ref, safetensors.IndexFileName))
			if ix.TotalSize != rix.TotalSize || len(ix.WeightMap) != len(rix.WeightMap) {
				t.Errorf("index total_size %d with %d names, want %d with %d", ix.TotalSize, len(ix.WeightMap), rix.TotalSize, len(rix.WeightMap))
			}
		}
		var got, want map[string]any
		b, _ := os.ReadFile(filepath.Join(out, "config.json"))
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		b, _ = os.ReadFile(filepath.Join(fx.ref, "config.json"))
		json.Unmarshal(b, &want)
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("config.json (-want +got):\n%s", d)
		}
		for _, f := range []string{"tokenizer_config.json", "modeling_x.py"} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Errorf("not copied: %v", err)
			}
		}
	}
}

// sameTensors compares the tensors of two HF checkpoints by name: the same
// names, dtypes, shapes and bytes.
func sameTensors(t *testing.T, want, got string) {
	t.Helper()
	a, err := safetensors.OpenSharded(want)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := safetensors.OpenSharded(got)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(a.Tensors()) != len(b.Tensors()) {
		t.Errorf("%d tensors, want %d", len(b.Tensors()), len(a.Tensors()))
	}
	for _, ta := range a.Tensors() {
		tb, ok := b.Lookup(ta.Name)
		if !ok {
			t.Errorf("%s: missing", ta.Name)
			continue
		}
		if ta.DType != tb.DType || !ta.Shape.Equal(tb.Shape) || !bytes.Equal(ta.File.Data(ta.TensorInfo), tb.File.Data(tb.TensorInfo)) {
			t.Errorf("%s: %v%v differs from the oracle %v%v", ta.Name, tb.DType, tb.Shape, ta.DType, ta.Shape)
		}
	}
}

// TestFP8Verify: verify round-trips FP8 checkpoints byte for byte, scales
// included, directly and through TP2; MCA -> HF --quantize fp8 writes the
// original checkpoint's tensors and config back.
func TestFP8Verify(t *testing.T) {
	tmp := t.TempDir()
	m := stdlibModel(t, "qwen3")
	for i, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
		fx := writeFP8(t, synthFor("qwen3", tensor.BF16), filepath.Join(tmp, dt.String()), filepath.Join(tmp, dt.String()+"-ref"), dt, [2]int64{48, 40}, 2, uint64(i))
		for _, l := range []exec.Layout{{}, {TP: 2}} {
			rep, err := exec.Verify(context.Background(), m, fx.dir, exec.VerifyOptions{TempDir: tmp, Layout: l})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				t.Fatalf("%v %+v: %+v", dt, l, rep.Diffs)
			}
			orig, _ := safetensors.OpenSharded(fx.dir)
			if rep.Compared != len(orig.Tensors()) {
				t.Errorf("%d tensors compared, the checkpoint has %d (scales must be compared too)", rep.Compared, len(orig.Tensors()))
			}
			orig.Close()
			if slices.ContainsFunc(rep.ConfigDiffs, func(s string) bool { return strings.HasPrefix(s, "quantization_config") }) {
				t.Errorf("config diffs %v", rep.ConfigDiffs)
			}
		}
		mca, back := filepath.Join(tmp, "mca"+dt.String()), filepath.Join(tmp, "back"+dt.String())
		if _, err := exec.ConvertHFToMCA(context.Background(), m, fx.dir, mca, exec.Options{}); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{Quantize: &exec.QuantizeOptions{}}); err != nil {
			t.Fatal(err)
		}
		sameTensors(t, fx.dir, back)
		b, _ := os.ReadFile(filepath.Join(back, "config.json"))
		if !bytes.Contains(b, []byte(`"quant_method": "fp8"`)) {
			t.Errorf("config.json lacks quantization_config:\n%s", b)
		}
		if _, err := os.Stat(filepath.Join(back, exec.FP8SidecarName)); err == nil {
			t.Errorf("the sidecar was copied to the HF output")
		}
		// Without --quantize: a plain BF16 checkpoint, the oracle's.
		plain := filepath.Join(tmp, "plain"+dt.String())
		if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, plain, exec.Options{}); err != nil {
			t.Fatal(err)
		}
		sameTensors(t, fx.ref, plain)
		if b, _ := os.ReadFile(filepath.Join(plain, "config.json")); bytes.Contains(b, []byte("quantization_config")) {
			t.Errorf("a BF16 output claims to be FP8")
		}
	}
}

// TestFP8Jobs: a conversion split over rank jobs and a finalize job gives
// the single job's files, sidecar included.
func TestFP8Jobs(t *testing.T) {
	tmp := t.TempDir()
	m := stdlibModel(t, "qwen3_moe")
	fx := writeFP8(t, fp8Synth("qwen3_moe"), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.F32, [2]int64{24, 40}, 2, 3)
	l := exec.Layout{TP: 2, EP: 2}
	one, jobs := filepath.Join(tmp, "one"), filepath.Join(tmp, "jobs")
	if _, err := exec.ConvertHFToMCA(context.Background(), m, fx.dir, one, exec.Options{Layout: l}); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][]int{{0, 1}, {2, 3}} {
		if _, err := exec.ConvertHFToMCA(context.Background(), m, fx.dir, jobs, exec.Options{Layout: l, Ranks: r}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := exec.ConvertHFToMCA(context.Background(), m, fx.dir, jobs, exec.Options{Layout: l, Finalize: true}); err != nil {
		t.Fatal(err)
	}
	sameRankFiles(t, "jobs", jobs, one)
	for _, f := range []string{exec.FP8SidecarName, exec.FP8ScalesName} {
		a, err1 := os.ReadFile(filepath.Join(one, f))
		b, err2 := os.ReadFile(filepath.Join(jobs, f))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: differs between the single job and the jobs (%v, %v)", f, err1, err2)
		}
	}
}

// TestFP8Refusals: every structural defect refuses the conversion and the
// dequantize command before anything is written, with a message naming the
// tensor; defects found in the data abort them leaving nothing behind.
func TestFP8Refusals(t *testing.T) {
	t.Parallel()
	const w = "model.layers.0.mlp.down_proj.weight"
	const sc = w + "_scale_inv"
	without := func(specs []safetensors.Spec, name string) []safetensors.Spec {
		return slices.DeleteFunc(specs, func(sp safetensors.Spec) bool { return sp.Name == name })
	}
	retype := func(specs []safetensors.Spec, name string, dt tensor.DType, shape tensor.Shape) []safetensors.Spec {
		for i := range specs {
			if specs[i].Name == name {
				specs[i].DType = dt
				if shape != nil {
					specs[i].Shape = shape
				}
			}
		}
		return specs
	}
	cases := []struct {
		name string
		mut  fp8Mutation
		want []string // in the error
	}{
		{"scale missing", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			return without(specs, sc)
		}, []string{"fp8-scale-missing", w, "has no scale"}},
		{"orphan scale", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			d["model.norm.weight_scale_inv"] = make([]byte, 4)
			return append(specs, safetensors.Spec{Name: "model.norm.weight_scale_inv", DType: tensor.F32, Shape: tensor.Shape{1}})
		}, []string{"fp8-scale-orphan", "model.norm.weight_scale_inv", "not F8_E4M3"}},
		{"orphan scale without weight", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			d["model.layers.0.mlp.nothing.weight_scale_inv"] = make([]byte, 4)
			return append(specs, safetensors.Spec{Name: "model.layers.0.mlp.nothing.weight_scale_inv", DType: tensor.F32, Shape: tensor.Shape{1}})
		}, []string{"fp8-scale-orphan", "no weight"}},
		{"grid shape", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			for _, sp := range specs {
				if sp.Name == sc {
					d[sc] = append(d[sc], d[sc]...)
					return retype(specs, sc, tensor.F32, append(tensor.Shape{2}, sp.Shape...))
				}
			}
			return specs
		}, []string{"fp8-scale-shape", sc, "needs the grid"}},
		{"scale dtype", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			d[sc] = append(d[sc], d[sc]...)
			return retype(specs, sc, tensor.F64, nil)
		}, []string{"fp8-scale-dtype", sc, "is F64"}},
		{"e5m2", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			return retype(specs, w, tensor.F8E5M2, nil)
		}, []string{"fp8-not-block", w, "F8_E5M2"}},
		{"no quantization_config", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			delete(c, "quantization_config")
			return specs
		}, []string{"fp8-config", "no quantization_config"}},
		{"other method", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			c["quantization_config"] = map[string]any{"quant_method": "compressed-tensors"}
			return specs
		}, []string{"fp8-not-block", `"compressed-tensors"`}},
		{"per-tensor scale", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			d["model.layers.0.mlp.up_proj.weight_scale"] = make([]byte, 4)
			return append(specs, safetensors.Spec{Name: "model.layers.0.mlp.up_proj.weight_scale", DType: tensor.F32, Shape: tensor.Shape{}})
		}, []string{"fp8-not-block", "model.layers.0.mlp.up_proj.weight_scale"}},
		{"block size", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			c["quantization_config"].(map[string]any)["weight_block_size"] = []int{128}
			return specs
		}, []string{"weight_block_size", "not a list of two integers"}},
		{"nan code", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			d[w][len(d[w])-1] = 0xFF
			return specs
		}, []string{"fp8-nan", w, "NaN code 0xFF"}},
		{"zero scale", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			copy(d[sc], []byte{0, 0, 0, 0})
			return specs
		}, []string{sc, "scale 0", "not a finite positive number", "nothing was written"}},
		{"inf scale", func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			binary.LittleEndian.PutUint32(d[sc][4:], math.Float32bits(float32(math.Inf(1))))
			return specs
		}, []string{sc, "+Inf", "not a finite positive number"}},
	}
	m := stdlibModel(t, "qwen3")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			fx := writeFP8Mut(t, fp8Synth("qwen3"), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.F32, [2]int64{128, 128}, 1, 4, c.mut)
			check := func(what string, err error, dst string) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s: no error", what)
				}
				text := err.Error()
				var pe *exec.PlanError
				if errors.As(err, &pe) {
					for _, p := range pe.Problems {
						text += " [" + string(p.Kind) + "]"
						if !strings.HasPrefix(string(p.Kind), "fp8-") {
							t.Errorf("%s: a problem other than FP8's: %v", what, p.Error())
						}
					}
				}
				for _, s := range c.want {
					if !strings.Contains(text, s) {
						t.Errorf("%s: error %q lacks %q", what, err, s)
					}
				}
				if _, serr := os.Stat(dst); serr == nil {
					t.Errorf("%s: %s was written", what, dst)
				}
				if left, _ := filepath.Glob(filepath.Join(tmp, ".*")); len(left) > 0 {
					t.Errorf("%s: temporaries left: %v", what, left)
				}
			}
			for _, l := range []exec.Layout{{}, {TP: 2}} {
				dst := filepath.Join(tmp, "mca")
				_, err := exec.ConvertHFToMCA(context.Background(), m, fx.dir, dst, exec.Options{Layout: l})
				check("convert", err, dst)
			}
			dst := filepath.Join(tmp, "jobs")
			_, err := exec.ConvertHFToMCA(context.Background(), m, fx.dir, dst, exec.Options{Layout: exec.Layout{TP: 2}, Ranks: []int{0}})
			if err == nil {
				t.Fatalf("rank job: no error")
			}
			if c.name == "nan code" { // rank 0's part has none: the job reads all codes first
				check("rank job", err, dst)
			} else if _, serr := os.Stat(dst); serr == nil { // found before writing
				t.Errorf("rank job: %s was written", dst)
			}
			if c.name == "per-tensor scale" || c.name == "orphan scale without weight" {
				return // the dequantize command refuses them too, tested above by the plan
			}
			dst = filepath.Join(tmp, "bf16")
			_, err = exec.DequantizeHF(context.Background(), fx.dir, dst, exec.DequantizeOptions{Scales: stdlibScales(t)})
			check("dequantize", err, dst)
		})
	}
	// --dequantize refuse.
	tmp := t.TempDir()
	fx := writeFP8(t, fp8Synth("qwen3"), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.F32, [2]int64{128, 128}, 1, 4)
	_, err := exec.ConvertHFToMCA(context.Background(), m, fx.dir, filepath.Join(tmp, "mca"), exec.Options{Dequantize: exec.DequantRefuse})
	if err == nil || !strings.Contains(err.Error(), "--dequantize refuse") {
		t.Errorf("refuse: %v", err)
	}
	// MCA -> HF --quantize without a sidecar.
	plain := filepath.Join(tmp, "plain-mca")
	if _, err := exec.ConvertHFToMCA(context.Background(), m, fx.ref, plain, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	_, err = exec.ConvertMCAToHF(context.Background(), m, plain, filepath.Join(tmp, "hf"), exec.Options{Quantize: &exec.QuantizeOptions{}})
	if err == nil || !strings.Contains(err.Error(), "no "+exec.FP8SidecarName) {
		t.Errorf("quantize without sidecar: %v", err)
	}
	if _, serr := os.Stat(filepath.Join(tmp, "hf")); serr == nil {
		t.Errorf("quantize without sidecar wrote its output")
	}
}

// TestFP8NotConvertedCrossCheck: a quantized weight that
// modules_to_not_convert lists is dequantized all the same, with a
// warning naming it.
func TestFP8NotConvertedCrossCheck(t *testing.T) {
	tmp := t.TempDir()
	const w = "model.layers.1.self_attn.o_proj.weight"
	fx := writeFP8Mut(t, fp8Synth("qwen3"), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.F32, [2]int64{128, 128}, 1, 6,
		func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			c["quantization_config"].(map[string]any)["modules_to_not_convert"] = []string{"lm_head", "layers.1.self_attn.o_proj"}
			return specs
		})
	res, err := exec.ConvertHFToMCA(context.Background(), stdlibModel(t, "qwen3"), fx.dir, filepath.Join(tmp, "mca"), exec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var warned []string
	for _, p := range res.Plan.Problems {
		if p.Severity == exec.Warning && p.Kind == "fp8-config" {
			warned = append(warned, p.Tensors[0].Name)
		}
	}
	if d := cmp.Diff([]string{w}, warned); d != "" {
		t.Errorf("warnings (-want +got):\n%s", d)
	}
}

// TestFP8IgnoredWeight: an FP8 weight the template ignores (llama's
// rotary inv_freq, here stored 2-D and quantized) is not recorded in the
// sidecar, so --quantize fp8 restores the others, and verify skips it and
// its scale.
func TestFP8IgnoredWeight(t *testing.T) {
	tmp := t.TempDir()
	s := fp8Synth("llama")
	for i, sp := range s.tensors {
		if strings.HasSuffix(sp.Name, "rotary_emb.inv_freq") {
			s.tensors[i].Shape, s.tensors[i].DType = tensor.Shape{1, sp.Shape[0]}, tensor.BF16
		}
	}
	m := stdlibModel(t, "llama")
	// The llama template's rules name no scale for inv_freq: a rule of
	// its own pairs it (a model of this test only).
	tt := *m.Template
	tt.Scales = append(slices.Clone(tt.Scales), ir.ScaleRule{Weight: "{}.inv_freq", Scale: "{}.inv_freq_scale_inv"})
	m.Template = &tt
	fx := writeFP8(t, s, filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.BF16, [2]int64{128, 128}, 1, 12)
	mca := filepath.Join(tmp, "mca")
	res, err := exec.ConvertHFToMCA(context.Background(), m, fx.dir, mca, exec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ignored := 0
	for _, i := range res.Plan.Ignored {
		if strings.HasSuffix(res.Plan.Inputs[i].Name, "inv_freq") {
			ignored++
		}
	}
	if ignored == 0 {
		t.Fatal("the llama template does not ignore the inv_freq tensors")
	}
	side, _ := os.ReadFile(filepath.Join(mca, exec.FP8SidecarName))
	if bytes.Contains(side, []byte("inv_freq")) {
		t.Errorf("the sidecar records an ignored weight")
	}
	if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, filepath.Join(tmp, "back"), exec.Options{Quantize: &exec.QuantizeOptions{}}); err != nil {
		t.Fatal(err)
	}
	rep, err := exec.Verify(context.Background(), m, fx.dir, exec.VerifyOptions{TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("verify: %+v", rep.Diffs)
	}
	if !slices.ContainsFunc(rep.Skipped, func(s string) bool { return strings.HasSuffix(s, "inv_freq_scale_inv") }) {
		t.Errorf("skipped %v lacks the ignored weight's scale", rep.Skipped)
	}
}

// TestFP8TinyScales: scales below 2^-117 are converted (the products are
// exact float32 subnormals, rounded to BF16 as torch does) with a warning.
func TestFP8TinyScales(t *testing.T) {
	tmp := t.TempDir()
	const sc = "model.layers.0.mlp.down_proj.weight_scale_inv"
	fx := writeFP8Mut(t, fp8Synth("qwen3"), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.F32, [2]int64{128, 128}, 1, 7,
		func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			binary.LittleEndian.PutUint32(d[sc], math.Float32bits(0x1p-120))
			return specs
		})
	res, err := exec.ConvertHFToMCA(context.Background(), stdlibModel(t, "qwen3"), fx.dir, filepath.Join(tmp, "mca"), exec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range res.Plan.Problems {
		found = found || p.Severity == exec.Warning && strings.Contains(p.Msg, "1 scale below 2^-117") && p.Tensors[0].Name == sc
	}
	if !found {
		t.Errorf("no warning about the tiny scale: %v", res.Plan.Problems)
	}
}
