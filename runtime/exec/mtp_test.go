package exec_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/stdlib"
)

// Multi-token-prediction layers (issue 11): testdata/mtp.rolltpl holds a
// Qwen3-MoE-like model with one MTP layer kept the DeepSeek way (HF layer
// num_hidden_layers) and the Qwen3.5 way (under "mtp."). The MTP layer's
// transformer weights are written with the bytes of decoder layer 0, so
// every mtp.layers.0.mtp_model_layer.<rest> tensor of a rank file must
// equal decoder.layers.0.<rest> of the rank with the same tensor and
// expert rank on the first stage: split and named exactly like the
// decoder-layer tensor of the same kind.

var (
	mtpOnce sync.Once
	mtpProg *ir.Program
	mtpErr  error
)

func mtpModel(t testing.TB, name string) *exec.Model {
	t.Helper()
	mtpOnce.Do(func() {
		res := compiler.Compile([]string{"testdata/mtp.rolltpl"}, compiler.Options{Lib: stdlib.Templates()})
		if res.Diags.HasErrors() {
			mtpErr = fmt.Errorf("mtp.rolltpl: %v", res.Diags)
		}
		mtpProg = res.Program
	})
	if mtpErr != nil {
		t.Fatal(mtpErr)
	}
	m, err := exec.NewModel(mtpProg, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mtpCheckpoint is an HF checkpoint with an MTP layer.
type mtpCheckpoint struct {
	style string // "trailing", "prefixed" or "fused" (prefixed, fused experts)
	tied  bool   // tied embeddings: no lm_head
	// modelType overrides config.json's model_type (default mtp_<style>).
	modelType string
	decoder   int // num_hidden_layers
	mtp       int // MTP layers in the config
	specs     []safetensors.Spec
	// inner maps an HF name of the MTP transformer layer to the decoder
	// layer 0 name whose bytes it holds.
	inner map[string]string
	// block maps the MCA block weight name to its HF name.
	block map[string]string
	// extra are HF names of the MTP layer ignored on purpose.
	extra []string
}

const mtpH, mtpV = 64, 256

func newMTPCheckpoint(style string) *mtpCheckpoint {
	d := dims{vocab: mtpV, hidden: mtpH, layers: 5, heads: 4, kv: 2, headDim: 16, qkNorm: true, experts: 4, moeInter: 32,
		fusedExperts: style == "fused"}
	c := &mtpCheckpoint{style: style, decoder: 4, mtp: 1, inner: map[string]string{}, block: map[string]string{}}
	add := func(name string, shape ...int64) {
		c.specs = append(c.specs, safetensors.Spec{Name: name, DType: tensor.BF16, Shape: tensor.Shape(shape)})
	}
	hfLayer := "model.layers.4."
	if style != "trailing" { // prefixed, fused
		hfLayer = "mtp.layers.0."
	}
	for _, sp := range d.specs(tensor.BF16) {
		if rest, ok := strings.CutPrefix(sp.Name, "model.layers.4."); ok {
			sp.Name = hfLayer + rest
			c.inner[sp.Name] = "model.layers.0." + rest
		}
		c.specs = append(c.specs, sp)
	}
	blockHF := map[string]string{".enorm.weight": "enorm.weight", ".hnorm.weight": "hnorm.weight", ".eh_proj.weight": "eh_proj.weight", ".final_layernorm.weight": "shared_head.norm.weight"}
	blockPrefix := hfLayer
	if style != "trailing" {
		blockHF = map[string]string{".enorm.weight": "pre_fc_norm_embedding.weight", ".hnorm.weight": "pre_fc_norm_hidden.weight", ".eh_proj.weight": "fc.weight", ".final_layernorm.weight": "norm.weight"}
		blockPrefix = "mtp."
	}
	for _, w := range []string{".enorm.weight", ".hnorm.weight", ".eh_proj.weight", ".final_layernorm.weight"} {
		name := blockPrefix + blockHF[w]
		c.block[w] = name
		if w == ".eh_proj.weight" {
			add(name, mtpH, 2*mtpH)
		} else {
			add(name, mtpH)
		}
	}
	if style == "trailing" {
		c.extra = []string{hfLayer + "embed_tokens.weight", hfLayer + "shared_head.head.weight"}
		add(c.extra[0], mtpV, mtpH)
		add(c.extra[1], mtpV, mtpH)
	}
	return c
}

func (c *mtpCheckpoint) config() map[string]any {
	d := dims{vocab: mtpV, hidden: mtpH, inter: 128, layers: int64(c.decoder), heads: 4, kv: 2, headDim: 16, experts: 4, moeInter: 32}
	cfg := d.textConfig(tensor.BF16)
	cfg["tie_word_embeddings"] = c.tied
	qwenMoEKeys(cfg, d)
	cfg["model_type"] = "mtp_" + c.style
	if c.modelType != "" {
		cfg["model_type"] = c.modelType
	}
	if c.style == "trailing" {
		cfg["num_nextn_predict_layers"] = c.mtp
	} else {
		cfg["mtp_num_hidden_layers"] = c.mtp
	}
	return cfg
}

// mtpBytes is the content of an HF tensor: random bytes seeded by its
// name (the MTP transformer layer's by the decoder layer 0 name).
func (c *mtpCheckpoint) bytes(sp safetensors.Spec) []byte {
	name := sp.Name
	if d, ok := c.inner[name]; ok {
		name = d
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	rng := rand.New(rand.NewPCG(h.Sum64(), 11))
	b := make([]byte, sp.Shape.NumElements()*int64(sp.DType.Size()))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	// Finite bf16 values (no all-ones exponent): ROLL's DistConverter
	// compares replicated copies by their difference, which NaN fails.
	for i := 1; i < len(b); i += 2 {
		if b[i]&0x7f == 0x7f && b[i-1]&0x80 != 0 {
			b[i] &^= 0x01
		}
	}
	return b
}

func (c *mtpCheckpoint) write(t *testing.T, dir string, drop ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := json.MarshalIndent(c.config(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "config.json"), cfg)
	var specs []safetensors.Spec
	data := map[string][]byte{}
	for _, sp := range c.specs {
		if !containsString(drop, sp.Name) && !(c.tied && sp.Name == "lm_head.weight") {
			specs = append(specs, sp)
			data[sp.Name] = c.bytes(sp)
		}
	}
	writeShards(t, dir, specs, 2, func(name string) []byte { return data[name] })
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// rankTensor is one tensor of a rank file: its model chunk ("model",
// "model0", ...) and name.
type rankTensor struct {
	chunk, name string
	dtype       tensor.DType
	shape       tensor.Shape
	data        []byte
}

func rankTensorsByRank(t *testing.T, dir string, l shard.Layout) map[shard.Rank][]rankTensor {
	t.Helper()
	out := map[shard.Rank][]rankTensor{}
	for rankDir, ts := range rankTensors(t, dir) {
		r, err := shard.ParseRankDir(rankDir, l)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range ts {
			chunk, name, _ := strings.Cut(x.Name, "/")
			out[r] = append(out[r], rankTensor{chunk: chunk, name: name, dtype: x.DType, shape: x.Shape, data: x.Data})
		}
	}
	return out
}

// checkMTPPlacement asserts the MTP tensors of an MCA checkpoint written
// from c at layout l: on the last pipeline stage (last virtual stage)
// only; every transformer tensor equal to decoder layer 0's of the same
// tensor and expert rank; the block weights from their HF tensors
// (norms whole on every rank, eh_proj split by rows over TP); the word
// embeddings on the last stage.
func checkMTPPlacement(t *testing.T, c *mtpCheckpoint, dir string, l exec.Layout) {
	t.Helper()
	n := l.Normalized()
	ranks := rankTensorsByRank(t, dir, n)
	lastChunk, firstChunk := "model", "model"
	if n.VPP > 1 {
		lastChunk, firstChunk = fmt.Sprintf("model%d", n.VPP-1), "model0"
	}
	src, err := safetensors.OpenSharded(filepath.Join(filepath.Dir(dir), "hf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	hfData := func(name string) []byte {
		x, ok := src.Lookup(name)
		if !ok {
			t.Fatalf("HF tensor %s missing", name)
		}
		return x.File.Data(x.TensorInfo)
	}
	inner, blocks := 0, 0
	for r, ts := range ranks {
		last := r.PP == n.PP-1
		var dec0 []rankTensor
		if last {
			first := r
			first.PP = 0
			for _, x := range ranks[first] {
				if x.chunk == firstChunk && strings.HasPrefix(x.name, "decoder.layers.0.") {
					dec0 = append(dec0, x)
				}
			}
		}
		nInner, hasEmbedding := 0, false
		for _, x := range ts {
			if x.name == "embedding.word_embeddings.weight" && x.chunk == lastChunk {
				hasEmbedding = true
			}
			if !strings.HasPrefix(x.name, "mtp.") {
				continue
			}
			if !last || x.chunk != lastChunk {
				t.Errorf("rank %+v chunk %s holds %s: MTP weights belong to the last (virtual) pipeline stage", r, x.chunk, x.name)
				continue
			}
			if rest, ok := strings.CutPrefix(x.name, "mtp.layers.0.mtp_model_layer."); ok {
				nInner++
				want := "decoder.layers.0." + rest
				found := false
				for _, d := range dec0 {
					if d.name == want {
						found = true
						if d.dtype != x.dtype || !d.shape.Equal(x.shape) || !bytes.Equal(d.data, x.data) {
							t.Errorf("rank %+v: %s is %v%v, but %s of the first stage is %v%v (or the bytes differ)", r, x.name, x.dtype, x.shape, want, d.dtype, d.shape)
						}
					}
				}
				if !found {
					t.Errorf("rank %+v: %s has no decoder-layer twin %s", r, x.name, want)
				}
				inner++
				continue
			}
			w := strings.TrimPrefix(x.name, "mtp.layers.0")
			hfName, ok := c.block[w]
			if !ok {
				t.Errorf("rank %+v: unexpected MTP tensor %s", r, x.name)
				continue
			}
			want := hfData(hfName)
			if w == ".eh_proj.weight" { // column-parallel: rows split over TP
				rows := int64(len(want)) / int64(n.TP)
				want = want[int64(r.TP)*rows : int64(r.TP+1)*rows]
			}
			if !bytes.Equal(x.data, want) {
				t.Errorf("rank %+v: %s differs from its share of HF %s", r, x.name, hfName)
			}
			blocks++
		}
		if last && nInner != len(dec0) {
			t.Errorf("rank %+v: %d MTP transformer tensors, decoder layer 0 has %d on the first stage", r, nInner, len(dec0))
		}
		if last && n.PP > 1 && !hasEmbedding {
			t.Errorf("rank %+v: the last stage has no word embeddings (MTP needs them)", r)
		}
	}
	if inner == 0 || blocks != 4*n.TP*n.EP {
		t.Errorf("%d MTP transformer tensors and %d block tensors compared, want some and %d", inner, blocks, 4*n.TP*n.EP)
	}
}

func mcaConfigValue(t *testing.T, dir, key string) any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "mca_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m[key]
}

func TestMTPLayers(t *testing.T) {
	t.Parallel()
	layouts := []struct {
		name string
		l    exec.Layout
	}{
		{"tp1", exec.Layout{}},
		{"tp2", exec.Layout{TP: 2}},
		{"pp2", exec.Layout{PP: 2}},
		{"pp2vpp2", exec.Layout{PP: 2, VPP: 2}},
		{"tp2ep2", exec.Layout{TP: 2, EP: 2}},
	}
	for _, style := range []string{"trailing", "prefixed", "fused"} {
		t.Run(style, func(t *testing.T) {
			m := mtpModel(t, "mtp_"+style)
			c := newMTPCheckpoint(style)
			for _, lc := range layouts {
				t.Run(lc.name, func(t *testing.T) {
					dir := t.TempDir()
					hf, mca, back := filepath.Join(dir, "hf"), filepath.Join(dir, "mca"), filepath.Join(dir, "back")
					c.write(t, hf)
					r, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{Layout: lc.l})
					if err != nil {
						t.Fatalf("HF -> MCA: %v", err)
					}
					for _, pr := range r.Plan.Problems {
						t.Errorf("plan problem: %v", pr)
					}
					if got := mcaConfigValue(t, mca, "mtp_num_layers"); got != float64(1) {
						t.Errorf("mtp_num_layers = %v, want 1", got)
					}
					checkMTPPlacement(t, c, mca, lc.l)
					if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
						t.Fatalf("MCA -> HF: %v", err)
					}
					compareCheckpoints(t, hf, back, r.Plan)
					y, err := safetensors.OpenSharded(back)
					if err != nil {
						t.Fatal(err)
					}
					defer y.Close()
					for name := range c.inner {
						if _, ok := y.Lookup(name); !ok {
							t.Errorf("MTP tensor %s did not come back", name)
						}
					}
					for _, name := range c.extra {
						if _, ok := y.Lookup(name); ok {
							t.Errorf("ignored %s came back", name)
						}
					}
				})
			}
		})
	}
}

func readJSONFile(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func mtpCountKey(style string) string {
	if style == "trailing" {
		return "num_nextn_predict_layers"
	}
	return "mtp_num_hidden_layers"
}

// TestMTPNoMTP: with Model.NoMTP (convert --no-mtp) HF -> MCA leaves every
// MTP weight out, counts them, and writes mtp_num_layers null; MCA -> HF
// gives back everything else bit-exact with the HF MTP count 0; and an
// MCA checkpoint with MTP layers converts back without them.
func TestMTPNoMTP(t *testing.T) {
	for _, style := range []string{"trailing", "prefixed"} {
		t.Run(style, func(t *testing.T) {
			c := newMTPCheckpoint(style)
			nMTP := len(c.inner) + len(c.block) + len(c.extra)
			dir := t.TempDir()
			hf, mca, back := filepath.Join(dir, "hf"), filepath.Join(dir, "mca"), filepath.Join(dir, "back")
			c.write(t, hf)
			m := mtpModel(t, "mtp_"+style)
			m.NoMTP = true
			r, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{Layout: exec.Layout{TP: 2, PP: 2}})
			if err != nil {
				t.Fatalf("HF -> MCA --no-mtp: %v", err)
			}
			if rep := r.Plan.Report(); rep.SkippedMTP != nMTP || len(r.Plan.SkippedMTP) != nMTP || rep.SkippedMTPBytes <= 0 {
				t.Errorf("skipped %d MTP tensors (report %d, %d bytes), want %d", len(r.Plan.SkippedMTP), rep.SkippedMTP, rep.SkippedMTPBytes, nMTP)
			}
			var sum strings.Builder
			r.Plan.WriteSummary(&sum)
			if !strings.Contains(sum.String(), "(MTP left out)") {
				t.Errorf("summary does not count the MTP weights left out:\n%s", sum.String())
			}
			if v, ok := readJSONFile(t, filepath.Join(mca, "mca_config.json"))["mtp_num_layers"]; !ok || v != nil {
				t.Errorf("mtp_num_layers = %v (present %v), want null", v, ok)
			}
			for rank, ts := range rankTensors(t, mca) {
				for _, x := range ts {
					if strings.Contains(x.Name, "mtp.") {
						t.Errorf("%s holds %s with --no-mtp", rank, x.Name)
					}
				}
			}
			if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
				t.Fatalf("MCA -> HF: %v", err)
			}
			p := *r.Plan
			p.Ignored = append(append([]int(nil), p.Ignored...), p.SkippedMTP...)
			compareCheckpoints(t, hf, back, &p) // MTP tensors must not come back
			if v := readJSONFile(t, filepath.Join(back, "config.json"))[mtpCountKey(style)]; v != float64(0) {
				t.Errorf("HF %s = %v, want 0", mtpCountKey(style), v)
			}

			// A full MTP checkpoint converted back with --no-mtp.
			full, back2 := filepath.Join(dir, "full"), filepath.Join(dir, "back2")
			withMTP := mtpModel(t, "mtp_"+style)
			if _, err := exec.ConvertHFToMCA(context.Background(), withMTP, hf, full, exec.Options{Layout: exec.Layout{EP: 2}}); err != nil {
				t.Fatal(err)
			}
			r2, err := exec.ConvertMCAToHF(context.Background(), m, full, back2, exec.Options{})
			if err != nil {
				t.Fatalf("MCA -> HF --no-mtp: %v", err)
			}
			if len(r2.Plan.SkippedMTP) == 0 {
				t.Error("MCA -> HF --no-mtp skipped no MTP tensor")
			}
			compareCheckpoints(t, hf, back2, &p)
			if v := readJSONFile(t, filepath.Join(back2, "config.json"))[mtpCountKey(style)]; v != float64(0) {
				t.Errorf("HF %s = %v, want 0", mtpCountKey(style), v)
			}
		})
	}
}

// TestMTPErrors: checkpoints whose MTP layers do not fit the template or
// the config are refused before anything is written, naming what is
// wrong.
func TestMTPErrors(t *testing.T) {
	attn := func(hfLayer string) []string {
		var out []string
		for _, n := range []string{"q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"} {
			out = append(out, hfLayer+"self_attn."+n+".weight")
		}
		return out
	}
	for _, tc := range []struct {
		name, style string
		drop        []string
		mtp         int
		want        string
		reshape     map[string]tensor.Shape
	}{
		{"eh_proj misshapen", "prefixed", nil, 1, `mtp.layers.0.eh_proj.weight has shape [64, 64]; want [64, 128] (hidden_size, 2 × hidden_size) [rename op #16 (testdata/mtp.rolltpl:66:9)]: "mtp.fc.weight"`, map[string]tensor.Shape{"mtp.fc.weight": {mtpH, mtpH}}},
		{"MTP attention misshapen", "trailing", nil, 1, `mtp.layers.0.mtp_model_layer.self_attention.linear_proj.weight has shape [64, 80]; want [64, 64]`, map[string]tensor.Shape{"model.layers.4.self_attn.o_proj.weight": {mtpH, mtpH + 16}}},
		{"no eh_proj", "trailing", []string{"model.layers.4.eh_proj.weight"}, 1, `MTP layer 0 (names model.layers.4.*) has no .eh_proj.weight`, nil},
		{"no final norm", "prefixed", []string{"mtp.norm.weight"}, 1, `has no .final_layernorm.weight`, nil},
		{"no attention", "prefixed", attn("mtp.layers.0."), 1, `MTP layer 0 (names mtp.layers.0.* and mtp.*) lacks what every decoder layer of its kind has: qkv op`, nil},
		{"half an attention", "trailing", []string{"model.layers.4.self_attn.k_proj.weight"}, 1, `model.layers.4.self_attn.k_proj.weight`, nil},
		{"config says none", "trailing", nil, 0, `an MTP weight (MTP layer 0), but mtp_num_layers is 0: map the HF key of mtp_num_layers, or convert with --no-mtp`, nil},
		{"config says two", "trailing", nil, 2, `mtp_num_layers is 2 but the checkpoint has no tensors of MTP layer 1 (names model.layers.5.*)`, nil},
		{"prefixed two", "prefixed", nil, 2, `one MTP layer only`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newMTPCheckpoint(tc.style)
			c.mtp = tc.mtp
			for i, sp := range c.specs {
				if s, ok := tc.reshape[sp.Name]; ok {
					c.specs[i].Shape = s
				}
			}
			hf := filepath.Join(t.TempDir(), "hf")
			c.write(t, hf, tc.drop...)
			m := mtpModel(t, "mtp_"+tc.style)
			cp, err := exec.PlanConversion(m, hf, exec.Layout{})
			if err != nil {
				t.Fatal(err)
			}
			perr := cp.Plan.Err()
			if perr == nil || !strings.Contains(perr.Error(), tc.want) {
				t.Errorf("plan error %v, want one containing %q", perr, tc.want)
			}
			out := filepath.Join(filepath.Dir(hf), "mca")
			if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, out, exec.Options{}); err == nil {
				t.Error("conversion succeeded")
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("refused conversion left %s (%v)", out, err)
			}
		})
	}
}

// TestMTPLayerCondition: a per-layer name condition (mtp_cond's input
// norm) sees layer = num_layers + i in MTP layer i, and the MTP layer's
// name comes back to its HF name.
func TestMTPLayerCondition(t *testing.T) {
	dir := t.TempDir()
	m := mtpModel(t, "mtp_cond") // testdata/mtp.rolltpl
	c := newMTPCheckpoint("trailing")
	c.modelType = "mtp_cond"
	hf, mca, back := filepath.Join(dir, "hf"), filepath.Join(dir, "mca"), filepath.Join(dir, "back")
	c.write(t, hf)
	r, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{Layout: exec.Layout{PP: 2}})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, st := range r.Plan.Steps {
		for _, o := range st.Outputs {
			names[o.Name] = true
		}
	}
	for name, want := range map[string]bool{
		"mtp.layers.0.mtp_model_layer.input_layernorm.weight":                      true,
		"mtp.layers.0.mtp_model_layer.self_attention.linear_qkv.layer_norm_weight": false,
		"decoder.layers.3.self_attention.linear_qkv.layer_norm_weight":             true,
		"decoder.layers.3.input_layernorm.weight":                                  false,
	} {
		if names[name] != want {
			t.Errorf("output %s: %v, want %v", name, names[name], want)
		}
	}
	if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	compareCheckpoints(t, hf, back, r.Plan)
}

// TestMTPTiedEmbeddings: with tied embeddings (no lm_head) the MTP layer
// converts the same way; the last pipeline stage holds the word
// embeddings twice, as megatron-core's GPTModel has them there with MTP
// layers: embedding.word_embeddings.weight (the MTP layer's input) and the
// tied output_layer.weight (ROLL's DistConverter writes only the latter).
func TestMTPTiedEmbeddings(t *testing.T) {
	for _, style := range []string{"trailing", "prefixed"} {
		t.Run(style, func(t *testing.T) {
			c := newMTPCheckpoint(style)
			c.tied = true
			dir := t.TempDir()
			hf, mca, back := filepath.Join(dir, "hf"), filepath.Join(dir, "mca"), filepath.Join(dir, "back")
			c.write(t, hf)
			m := mtpModel(t, "mtp_"+style)
			l := exec.Layout{TP: 2, PP: 2}
			r, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{Layout: l})
			if err != nil {
				t.Fatal(err)
			}
			checkMTPPlacement(t, c, mca, l)
			// The last stage: the embedding (read by the MTP layer) and the
			// tied LM head, both the rank's rows of the embedding.
			n := 0
			for r, ts := range rankTensorsByRank(t, mca, l.Normalized()) {
				byName := map[string][]byte{}
				for _, x := range ts {
					byName[x.name] = x.data
				}
				emb, hasEmb := byName["embedding.word_embeddings.weight"]
				head, hasHead := byName["output_layer.weight"]
				switch {
				case r.PP == 0 && (!hasEmb || hasHead):
					t.Errorf("rank %+v: first stage has embedding %v, output layer %v", r, hasEmb, hasHead)
				case r.PP == 1 && (!hasEmb || !hasHead || !bytes.Equal(emb, head)):
					t.Errorf("rank %+v: last stage has embedding %v, output layer %v (equal: %v); want both, equal", r, hasEmb, hasHead, bytes.Equal(emb, head))
				case r.PP == 1:
					n++
				}
			}
			if n != l.TP {
				t.Errorf("%d last-stage ranks checked, want %d", n, l.TP)
			}
			if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
				t.Fatal(err)
			}
			compareCheckpoints(t, hf, back, r.Plan)
		})
	}
}

// TestMTPMissingInMCA: an MCA checkpoint whose config says it has an MTP
// layer but whose rank files have none (converted with --no-mtp, then
// its mtp_num_layers edited) is refused MCA -> HF, naming the layer.
func TestMTPMissingInMCA(t *testing.T) {
	c := newMTPCheckpoint("trailing")
	dir := t.TempDir()
	hf, mca := filepath.Join(dir, "hf"), filepath.Join(dir, "mca")
	c.write(t, hf)
	m := mtpModel(t, "mtp_trailing")
	m.NoMTP = true
	if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(mca, "mca_config.json")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"mtp_num_layers": null`), []byte(`"mtp_num_layers": 1`), 1)
	writeFile(t, cfgPath, b)
	cp, err := exec.PlanConversion(mtpModel(t, "mtp_trailing"), mca, exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	want := "mtp_num_layers is 1 but the checkpoint has no tensors of MTP layer 0 (names mtp.layers.0.*)"
	if perr := cp.Plan.Err(); perr == nil || !strings.Contains(perr.Error(), want) {
		t.Errorf("plan error %v, want one containing %q", perr, want)
	}
}

// TestMTPFirstLayerErrors: mtp_first_layer values a conversion cannot use
// are plan errors naming the field's position.
func TestMTPFirstLayerErrors(t *testing.T) {
	c := newMTPCheckpoint("trailing")
	hf := filepath.Join(t.TempDir(), "hf")
	c.write(t, hf)
	lit := func(v ir.Value) *ir.Expr { return &ir.Expr{Kind: ir.ExprLit, Lit: v} }
	for _, tc := range []struct {
		name string
		expr *ir.Expr
		want string
	}{
		{"below num_layers", lit(ir.IntValue(2)), "is 2; HF keeps MTP layers after the 4 decoder layers (num_layers), so it is at least 4"},
		{"missing key", &ir.Expr{Kind: ir.ExprField, Name: "num_mtp_start", Args: []*ir.Expr{{Kind: ir.ExprRef, Name: "hf"}}}, "is None, not a layer index"},
		{"a string", lit(ir.StringValue("4")), `is '4', not a layer index`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mtpModel(t, "mtp_trailing")
			prog := *mtpProg
			tp := *prog.Template("mtp_trailing")
			tp.MTP = &ir.MTP{FirstLayer: tc.expr, Span: tp.MTP.Span}
			prog.Templates = []*ir.Template{&tp}
			m, err := exec.NewModel(&prog, "mtp_trailing", nil)
			if err != nil {
				t.Fatal(err)
			}
			cp, err := exec.PlanConversion(m, hf, exec.Layout{})
			if err != nil {
				t.Fatal(err)
			}
			perr := cp.Plan.Err()
			if perr == nil || !strings.Contains(perr.Error(), "mtp_first_layer (testdata/mtp.rolltpl:") || !strings.Contains(perr.Error(), tc.want) {
				t.Errorf("plan error %v, want mtp_first_layer's position and %q", perr, tc.want)
			}
		})
	}
}
