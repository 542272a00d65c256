package ops

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rolltpl/rolltpl/internal/torchtest"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// The torch cross-check: every case of [cases], in both directions, for
// BF16, F16 and F32 (and F64 for the norm), is computed by
// testdata/torch_reference.py — an independent implementation of the
// formulas of roll-converter-spec.md §2 in torch — and the results must be
// byte-identical. The test is skipped when torch cannot be imported, unless
// the environment variable CI is set. ROLLTPL_PYTHON names the interpreter
// (default /usr/bin/python3).

type tensorSpec struct {
	File  string  `json:"file,omitempty"`
	Shape []int64 `json:"shape,omitempty"`

	Stacked *stackedSpec `json:"stacked,omitempty"`
}

type stackedSpec struct {
	Dim        int          `json:"dim"`
	Components []tensorSpec `json:"components"`
}

type torchCase struct {
	ID         string         `json:"id"`
	Kind       string         `json:"kind"`
	Dir        string         `json:"dir"`
	DType      string         `json:"dtype"`
	Config     map[string]any `json:"config"`
	Op         map[string]any `json:"op"`
	Inputs     []tensorSpec   `json:"inputs"`
	FilePrefix string         `json:"file_prefix"`
}

type torchResults struct {
	TorchVersion string `json:"torch_version"`
	Cases        map[string]struct {
		Outputs []tensorSpec `json:"outputs"`
		Error   string       `json:"error"`
	} `json:"cases"`
}

func dirName(d Direction) string {
	if d == HFToMCA {
		return "hf_to_mca"
	}
	return "mca_to_hf"
}

func configMap(c Config) map[string]any {
	return map[string]any{
		"hidden_size":            c.HiddenSize,
		"num_attention_heads":    c.NumAttentionHeads,
		"num_query_groups":       c.NumQueryGroups,
		"kv_channels":            c.KVChannels,
		"linear_num_key_heads":   c.LinearNumKeyHeads,
		"linear_num_value_heads": c.LinearNumValueHeads,
		"linear_key_head_dim":    c.LinearKeyHeadDim,
		"linear_value_head_dim":  c.LinearValueHeadDim,
		"num_moe_experts":        c.NumMoEExperts,
	}
}

func writeTensor(t *testing.T, dir, name string, x tensor.Tensor) tensorSpec {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return tensorSpec{File: name, Shape: x.Shape}
}

func writeValues(t *testing.T, dir, prefix string, vs []Value) []tensorSpec {
	t.Helper()
	var specs []tensorSpec
	for i, v := range vs {
		name := fmt.Sprintf("%s.in%d", prefix, i)
		if v.Stacked == nil {
			specs = append(specs, writeTensor(t, dir, name+".bin", v.Tensor))
			continue
		}
		s := &stackedSpec{Dim: v.Stacked.Dim}
		for j, c := range v.Stacked.Components {
			s.Components = append(s.Components, writeTensor(t, dir, fmt.Sprintf("%s.%d.bin", name, j), c))
		}
		specs = append(specs, tensorSpec{Stacked: s})
	}
	return specs
}

func readTensor(dir string, dt tensor.DType, s tensorSpec) (tensor.Tensor, error) {
	data, err := os.ReadFile(filepath.Join(dir, s.File))
	if err != nil {
		return tensor.Tensor{}, err
	}
	shape := tensor.Shape(s.Shape)
	if shape == nil {
		shape = tensor.Shape{}
	}
	return tensor.New(dt, shape, data)
}

func readValues(dir string, dt tensor.DType, specs []tensorSpec) ([]Value, error) {
	var vs []Value
	for _, s := range specs {
		if s.Stacked == nil {
			x, err := readTensor(dir, dt, s)
			if err != nil {
				return nil, err
			}
			vs = append(vs, TensorValue(x))
			continue
		}
		st := tensor.Stacked{Dim: s.Stacked.Dim}
		for _, c := range s.Stacked.Components {
			x, err := readTensor(dir, dt, c)
			if err != nil {
				return nil, err
			}
			st.Components = append(st.Components, x)
		}
		vs = append(vs, StackedValue(st))
	}
	return vs, nil
}

// describeDiff explains the first difference between two value lists.
func describeDiff(got, want []Value) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d results, torch has %d", len(got), len(want))
	}
	for i := range got {
		if got[i].IsStacked() != want[i].IsStacked() {
			return fmt.Sprintf("result %d: %v, torch %v", i, got[i], want[i])
		}
		g, w := []tensor.Tensor{got[i].Tensor}, []tensor.Tensor{want[i].Tensor}
		if got[i].IsStacked() {
			if got[i].Stacked.Dim != want[i].Stacked.Dim || len(got[i].Stacked.Components) != len(want[i].Stacked.Components) {
				return fmt.Sprintf("result %d: %v, torch %v", i, got[i], want[i])
			}
			g, w = got[i].Stacked.Components, want[i].Stacked.Components
		}
		for k := range g {
			if !g[k].Shape.Equal(w[k].Shape) {
				return fmt.Sprintf("result %d.%d: shape %v, torch %v", i, k, g[k].Shape, w[k].Shape)
			}
			gb, wb := g[k].Bytes(), w[k].Bytes()
			es := g[k].DType.Size()
			for b := 0; b < len(gb) && b < len(wb); b++ {
				if gb[b] != wb[b] {
					e := b / es * es
					return fmt.Sprintf("result %d.%d: element %d is %x, torch %x", i, k, b/es, gb[e:e+es], wb[e:e+es])
				}
			}
			if len(gb) != len(wb) {
				return fmt.Sprintf("result %d.%d: %d bytes, torch %d", i, k, len(gb), len(wb))
			}
		}
	}
	return ""
}

type pending struct {
	tc   torchCase
	dt   tensor.DType
	out  []Value
	nans bool // compare NaN-ness only (see TestAgainstTorch)
}

func TestAgainstTorch(t *testing.T) { torchtest.Run(t, testAgainstTorch) }

func testAgainstTorch(t *testing.T, python string) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(21, 22))
	var runs []pending
	add := func(c opCase, dt tensor.DType, d Direction, in []Value, nans bool) {
		out, err := c.op.Apply(d, c.cfg, in)
		if err != nil {
			t.Fatalf("%s %v %v: %v", c.name, dt, d, err)
		}
		prefix := fmt.Sprintf("c%03d", len(runs))
		tc := torchCase{
			ID:     fmt.Sprintf("%s/%v/%s", c.name, dt, dirName(d)),
			Kind:   c.op.Kind,
			Dir:    dirName(d),
			DType:  dt.String(),
			Config: configMap(c.cfg),
			Op: map[string]any{"num_hf": c.op.NumHF, "num_mca": c.op.NumMCA, "dim": c.op.Dim,
				"transpose": c.op.Transpose, "hidden_size": c.op.HiddenSize},
			Inputs:     writeValues(t, dir, prefix, in),
			FilePrefix: prefix,
		}
		if nans {
			tc.ID += "/nan"
		}
		runs = append(runs, pending{tc: tc, dt: dt, out: out, nans: nans})
	}
	for _, c := range cases {
		dts := testDTypes
		if c.norm {
			dts = append(dts[:len(dts):len(dts)], tensor.F64)
		}
		for _, dt := range dts {
			for _, d := range []Direction{HFToMCA, MCAToHF} {
				shapes := c.hf
				if d == MCAToHF {
					shapes = c.mca
				}
				if shapes == nil {
					continue
				}
				add(c, dt, d, makeInputs(t, r, c, dt, shapes), false)
			}
		}
	}
	// NaN inputs of the norm: torch 1.13 writes a bf16 NaN as 0x7FC0 or
	// 0xFFFF depending on whether the element falls in the vectorised
	// part of its loop, so only NaN-ness is compared.
	normOp := Op{Kind: KindZeroCenteredRMSNorm}
	for _, dt := range testDTypes {
		x := nanTensor(t, dt)
		for _, d := range []Direction{HFToMCA, MCAToHF} {
			add(opCase{name: "zero_centered_rmsnorm", op: normOp}, dt, d, []Value{TensorValue(x)}, true)
		}
	}

	manifest := filepath.Join(dir, "manifest.json")
	var tcs []torchCase
	for _, p := range runs {
		tcs = append(tcs, p.tc)
	}
	data, err := json.Marshal(map[string]any{"cases": tcs})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, data, 0o644); err != nil {
		t.Fatal(err)
	}
	resultsPath := filepath.Join(dir, "results.json")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := torchtest.CommandContext(ctx, python, filepath.Join("testdata", "torch_reference.py"), manifest, resultsPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("torch_reference.py: %v\n%s", err, out)
	}
	data, err = os.ReadFile(resultsPath)
	if err != nil {
		t.Fatal(err)
	}
	var res torchResults
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	t.Logf("torch %s, %d cases", res.TorchVersion, len(runs))
	for _, p := range runs {
		got, ok := res.Cases[p.tc.ID]
		if !ok {
			t.Errorf("%s: no torch result", p.tc.ID)
			continue
		}
		if got.Error != "" {
			t.Errorf("%s: torch failed:\n%s", p.tc.ID, got.Error)
			continue
		}
		want, err := readValues(dir, p.dt, got.Outputs)
		if err != nil {
			t.Errorf("%s: reading torch results: %v", p.tc.ID, err)
			continue
		}
		if p.nans {
			same, msg := compareNaNs(p.out, want, p.dt)
			if msg != "" {
				t.Errorf("%s: %s", p.tc.ID, msg)
			}
			t.Logf("%s: all NaN as in torch; %d of 100 bit patterns identical", p.tc.ID, same)
			continue
		}
		if valuesEqual(p.out, want) {
			continue
		}
		t.Errorf("%s: differs from torch: %s", p.tc.ID, describeDiff(p.out, want))
	}
}

// nanTensor returns NaNs of dt with various signs and payloads, padded to
// 100 elements so that torch uses both its vectorised and scalar loops.
func nanTensor(t *testing.T, dt tensor.DType) tensor.Tensor {
	t.Helper()
	le := binary.LittleEndian
	var data []byte
	for i := 0; i < 100; i++ {
		switch dt {
		case tensor.BF16:
			data = le.AppendUint16(data, []uint16{0x7FC0, 0xFFC0, 0x7F81, 0x7FC1, 0xFFFF}[i%5])
		case tensor.F16:
			data = le.AppendUint16(data, []uint16{0x7E00, 0xFE00, 0x7C01, 0x7E01, 0xFFFF}[i%5])
		case tensor.F32:
			data = le.AppendUint32(data, []uint32{0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FC12345, 0xFFFFFFFF}[i%5])
		}
	}
	x, err := tensor.New(dt, tensor.Shape{100}, data)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// compareNaNs checks that every element of both results is a NaN and
// counts the elements whose bits agree.
func compareNaNs(got, want []Value, dt tensor.DType) (same int, msg string) {
	if len(got) != 1 || len(want) != 1 {
		return 0, "want one result"
	}
	g, w := got[0].Tensor.Bytes(), want[0].Tensor.Bytes()
	if len(g) != len(w) {
		return 0, "sizes differ"
	}
	isNaN := func(b []byte) bool {
		switch dt {
		case tensor.BF16:
			f := tensor.BF16ToF32(binary.LittleEndian.Uint16(b))
			return f != f
		case tensor.F16:
			f := tensor.F16ToF32(binary.LittleEndian.Uint16(b))
			return f != f
		}
		return math.IsNaN(float64(math.Float32frombits(binary.LittleEndian.Uint32(b))))
	}
	es := dt.Size()
	for i := 0; i < len(g); i += es {
		if !isNaN(g[i:i+es]) || !isNaN(w[i:i+es]) {
			return same, fmt.Sprintf("element %d: %x, torch %x; want both NaN", i/es, g[i:i+es], w[i:i+es])
		}
		if string(g[i:i+es]) == string(w[i:i+es]) {
			same++
		}
	}
	return same, ""
}
