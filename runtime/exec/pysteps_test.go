package exec_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/internal/torchtest"
	"github.com/rolltpl/rolltpl/lang/diag"
	rexec "github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/stdlib"
)

// stepCase is one op with tensor steps, its MCA config and HF inputs.
type stepCase struct {
	name     string
	op       string // the op as written in a weights block
	mca      map[string]int64
	inputs   []tensor.Shape
	backward bool // the steps can be inverted
}

// stepCases builds the cross-check cases: every step kind (split, chunk,
// cat, reshape, transpose, slice) feeding rename, stack, concat and qkv,
// each with combos random size combinations.
func stepCases(rng *rand.Rand, combos int) []stepCase {
	n := func(lo, hi int) int64 { return int64(lo + rng.IntN(hi-lo+1)) }
	var out []stepCase
	for k := range combos {
		ng, r, d := n(1, 3), n(1, 3), n(1, 4)
		h, f := n(2, 6), n(2, 7)
		mca := map[string]int64{"num_layers": 1, "hidden_size": h, "num_attention_heads": ng * r, "num_query_groups": ng, "kv_channels": d, "ffn_hidden_size": f}
		a, b, c := n(1, 5), n(1, 5), n(1, 4)
		parts := n(2, 4)
		dim := []int{0, 1, -1}[rng.IntN(3)]
		chunkShape := tensor.Shape{a, b}
		chunkShape[(dim+2)%2] *= parts
		catDim := rng.IntN(2)
		catIn := []tensor.Shape{{a, c}, {b, c}}
		if catDim == 1 {
			catIn = []tensor.Shape{{c, a}, {c, b}}
		}
		start := rng.Int64N(a)
		stop := start + 1 + rng.Int64N(a-start)
		add := func(name, op string, backward bool, in ...tensor.Shape) {
			out = append(out, stepCase{name: fmt.Sprintf("%s_%d", name, k), op: op, mca: mca, inputs: in, backward: backward})
		}
		add("split_stack", fmt.Sprintf(`stack split(".w", [mca.ffn_hidden_size, %d]) -> ".m"`, a), true, tensor.Shape{f + a, h})
		add("chunk_stack", fmt.Sprintf(`stack chunk(".w", %d, dim = %d) -> ".m"`, parts, dim), true, chunkShape)
		add("split_qkv", `qkv split(".w", [mca.num_attention_heads * mca.kv_channels, mca.num_query_groups * mca.kv_channels, mca.num_query_groups * mca.kv_channels]) -> ".m"`,
			true, tensor.Shape{(ng*r + 2*ng) * d, h})
		add("cat_chunk", `rename cat(chunk(".w", 2), dim = 1, sizes = [mca.hidden_size, mca.hidden_size]) -> ".m"`, true, tensor.Shape{2 * a, h})
		add("reshape_transpose", fmt.Sprintf(`rename reshape(transpose(reshape(".w", [%d, %d, mca.hidden_size], from = [-1, mca.hidden_size]), 0, 1), [-1, mca.hidden_size]) -> ".m"`, a, b),
			true, tensor.Shape{a * b, h})
		add("cat_leaves", fmt.Sprintf(`rename cat(".w", ".v", dim = %d, sizes = [%d, %d]) -> ".m"`, catDim, a, b), true, catIn...)
		add("chunk_concat", `concat(dim = 0) chunk(".w", 2, dim = 1) -> ".m"`, true, tensor.Shape{b, 2 * a})
		add("transpose_neg", `rename transpose(".w", -1, 0) -> ".m"`, true, tensor.Shape{a, b, c})
		add("transpose_split_stack", fmt.Sprintf(`stack split(transpose(".w", 0, 1), [%d, mca.hidden_size - 1]) -> ".m"`, a), true, tensor.Shape{c, a + h - 1})
		add("slice", fmt.Sprintf(`rename slice(".w", %d, %d, dim = 0) -> ".m"`, start, stop), false, tensor.Shape{a, c})
	}
	return out
}

// TestGeneratedStepOpsMatchRuntime builds the ConverOp subclasses
// `rolltplc build` emits for ops with tensor steps, runs them with torch
// against stand-ins for ROLL's ConverOp contract, and requires the same
// tensors (shapes, StackedTensors structure, bytes) as the Go runtime's
// ops.Composite on the same random float32 tensors, HF -> MCA and back
// (which must also restore the inputs), for every step kind with 20 random
// size combinations.
func TestGeneratedStepOpsMatchRuntime(t *testing.T) {
	cases := stepCases(rand.New(rand.NewPCG(7, 11)), 20)
	var src strings.Builder
	src.WriteString("import \"parallel\"\n")
	for i, c := range cases {
		fmt.Fprintf(&src, "template stepcase%d {\n    layer_prefix = \"model.layers.\"\n    weights {\n        %s\n    }\n    parallel { duplicated \".m\" }\n}\n", i, c.op)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "steps.rolltpl")
	if err := os.WriteFile(file, []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	res := compiler.Compile([]string{file}, compiler.Options{Lib: stdlib.Templates()})
	for _, d := range res.Diags {
		// The cases set no config section (the sizes come from the test's
		// MCA config), slice cannot be inverted, and the stacks land in a
		// duplicated weight (the test runs the ops, not ROLL's
		// DistConverter, which would refuse them).
		if d.Severity == diag.Error && d.Code != "missing-config" && d.Code != "not-invertible" && d.Code != "layout-mismatch" {
			t.Fatalf("%s", d.Error())
		}
	}
	files, err := pyemit.Emit(res.Program)
	if err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(dir, "stepbuild")
	if err := os.Mkdir(build, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(build, f.Name), f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The Go runtime, and the inputs for Python.
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	type goResult struct {
		in       []tensor.Tensor
		mca, hf  []ops.Value
		mcaError error
	}
	results := make([]goResult, len(cases))
	var manifest []map[string]any
	for i, c := range cases {
		mt := fmt.Sprintf("stepcase%d", i)
		op := res.Program.Template(mt).Ops[0]
		cfgText, _ := json.Marshal(c.mca)
		mc, err := rexec.ParseMCAConfig("mca_config.json", cfgText)
		if err != nil {
			t.Fatal(err)
		}
		comp, err := rexec.ComposeOp(op, mc)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var inputs []map[string]any
		var vals []ops.Value
		for j, shape := range c.inputs {
			tt := randomF32(t, rng, shape)
			results[i].in = append(results[i].in, tt)
			vals = append(vals, ops.TensorValue(tt))
			f := fmt.Sprintf("%s_in_%d.bin", c.name, j)
			if err := os.WriteFile(filepath.Join(data, f), tt.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			inputs = append(inputs, map[string]any{"name": op.HF[j].Value, "file": f, "shape": shape})
		}
		cfg := mc.OpsConfig()
		results[i].mca, results[i].mcaError = comp.Apply(ops.HFToMCA, cfg, vals)
		if results[i].mcaError != nil {
			t.Fatalf("%s: Go HF -> MCA: %v", c.name, results[i].mcaError)
		}
		if c.backward {
			hf, err := comp.Apply(ops.MCAToHF, cfg, results[i].mca)
			if err != nil {
				t.Fatalf("%s: Go MCA -> HF: %v", c.name, err)
			}
			results[i].hf = hf
			for j, v := range hf {
				if !bytes.Equal(v.Tensor.Bytes(), results[i].in[j].Bytes()) || !sameShape(v.Tensor.Shape, c.inputs[j]) {
					t.Errorf("%s: Go round trip changed HF input %d", c.name, j)
				}
			}
		}
		manifest = append(manifest, map[string]any{"case": c.name, "model_type": mt, "op": 0, "mca": c.mca, "inputs": inputs, "backward": c.backward})
	}
	casesJSON := filepath.Join(data, "cases.json")
	text, _ := json.Marshal(manifest)
	if err := os.WriteFile(casesJSON, text, 0o644); err != nil {
		t.Fatal(err)
	}

	torchtest.Run(t, func(t *testing.T, python string) {
		cmd := torchtest.Command(python, filepath.Join("testdata", "run_step_ops.py"), build, casesJSON, data)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.Output()
		if err != nil {
			t.Fatalf("run_step_ops.py: %v\n%s", err, stderr.String())
		}
		type part struct {
			File  string  `json:"file"`
			Shape []int64 `json:"shape"`
		}
		type entry struct {
			Name    string `json:"name"`
			Stacked bool   `json:"stacked"`
			Dim     int    `json:"dim"`
			Parts   []part `json:"parts"`
		}
		var report map[string]struct {
			Class string  `json:"class"`
			MCA   []entry `json:"mca"`
			HF    []entry `json:"hf"`
			Error string  `json:"error"`
		}
		if err := json.Unmarshal(stdout, &report); err != nil {
			t.Fatalf("run_step_ops.py output: %v\n%s", err, stdout)
		}
		compare := func(c stepCase, side string, got []entry, want []ops.Value) {
			if len(got) != len(want) {
				t.Errorf("%s %s: python returned %d tensors, Go %d", c.name, side, len(got), len(want))
				return
			}
			for k, e := range got {
				w := want[k]
				comps := []tensor.Tensor{w.Tensor}
				if w.IsStacked() {
					comps = w.Stacked.Components
					if !e.Stacked || e.Dim != w.Stacked.Dim {
						t.Errorf("%s %s[%d]: python stacked=%v dim %d, Go StackedTensors dim %d", c.name, side, k, e.Stacked, e.Dim, w.Stacked.Dim)
					}
				} else if e.Stacked {
					t.Errorf("%s %s[%d]: python returned StackedTensors, Go a tensor", c.name, side, k)
				}
				if len(e.Parts) != len(comps) {
					t.Errorf("%s %s[%d]: python %d components, Go %d", c.name, side, k, len(e.Parts), len(comps))
					continue
				}
				for j, p := range e.Parts {
					b, err := os.ReadFile(filepath.Join(data, p.File))
					if err != nil {
						t.Fatal(err)
					}
					if !sameShape(comps[j].Shape, p.Shape) || !bytes.Equal(b, comps[j].Bytes()) {
						t.Errorf("%s %s[%d.%d]: python %v, Go %v: bytes differ or shapes", c.name, side, k, j, p.Shape, comps[j].Shape)
					}
				}
			}
		}
		for i, c := range cases {
			r, ok := report[c.name]
			switch {
			case !ok:
				t.Errorf("%s: no python result", c.name)
				continue
			case r.Error != "":
				t.Errorf("%s (%s): python: %s", c.name, r.Class, r.Error)
				continue
			case !strings.Contains(r.Class, "Steps"):
				t.Errorf("%s: python ran %s, not a generated class", c.name, r.Class)
			}
			compare(c, "HF -> MCA", r.MCA, results[i].mca)
			if c.backward {
				compare(c, "MCA -> HF", r.HF, results[i].hf)
			}
		}
	})
}

func sameShape(a tensor.Shape, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// randomF32 returns a float32 tensor of normal random values.
func randomF32(t *testing.T, rng *rand.Rand, shape tensor.Shape) tensor.Tensor {
	t.Helper()
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	buf := make([]byte, 4*n)
	for i := int64(0); i < n; i++ {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(float32(rng.NormFloat64())))
	}
	tt, err := tensor.New(tensor.F32, shape, buf)
	if err != nil {
		t.Fatal(err)
	}
	return tt
}
