package exec_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
	"github.com/rolltpl/rolltpl/stdlib"
)

// Phi-3 stores q/k/v fused in self_attn.qkv_proj.weight and gate/up in
// mlp.gate_up_proj.weight (issue 10, acceptance 1). Its template is the
// llama template with two composed ops: the fused tensors split by sizes
// from the config, feeding qkv and stack.

// phi3Example compiles examples/phi3/phi3.rolltpl with the stdlib.
func phi3Example(t testing.TB) *ir.Program {
	t.Helper()
	res := compiler.Compile([]string{filepath.Join("..", "..", "examples", "phi3", "phi3.rolltpl")}, compiler.Options{Lib: stdlib.Templates()})
	if res.Diags.HasErrors() {
		t.Fatalf("examples/phi3/phi3.rolltpl: %v", res.Diags)
	}
	return res.Program
}

// phi3IRTemplate returns a Phi-3 template built as IR: llama's, with the
// q/k/v qkv op and the gate/up stack op replaced by ops reading the fused
// tensors through tensor steps whose sizes are expressions over hf.* (the
// HF config mca_config.json records) and mca.*, with list repetition;
// and the attention output projection as oProj says: "transpose" (stored
// transposed in the HF checkpoint, [heads*d, hidden], and transposed back
// by a step), "slice" (stored with outPad extra columns the op slices
// off: a step with no inverse), or "" (renamed as in llama).
func phi3IRTemplate(t testing.TB, oProj string) *ir.Program {
	t.Helper()
	prog := stdlibProgram(t)
	llama := prog.Template("llama")
	tp := *llama
	tp.Name = "phi3"
	tp.Ops = nil
	mca := func(key string) *ir.Expr {
		return &ir.Expr{Kind: ir.ExprField, Name: key, Args: []*ir.Expr{{Kind: ir.ExprRef, Name: "mca"}}}
	}
	hf := func(key string) *ir.Expr {
		return &ir.Expr{Kind: ir.ExprField, Name: key, Args: []*ir.Expr{{Kind: ir.ExprRef, Name: "hf"}}}
	}
	bin := func(op string, a, b *ir.Expr) *ir.Expr {
		return &ir.Expr{Kind: ir.ExprBinary, Op: op, Args: []*ir.Expr{a, b}}
	}
	lit := func(n string) *ir.Expr { return &ir.Expr{Kind: ir.ExprLit, Lit: ir.Value{Kind: ir.Int, Text: n}} }
	list := func(xs ...*ir.Expr) *ir.Expr { return &ir.Expr{Kind: ir.ExprList, Args: xs} }
	leaf := &ir.TensorExpr{HF: 0}
	for _, o := range llama.Ops {
		switch o.Kind {
		case "qkv":
			// split(qkv_proj, 0, [nh*d, ng*d, ng*d]) feeding qkv; the
			// heads written over hf.*, kv_channels over mca.*.
			q := bin("*", hf("num_attention_heads"), mca("kv_channels"))
			kv := bin("*", hf("num_key_value_heads"), mca("kv_channels"))
			c := *o
			c.HF = []ir.Name{{Value: ".self_attn.qkv_proj.weight"}}
			c.Inputs = []*ir.TensorExpr{{HF: -1, Step: "split", Operands: []*ir.TensorExpr{leaf},
				Args: map[string]*ir.Expr{"dim": lit("0"), "sizes": list(q, kv, kv)}}}
			tp.Ops = append(tp.Ops, &c)
		case "stack":
			// split(gate_up_proj, 0, [ffn_hidden_size] * 2) feeding stack.
			c := *o
			c.HF = []ir.Name{{Value: ".mlp.gate_up_proj.weight"}}
			c.Inputs = []*ir.TensorExpr{{HF: -1, Step: "split", Operands: []*ir.TensorExpr{leaf},
				Args: map[string]*ir.Expr{"dim": lit("0"), "sizes": bin("*", list(mca("ffn_hidden_size")), lit("2"))}}}
			tp.Ops = append(tp.Ops, &c)
		case "rename":
			if oProj == "" || o.HF[0].Value != ".self_attn.o_proj.weight" {
				tp.Ops = append(tp.Ops, o)
				break
			}
			c := *o
			if oProj == "transpose" {
				c.Inputs = []*ir.TensorExpr{{HF: -1, Step: "transpose", Operands: []*ir.TensorExpr{leaf},
					Args: map[string]*ir.Expr{"dims": list(lit("0"), lit("1"))}}}
			} else {
				width := bin("*", mca("num_attention_heads"), mca("kv_channels"))
				c.Inputs = []*ir.TensorExpr{{HF: -1, Step: "slice", Operands: []*ir.TensorExpr{leaf},
					Args: map[string]*ir.Expr{"dim": lit("1"), "start": lit("0"), "stop": width}}}
			}
			tp.Ops = append(tp.Ops, &c)
		default:
			tp.Ops = append(tp.Ops, o)
		}
	}
	out := *prog
	out.Templates = append(append([]*ir.Template(nil), prog.Templates...), &tp)
	return &out
}

// phi3Dims are the sizes of a Phi-3 checkpoint.
type phi3Dims struct {
	name                                     string
	hidden, heads, kv, headDim, inter, vocab int64
	layers                                   int
	// transposedOut stores o_proj transposed in the Phi-3 checkpoint
	// (phi3IRTemplate's transpose step); outPad stores it with that many
	// extra columns (its slice step).
	transposedOut bool
	outPad        int64
}

// fused reports the HF tensors of one layer in llama's split naming with
// their shapes, and how the Phi-3 names fuse them.
func (d phi3Dims) specs(dt tensor.DType) (llama []safetensors.Spec, phi3 []safetensors.Spec, fuse map[string][]string) {
	add := func(s *[]safetensors.Spec, name string, shape ...int64) {
		*s = append(*s, safetensors.Spec{Name: name, DType: dt, Shape: shape})
	}
	fuse = map[string][]string{}
	add(&llama, "model.embed_tokens.weight", d.vocab, d.hidden)
	add(&phi3, "model.embed_tokens.weight", d.vocab, d.hidden)
	for l := range d.layers {
		p := "model.layers." + strconv.Itoa(l)
		for _, s := range []*[]safetensors.Spec{&llama, &phi3} {
			add(s, p+".input_layernorm.weight", d.hidden)
			add(s, p+".post_attention_layernorm.weight", d.hidden)
			if s == &phi3 && d.transposedOut {
				add(s, p+".self_attn.o_proj.weight", d.heads*d.headDim, d.hidden)
			} else if s == &phi3 && d.outPad > 0 {
				add(s, p+".self_attn.o_proj.weight", d.hidden, d.heads*d.headDim+d.outPad)
			} else {
				add(s, p+".self_attn.o_proj.weight", d.hidden, d.heads*d.headDim)
			}
			add(s, p+".mlp.down_proj.weight", d.hidden, d.inter)
		}
		add(&llama, p+".self_attn.q_proj.weight", d.heads*d.headDim, d.hidden)
		add(&llama, p+".self_attn.k_proj.weight", d.kv*d.headDim, d.hidden)
		add(&llama, p+".self_attn.v_proj.weight", d.kv*d.headDim, d.hidden)
		add(&llama, p+".mlp.gate_proj.weight", d.inter, d.hidden)
		add(&llama, p+".mlp.up_proj.weight", d.inter, d.hidden)
		add(&phi3, p+".self_attn.qkv_proj.weight", (d.heads+2*d.kv)*d.headDim, d.hidden)
		add(&phi3, p+".mlp.gate_up_proj.weight", 2*d.inter, d.hidden)
		fuse[p+".self_attn.qkv_proj.weight"] = []string{p + ".self_attn.q_proj.weight", p + ".self_attn.k_proj.weight", p + ".self_attn.v_proj.weight"}
		fuse[p+".mlp.gate_up_proj.weight"] = []string{p + ".mlp.gate_proj.weight", p + ".mlp.up_proj.weight"}
	}
	add(&llama, "model.norm.weight", d.hidden)
	add(&phi3, "model.norm.weight", d.hidden)
	add(&llama, "lm_head.weight", d.vocab, d.hidden)
	add(&phi3, "lm_head.weight", d.vocab, d.hidden)
	return llama, phi3, fuse
}

// config is a Phi-3 config.json (the keys of microsoft/Phi-3-mini-4k-instruct
// and Phi-3-medium-4k-instruct) for d, as model type modelType.
func (d phi3Dims) config(modelType string) []byte {
	arch := "Phi3ForCausalLM"
	if modelType == "llama" {
		arch = "LlamaForCausalLM"
	}
	cfg := map[string]any{
		"architectures": []string{arch}, "model_type": modelType, "attention_bias": false,
		"attention_dropout": 0.0, "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 32000,
		"hidden_act": "silu", "hidden_size": d.hidden, "initializer_range": 0.02,
		"intermediate_size": d.inter, "max_position_embeddings": 4096, "num_attention_heads": d.heads,
		"num_hidden_layers": d.layers, "num_key_value_heads": d.kv, "original_max_position_embeddings": 4096,
		"pad_token_id": 32000, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": nil,
		"rope_theta": 10000.0, "sliding_window": 2047, "tie_word_embeddings": false,
		"torch_dtype": "bfloat16", "transformers_version": "4.40.2", "use_cache": true, "vocab_size": d.vocab,
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return b
}

// writePhi3Pair writes the same random weights twice: as a Phi-3
// checkpoint with fused tensors and as a llama checkpoint with q/k/v and
// gate/up apart.
func writePhi3Pair(t *testing.T, d phi3Dims, dt tensor.DType, phiDir, llamaDir string) {
	t.Helper()
	llamaSpecs, phiSpecs, fuse := d.specs(dt)
	size := map[string]int64{}
	for _, sp := range llamaSpecs {
		size[sp.Name] = sp.Shape.NumElements() * int64(dt.Size())
	}
	// Each tensor's bytes are made when written, from a generator seeded
	// by its name, so that both checkpoints get the same weights without
	// holding a real-size model in memory.
	fill := func(b []byte, name string) {
		h := fnv.New64a()
		h.Write([]byte(name))
		rng := rand.New(rand.NewPCG(uint64(d.hidden)<<32|uint64(d.kv), h.Sum64()))
		for i := 0; i+8 <= len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], rng.Uint64()&0xBFFF_BFFF_BFFF_BFFF) // no NaN/Inf bit games
		}
	}
	tensorData := func(name string) []byte {
		b := make([]byte, size[name])
		fill(b, name)
		return b
	}
	for _, dir := range []string{phiDir, llamaDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(phiDir, "config.json"), d.config("phi3"))
	writeFile(t, filepath.Join(llamaDir, "config.json"), d.config("llama"))
	writeShards(t, llamaDir, llamaSpecs, 2, tensorData)
	writeShards(t, phiDir, phiSpecs, 2, func(name string) []byte {
		if d.transposedOut && strings.HasSuffix(name, ".o_proj.weight") {
			return transposeBytes(tensorData(name), d.hidden, d.heads*d.headDim, dt.Size())
		}
		if d.outPad > 0 && strings.HasSuffix(name, ".o_proj.weight") {
			data := tensorData(name)
			row := d.heads * d.headDim * int64(dt.Size())
			var b []byte
			for r := range d.hidden {
				b = append(b, data[r*row:(r+1)*row]...)
				b = append(b, bytes.Repeat([]byte{0x3c}, int(d.outPad)*dt.Size())...)
			}
			return b
		}
		parts, ok := fuse[name]
		if !ok {
			return tensorData(name)
		}
		var n int64
		for _, p := range parts {
			n += size[p]
		}
		b, off := make([]byte, n), int64(0)
		for _, p := range parts {
			fill(b[off:off+size[p]], p)
			off += size[p]
		}
		return b
	})
}

// transposeBytes transposes a row-major [rows, cols] matrix of es-byte
// elements, element by element.
func transposeBytes(b []byte, rows, cols int64, es int) []byte {
	out := make([]byte, len(b))
	for i := range rows {
		for j := range cols {
			copy(out[(j*rows+i)*int64(es):(j*rows+i+1)*int64(es)], b[(i*cols+j)*int64(es):(i*cols+j+1)*int64(es)])
		}
	}
	return out
}

// phi3Configs are Phi-3-mini (MHA) and Phi-3-medium (GQA): their real
// attention geometry and hidden size, with two layers and a small vocab.
// The intermediate size is cut to keep the test light unless
// ROLLTPL_LARGE is set (then it is the real 8192 and 17920).
func phi3Configs() []phi3Dims {
	mini := phi3Dims{name: "mini", hidden: 3072, heads: 32, kv: 32, headDim: 96, inter: 8192, vocab: 512, layers: 2}
	medium := phi3Dims{name: "medium", hidden: 5120, heads: 40, kv: 10, headDim: 128, inter: 17920, vocab: 512, layers: 2}
	if os.Getenv("ROLLTPL_LARGE") == "" {
		mini.inter, medium.inter = 1024, 1280
	}
	return []phi3Dims{mini, medium}
}

// rankTensors lists the tensors of every rank file under an MCA
// directory, by rank directory, in file order.
func rankTensors(t *testing.T, dir string) map[string][]*torchsave.Tensor {
	t.Helper()
	out := map[string][]*torchsave.Tensor{}
	for _, p := range rankFiles(t, dir) {
		f, err := torchsave.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if err := f.VerifyCRC(); err != nil {
			t.Error(err)
		}
		out[filepath.Base(filepath.Dir(p))] = f.Tensors()
	}
	return out
}

// TestPhi3Fused converts real-shaped Phi-3 checkpoints (fused qkv_proj
// and gate_up_proj; MHA and GQA) with examples/phi3/phi3.rolltpl HF -> MCA
// at TP1 and TP2+PP2 and requires exactly the tensors (names, dtypes,
// shapes, bytes, order) the stdlib llama template writes from the same
// weights stored apart; then back to HF, bit for bit under the fused
// names.
func TestPhi3Fused(t *testing.T) {
	phi, err := exec.NewModel(phi3Example(t), "phi3", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range phi3Configs() {
		t.Run(d.name, func(t *testing.T) { comparePhi3WithLlama(t, phi, d, phi3RealLayouts) })
	}
}

// TestPhi3StepsFromIR runs the same comparison, on small dims, with a
// Phi-3 template built as IR whose step sizes read hf.* (the recorded HF
// config) and repeat a list, and whose o_proj is stored transposed in the
// HF checkpoint and transposed by a step (a copy into the executor's
// arena, both ways).
func TestPhi3StepsFromIR(t *testing.T) {
	phi, err := exec.NewModel(phi3IRTemplate(t, "transpose"), "phi3", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := phi3Dims{name: "small", hidden: 128, heads: 8, kv: 4, headDim: 16, inter: 96, vocab: 128, layers: 2, transposedOut: true}
	comparePhi3WithLlama(t, phi, d, append(phi3Layouts, phi3Layout{"tp4", exec.Layout{TP: 4}}))
}

type phi3Layout struct {
	name   string
	layout exec.Layout
}

var phi3Layouts = []phi3Layout{{"tp1", exec.Layout{}}, {"tp2", exec.Layout{TP: 2}}, {"tp2pp2", exec.Layout{TP: 2, PP: 2}}}

// phi3RealLayouts are the layouts of the real-size comparison: TP2 alone
// splits the fused tensors of a rank as TP2+PP2 does (pipeline stages
// only choose the layers), and TestPhi3StepsFromIR converts at TP2.
var phi3RealLayouts = []phi3Layout{phi3Layouts[0], phi3Layouts[2]}

// comparePhi3WithLlama writes d as a Phi-3 and a llama checkpoint of the
// same weights, converts both to MCA at each layout and compares the rank
// files tensor by tensor; then converts the Phi-3 one back and compares
// it with its source.
func comparePhi3WithLlama(t *testing.T, phi *exec.Model, d phi3Dims, layouts []phi3Layout) {
	llama := stdlibModel(t, "llama")
	dir := t.TempDir()
	phiSrc, llamaSrc := filepath.Join(dir, "phi3"), filepath.Join(dir, "llama")
	writePhi3Pair(t, d, tensor.BF16, phiSrc, llamaSrc)
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			out := filepath.Join(dir, l.name)
			defer os.RemoveAll(out)
			r, err := exec.ConvertHFToMCA(context.Background(), phi, phiSrc, filepath.Join(out, "phi3"), exec.Options{Layout: l.layout})
			if err != nil {
				t.Fatalf("phi3 HF -> MCA: %v", err)
			}
			if _, err := exec.ConvertHFToMCA(context.Background(), llama, llamaSrc, filepath.Join(out, "llama"), exec.Options{Layout: l.layout}); err != nil {
				t.Fatalf("llama HF -> MCA: %v", err)
			}
			n := compareRankDirs(t, filepath.Join(out, "phi3"), filepath.Join(out, "llama"), func(name string) bool {
				return strings.Contains(name, "linear_qkv.weight") || strings.Contains(name, "linear_fc1.weight")
			})
			if want := 2 * d.layers * max(l.layout.TP, 1); n != want {
				t.Errorf("%d fused weights compared, want %d", n, want)
			}
			back := filepath.Join(out, "back")
			if _, err := exec.ConvertMCAToHF(context.Background(), phi, filepath.Join(out, "phi3"), back, exec.Options{}); err != nil {
				t.Fatalf("phi3 MCA -> HF: %v", err)
			}
			compareCheckpoints(t, phiSrc, back, r.Plan)
		})
	}
}

// TestPhi3Check plans Phi-3 conversions as `check --checkpoint` does
// (exec.PlanConversion) and verifies a round trip: a clean checkpoint
// plans clean both ways; one whose fused qkv_proj does not fit the config
// is a shape problem naming the step (at its template position) and the
// tensor, before anything is written.
func TestPhi3Check(t *testing.T) {
	phi, err := exec.NewModel(phi3Example(t), "phi3", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := phi3Dims{name: "small", hidden: 128, heads: 8, kv: 4, headDim: 16, inter: 96, vocab: 128, layers: 2}
	src := filepath.Join(dir, "phi3")
	writePhi3Pair(t, d, tensor.BF16, src, filepath.Join(dir, "llama"))
	layout := exec.Layout{TP: 2, PP: 2}
	cp, err := exec.PlanConversion(phi, src, layout)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Plan.Err(); err != nil || cp.RankFiles != 4 {
		t.Fatalf("clean checkpoint: %v, %d rank files", err, cp.RankFiles)
	}
	rep, err := exec.Verify(context.Background(), phi, src, exec.VerifyOptions{TempDir: dir, Layout: layout, Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Compared == 0 {
		t.Fatalf("verify: compared %d, diffs %v", rep.Compared, rep.Diffs)
	}
	back, err := exec.PlanConversion(phi, filepath.Join(rep.Dir, "mca"), exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Plan.Err(); err != nil {
		t.Fatalf("MCA -> HF plan: %v", err)
	}
	var hfOut []string
	for _, o := range back.Plan.Outputs() {
		hfOut = append(hfOut, o.Name)
	}
	if !slices.Contains(hfOut, "model.layers.1.self_attn.qkv_proj.weight") || !slices.Contains(hfOut, "model.layers.0.mlp.gate_up_proj.weight") {
		t.Errorf("MCA -> HF plan does not write the fused names: %v", hfOut)
	}

	// The config says 8 KV heads; the checkpoint's qkv_proj has 4.
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(src, "config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["num_key_value_heads"] = 8
	b, _ = json.Marshal(cfg)
	writeFile(t, filepath.Join(src, "config.json"), b)
	cp, err = exec.PlanConversion(phi, src, exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, p := range cp.Plan.Problems {
		if p.Kind != exec.ProblemShape || !strings.Contains(p.Msg, "step split") {
			continue
		}
		for _, want := range []string{"phi3.rolltpl:", "qkv_proj.weight", "add up to 384", "dimension is 256"} {
			if !strings.Contains(p.Msg, want) {
				t.Errorf("problem %q lacks %q", p.Msg, want)
			}
		}
		if len(p.Tensors) != 1 || !strings.HasSuffix(p.Tensors[0].Name, ".self_attn.qkv_proj.weight") {
			t.Errorf("problem names tensors %v", p.Tensors)
		}
		found++
	}
	if found != d.layers {
		t.Errorf("%d split problems, want one per layer (%d): %v", found, d.layers, cp.Plan.Problems)
	}
	if _, err := exec.ConvertHFToMCA(context.Background(), phi, src, filepath.Join(dir, "bad"), exec.Options{}); err == nil {
		t.Error("converting a checkpoint that does not fit its config succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad")); err == nil {
		t.Error("a failed conversion left an output directory")
	}
}

// TestPhi3SliceOneWay: an op reading its HF tensor through a slice (o_proj
// stored with padding columns) converts HF -> MCA to llama's tensors, and
// the way back is refused before anything is written, naming the step and
// the tensor: a slice drops data and has no inverse.
func TestPhi3SliceOneWay(t *testing.T) {
	phi, err := exec.NewModel(phi3IRTemplate(t, "slice"), "phi3", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := phi3Dims{name: "small", hidden: 128, heads: 8, kv: 4, headDim: 16, inter: 96, vocab: 128, layers: 2, outPad: 8}
	dir := t.TempDir()
	phiSrc, llamaSrc := filepath.Join(dir, "phi3"), filepath.Join(dir, "llama")
	writePhi3Pair(t, d, tensor.BF16, phiSrc, llamaSrc)
	mca := filepath.Join(dir, "mca")
	if _, err := exec.ConvertHFToMCA(context.Background(), phi, phiSrc, mca, exec.Options{Layout: exec.Layout{TP: 2}}); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(dir, "ref")
	if _, err := exec.ConvertHFToMCA(context.Background(), stdlibModel(t, "llama"), llamaSrc, ref, exec.Options{Layout: exec.Layout{TP: 2}}); err != nil {
		t.Fatal(err)
	}
	got, want := rankTensors(t, mca), rankTensors(t, ref)
	for rank, wts := range want {
		for i, w := range wts {
			if g := got[rank][i]; g.Name != w.Name || !g.Shape.Equal(w.Shape) || !bytes.Equal(g.Data, w.Data) {
				t.Errorf("%s tensor %d: %s %v, llama wrote %s %v (or the bytes differ)", rank, i, g.Name, g.Shape, w.Name, w.Shape)
			}
		}
	}
	cp, err := exec.PlanConversion(phi, mca, exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range cp.Plan.Problems {
		if strings.Contains(p.Msg, "step slice") && strings.Contains(p.Msg, "no inverse") && strings.Contains(p.Msg, "o_proj.weight") {
			n++
		}
	}
	if n != d.layers {
		t.Errorf("%d slice problems, want one per layer: %v", n, cp.Plan.Problems)
	}
	back := filepath.Join(dir, "back")
	if _, err := exec.ConvertMCAToHF(context.Background(), phi, mca, back, exec.Options{}); err == nil {
		t.Error("MCA -> HF through a slice succeeded")
	}
	if _, err := os.Stat(back); err == nil {
		t.Error("the refused conversion left an output")
	}
}

// TestComposeSizeErrors: a step size the MCA config cannot give (a key
// it lacks, a non-integer) is a config problem naming the op, the
// expression's position and the key, before any tensor is read.
func TestComposeSizeErrors(t *testing.T) {
	prog := phi3IRTemplate(t, "")
	tp := prog.Template("phi3")
	for _, o := range tp.Ops {
		if o.Kind == "stack" {
			o.Inputs[0].Args["sizes"] = &ir.Expr{Kind: ir.ExprList, Args: []*ir.Expr{
				{Kind: ir.ExprField, Name: "no_such_key", Args: []*ir.Expr{{Kind: ir.ExprRef, Name: "mca"}}},
				{Kind: ir.ExprLit, Lit: ir.Value{Kind: ir.String, Text: "x"}}}}
		}
	}
	phi, err := exec.NewModel(prog, "phi3", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := phi3Dims{name: "small", hidden: 128, heads: 8, kv: 4, headDim: 16, inter: 96, vocab: 128, layers: 2}
	src := filepath.Join(dir, "phi3")
	writePhi3Pair(t, d, tensor.BF16, src, filepath.Join(dir, "llama"))
	cp, err := exec.PlanConversion(phi, src, exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	err = cp.Plan.Err()
	if err == nil || !strings.Contains(err.Error(), "stack: split sizes: element 0: ") || !strings.Contains(err.Error(), "mca.no_such_key is null: the mca config has no no_such_key") {
		t.Errorf("plan error %v, want a size error of the stack op naming the key", err)
	}
	// A string where a size goes.
	for _, o := range tp.Ops {
		if o.Kind == "stack" {
			o.Inputs[0].Args["sizes"].Args[0] = &ir.Expr{Kind: ir.ExprField, Name: "ffn_hidden_size", Args: []*ir.Expr{{Kind: ir.ExprRef, Name: "mca"}}}
		}
	}
	cp, err = exec.PlanConversion(phi, src, exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Plan.Err(); err == nil || !strings.Contains(err.Error(), `element 1: 0:0: 'x' is str, not an integer`) {
		t.Errorf("plan error %v, want element 1 not an integer", err)
	}
}

// TestStepsInDigest: the template digest recorded in mca_config.json
// covers the tensor steps: a checkpoint written with one split is not
// taken for one written with another. (Templates without steps keep their
// digests: the steps are encoded only when present.)
func TestStepsInDigest(t *testing.T) {
	digest := func(mod func(tp *ir.Template)) string {
		prog := phi3IRTemplate(t, "")
		mod(prog.Template("phi3"))
		m, err := exec.NewModel(prog, "phi3", nil)
		if err != nil {
			t.Fatal(err)
		}
		return m.TemplateDigest()
	}
	stack := func(tp *ir.Template) *ir.Op {
		for _, o := range tp.Ops {
			if o.Kind == "stack" {
				return o
			}
		}
		t.Fatal("no stack op")
		return nil
	}
	base := digest(func(*ir.Template) {})
	if again := digest(func(*ir.Template) {}); again != base {
		t.Errorf("digest not deterministic: %s, %s", base, again)
	}
	for name, mod := range map[string]func(tp *ir.Template){
		"sizes": func(tp *ir.Template) {
			stack(tp).Inputs[0].Args["sizes"] = &ir.Expr{Kind: ir.ExprList, Args: []*ir.Expr{
				{Kind: ir.ExprField, Name: "ffn_hidden_size", Args: []*ir.Expr{{Kind: ir.ExprRef, Name: "mca"}}},
				{Kind: ir.ExprField, Name: "ffn_hidden_size", Args: []*ir.Expr{{Kind: ir.ExprRef, Name: "mca"}}}}}
		},
		"step": func(tp *ir.Template) {
			stack(tp).Inputs[0] = &ir.TensorExpr{HF: -1, Step: "chunk", Operands: []*ir.TensorExpr{{HF: 0}},
				Args: map[string]*ir.Expr{"parts": {Kind: ir.ExprLit, Lit: ir.Value{Kind: ir.Int, Text: "2"}}}}
		},
	} {
		if got := digest(mod); got == base {
			t.Errorf("%s: changing the steps left the digest %s", name, got)
		}
	}
}
