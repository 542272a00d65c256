package exec_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/fp8"
	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/stdlib"
)

// stdlibScales are the stdlib's default scale naming rules (quant
// fp8_block of stdlib/templates/common.rolltpl), what `rolltplc
// dequantize` uses for a checkpoint whose model type has no template.
func stdlibScales(t testing.TB) []ir.ScaleRule {
	t.Helper()
	n := stdlibProgram(t).DefaultScales
	if len(n) == 0 {
		t.Fatal("the stdlib has no default quant section")
	}
	return n
}

// userModel compiles a user's copy of the stdlib template of modelType,
// written to dir with quant (a template item, "" for none) added right
// after its opening line; its imports resolve to the stdlib as a user
// file's do.
func userModel(t *testing.T, dir, modelType, quant string) *exec.Model {
	t.Helper()
	src, err := fs.ReadFile(stdlib.Templates(), modelType+".rolltpl")
	if err != nil {
		t.Fatal(err)
	}
	open := "template " + modelType + " {\n"
	if !strings.Contains(string(src), open) {
		t.Fatalf("no %q in the stdlib template", open)
	}
	text := strings.Replace(string(src), open, open+"    "+quant+"\n", 1)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, modelType+".rolltpl")
	writeFile(t, path, []byte(text))
	res := compiler.Compile([]string{path}, compiler.Options{Lib: stdlib.Templates()})
	if res.Diags.HasErrors() {
		t.Fatal(res.Diags)
	}
	m, err := exec.NewModel(res.Program, modelType, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// renameScales is an fp8Mutation that renames every "X.weight_scale_inv"
// of the checkpoint to "X.wscale_inv".
func renameScales(specs []safetensors.Spec, data map[string][]byte, _ map[string]any) []safetensors.Spec {
	for i, sp := range specs {
		if w, ok := strings.CutSuffix(sp.Name, ".weight_scale_inv"); ok {
			specs[i].Name = w + ".wscale_inv"
			data[specs[i].Name] = data[sp.Name]
		}
	}
	return specs
}

// TestFP8TemplateScaleRule: a user template whose quant section names the
// scales "{}.wscale_inv" converts an FP8 checkpoint so named to the very
// rank files the stdlib template (default rule, "{}.weight_scale_inv")
// makes of the same checkpoint named the default way, at TP1 and TP2;
// the stdlib template refuses the custom-named one (its rule names other
// scales); dequantize with the user's rules writes the oracle; MCA -> HF
// --quantize fp8 writes the scales back under the source's names. A user
// template naming no quant section gets the default.
func TestFP8TemplateScaleRule(t *testing.T) {
	tmp := t.TempDir()
	def := stdlibModel(t, "qwen3")
	user := userModel(t, filepath.Join(tmp, "tpl"), "qwen3", `quant { scale "{}.weight" -> "{}.wscale_inv" }`)
	plain := userModel(t, filepath.Join(tmp, "plain"), "qwen3", "")
	if !plain.Template.QuantDefault || user.Template.QuantDefault || len(user.Template.Scales) != 1 {
		t.Fatalf("scale rules: user %+v, plain %+v", user.Template.Scales, plain.Template.Scales)
	}
	fx := writeFP8(t, fp8Synth("qwen3"), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.BF16, [2]int64{48, 40}, 2, 7)
	cx := writeFP8Mut(t, fp8Synth("qwen3"), filepath.Join(tmp, "fp8c"), filepath.Join(tmp, "refc"), tensor.BF16, [2]int64{48, 40}, 2, 7, renameScales)
	for li, l := range []exec.Layout{{}, {TP: 2}} {
		id := fmt.Sprint(li)
		a, b, c := filepath.Join(tmp, "a"+id), filepath.Join(tmp, "b"+id), filepath.Join(tmp, "c"+id)
		if _, err := exec.ConvertHFToMCA(context.Background(), def, fx.dir, a, exec.Options{Layout: l}); err != nil {
			t.Fatal(err)
		}
		res, err := exec.ConvertHFToMCA(context.Background(), user, cx.dir, b, exec.Options{Layout: l})
		if err != nil {
			t.Fatal(err)
		}
		if res.Plan.FP8 == nil || res.Plan.FP8.Weights != len(cx.quantized) || !strings.HasSuffix(res.Plan.FP8.Pairs[0].Scale, ".wscale_inv") {
			t.Fatalf("plan FP8 info %+v, want %d pairs with .wscale_inv scales", res.Plan.FP8, len(cx.quantized))
		}
		sameRankFiles(t, "user rule vs default rule "+id, a, b)
		if _, err := exec.ConvertHFToMCA(context.Background(), plain, fx.dir, c, exec.Options{Layout: l}); err != nil {
			t.Fatal(err)
		}
		sameRankFiles(t, "no quant section (the default) "+id, a, c)
	}
	_, err := exec.ConvertHFToMCA(context.Background(), def, cx.dir, filepath.Join(tmp, "refused"), exec.Options{})
	var pe *exec.PlanError
	if !errors.As(err, &pe) || pe.Problems[0].Kind != exec.ProblemKind(fp8.CodeScaleMissing) || !strings.Contains(err.Error(), `has no scale "model.layers.0.mlp.down_proj.weight_scale_inv"`) {
		t.Fatalf("the default rule on .wscale_inv scales: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "refused")); err == nil {
		t.Error("a refused conversion wrote its destination")
	}
	deq := filepath.Join(tmp, "deq")
	if _, err := exec.DequantizeHF(context.Background(), cx.dir, deq, exec.DequantizeOptions{Scales: user.Template.Scales}); err != nil {
		t.Fatal(err)
	}
	sameTensors(t, fx.ref, deq)
	back := filepath.Join(tmp, "back")
	if _, err := exec.ConvertMCAToHF(context.Background(), user, filepath.Join(tmp, "b0"), back, exec.Options{Quantize: &exec.QuantizeOptions{}}); err != nil {
		t.Fatal(err)
	}
	sameTensors(t, cx.dir, back)
}

// fusedFP8 is an fp8Mutation that quantizes the fused 3-D expert tensors
// ("*.mlp.experts.gate_up_proj" [E, in, out], "*.down_proj") as
// transformers v5's FP8Expert stores them: codes, and a grid per expert
// named "<name>_scales_inv" (the leading axis carried). The oracle is
// written in place: writeFP8Mut's oracle holds the same byte slice as the
// checkpoint for an unquantized tensor, so the dequantized values
// overwrite it there while the checkpoint gets new code bytes.
func fusedFP8(block [2]int64) fp8Mutation {
	return func(specs []safetensors.Spec, data map[string][]byte, _ map[string]any) []safetensors.Spec {
		rng := rand.New(rand.NewPCG(3, 5))
		var out []safetensors.Spec
		for _, sp := range specs {
			if !strings.HasSuffix(sp.Name, ".mlp.experts.gate_up_proj") && !strings.HasSuffix(sp.Name, ".mlp.experts.down_proj") {
				out = append(out, sp)
				continue
			}
			n := sp.Shape.NumElements()
			E, M, N := sp.Shape[0], sp.Shape[1], sp.Shape[2]
			gm, gn := (M+block[0]-1)/block[0], (N+block[1]-1)/block[1]
			codes := make([]byte, n)
			for i := range codes {
				for codes[i] = byte(rng.Uint32()); codes[i]&0x7F == 0x7F; codes[i] = byte(rng.Uint32()) {
				}
			}
			scales := make([]float32, E*gm*gn)
			var sb []byte
			for k := range scales {
				scales[k] = float32(math.Ldexp(1+rng.Float64(), -2-rng.IntN(19)))
				sb = binary.LittleEndian.AppendUint32(sb, math.Float32bits(scales[k]))
			}
			ref := data[sp.Name] // shared with the oracle: see above
			for e := int64(0); e < n; e++ {
				lead, i, j := e/(M*N), (e/N)%M, e%N
				s := scales[lead*gm*gn+(i/block[0])*gn+j/block[1]]
				binary.LittleEndian.PutUint16(ref[2*e:], tensor.F32ToBF16(tensor.E4M3ToF32(codes[e])*s))
			}
			data[sp.Name] = codes
			data[sp.Name+"_scales_inv"] = sb
			out = append(out, safetensors.Spec{Name: sp.Name, DType: tensor.F8E4M3, Shape: sp.Shape},
				safetensors.Spec{Name: sp.Name + "_scales_inv", DType: tensor.F32, Shape: tensor.Shape{E, gm, gn}})
		}
		return out
	}
}

// TestFP8FusedExperts: with `use fp8_fused_experts` a template pairs the
// fused 3-D expert tensors with their plural scales ("gate_up_proj" ->
// "gate_up_proj_scales_inv", per-expert grids) and converts them, in one
// pass, to the rank files of the dequantized checkpoint, at TP1 and
// TP2+EP2; dequantize writes the oracle. The stdlib template (the default
// rule only) refuses them, naming the weight without a rule.
func TestFP8FusedExperts(t *testing.T) {
	tmp := t.TempDir()
	block := [2]int64{24, 40}
	m := userModel(t, filepath.Join(tmp, "tpl"), "qwen3_vl_moe", "quant { use fp8_block  use fp8_fused_experts }")
	fx := writeFP8Mut(t, fp8Synth("qwen3_vl_moe"), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.F32, block, 2, 9, fusedFP8(block))
	deq := filepath.Join(tmp, "deq")
	res, err := exec.DequantizeHF(context.Background(), fx.dir, deq, exec.DequantizeOptions{Scales: m.Template.Scales})
	if err != nil {
		t.Fatal(err)
	}
	fused := 0
	for _, p := range res.FP8.Pairs {
		if strings.HasSuffix(p.Scale, "_scales_inv") {
			fused++
			if len(p.Grid) != 3 || p.Grid[0] != p.Shape[0] {
				t.Errorf("%s: grid %v of %v does not carry the expert axis", p.Weight, p.Grid, p.Shape)
			}
		}
	}
	if fused != 4 { // gate_up_proj and down_proj of two layers
		t.Fatalf("%d fused-expert pairs, want 4: %+v", fused, res.FP8.Pairs)
	}
	sameTensors(t, fx.ref, deq)
	for li, l := range []exec.Layout{{}, {TP: 2, EP: 2}} {
		a, b := filepath.Join(tmp, fmt.Sprint("a", li)), filepath.Join(tmp, fmt.Sprint("b", li))
		if _, err := exec.ConvertHFToMCA(context.Background(), m, fx.dir, a, exec.Options{Layout: l}); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.ConvertHFToMCA(context.Background(), m, deq, b, exec.Options{Layout: l}); err != nil {
			t.Fatal(err)
		}
		sameRankFiles(t, fmt.Sprint("fused experts ", l), a, b)
	}
	_, err = exec.ConvertHFToMCA(context.Background(), stdlibModel(t, "qwen3_vl_moe"), fx.dir, filepath.Join(tmp, "refused"), exec.Options{})
	if err == nil || !strings.Contains(err.Error(), `mlp.experts.gate_up_proj" is F8_E4M3 but no scale rule of the template names its scale`) {
		t.Fatalf("the default rule on fused experts: %v", err)
	}
}

// TestScaleOpsNotPlanned: deepseek_v3 registers ROLL's 14 renames of FP8
// scales; the planner never plans them, in either direction, even when
// handed scale tensors directly (which the FP8 pre-pass consumes before
// any conversion), and a BF16 checkpoint that kept its scales is refused
// naming a scale rather than converted by them.
func TestScaleOpsNotPlanned(t *testing.T) {
	m := stdlibModel(t, "deepseek_v3")
	scaleOp := map[int]bool{}
	for i, o := range m.Template.Ops {
		if m.Template.ScaleOp(o) {
			scaleOp[i] = true
		}
	}
	if len(scaleOp) != 14 {
		t.Fatalf("deepseek_v3 has %d scale ops, want ROLL's 14", len(scaleOp))
	}
	s := deepSeekV3.synth(t, false)
	tmp := t.TempDir()
	s.write(t, filepath.Join(tmp, "hf"), 1, 3)
	cfgText, err := os.ReadFile(filepath.Join(tmp, "hf", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	mc, err := exec.BuildMCAConfig(m, cfgText, "config.json", "x", exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	var metas []exec.TensorMeta
	for _, sp := range s.tensors {
		metas = append(metas, exec.TensorMeta{Name: sp.Name, DType: sp.DType, Shape: sp.Shape, Size: sp.Shape.NumElements() * int64(sp.DType.Size()), File: "m.safetensors"})
		if strings.HasSuffix(sp.Name, "mlp.gate_proj.weight") || strings.HasSuffix(sp.Name, "self_attn.q_a_proj.weight") {
			metas = append(metas, exec.TensorMeta{Name: sp.Name + "_scale_inv", DType: tensor.F32, Shape: tensor.Shape{1, 1}, Size: 4, File: "m.safetensors"})
		}
	}
	for _, p := range []*exec.Plan{exec.PlanHFToMCA(m, mc, metas), exec.PlanMCAToHF(m, mc, []exec.TensorMeta{
		{Name: "decoder.layers.0.mlp.gate_proj.weight_scale_inv", DType: tensor.F32, Shape: tensor.Shape{1, 1}, Size: 4, File: "r.pt"},
	})} {
		for _, st := range p.Steps {
			if scaleOp[st.OpIndex] {
				t.Errorf("%v: step %s plans scale op #%d for %v", p.Dir, st.Kind, st.OpIndex+1, st.Inputs)
			}
		}
		for _, pr := range p.Problems {
			for i := range scaleOp {
				if strings.Contains(pr.Op, fmt.Sprintf(" op #%d (", i+1)) {
					t.Errorf("%v: a problem of scale op #%d: %s", p.Dir, i+1, pr.Msg)
				}
			}
		}
		if p.Dir == ops.MCAToHF {
			for _, pr := range p.Problems {
				if strings.Contains(pr.Msg, "scale_inv") && !slices.ContainsFunc(pr.Tensors, func(pt exec.ProblemTensor) bool { return strings.HasSuffix(pt.Name, "scale_inv") }) {
					t.Errorf("MCA -> HF reports a scale op's name missing: %s", pr.Msg)
				}
			}
		}
	}
	// A BF16 checkpoint that kept its scales: refused, naming the scale.
	kept := filepath.Join(tmp, "kept")
	specs := slices.Clone(s.tensors)
	for _, sp := range s.tensors {
		if strings.HasSuffix(sp.Name, "layers.0.mlp.gate_proj.weight") {
			specs = append(specs, safetensors.Spec{Name: sp.Name + "_scale_inv", DType: tensor.F32, Shape: tensor.Shape{1, 1}})
		}
	}
	if err := os.MkdirAll(kept, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(kept, "config.json"), cfgText)
	writeShards(t, kept, specs, 1, func(name string) []byte {
		for _, sp := range specs {
			if sp.Name == name {
				return make([]byte, sp.Shape.NumElements()*int64(sp.DType.Size()))
			}
		}
		return nil
	})
	_, err = exec.ConvertHFToMCA(context.Background(), m, kept, filepath.Join(tmp, "mca"), exec.Options{})
	if err == nil || !strings.Contains(err.Error(), `"model.layers.0.mlp.gate_proj.weight_scale_inv" is a scale but its weight "model.layers.0.mlp.gate_proj.weight" is BF16, not F8_E4M3`) {
		t.Fatalf("a BF16 checkpoint with its scales: %v", err)
	}
}
