package fp8

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// roundTrips dequantizes every finite code with each scale of ss to out
// and quantizes it back with the same scale, and returns an error naming
// the first scale and code that does not come back. The scales are the
// rows of one weight, a block per row, so that one call checks many.
func roundTrips(out tensor.DType, ss []float32, codes []byte) error {
	nc := int64(len(codes))
	l := NewLayout(tensor.Shape{int64(len(ss)), nc}, [2]int64{1, nc})
	all := make([]byte, int64(len(ss))*nc)
	for i := range ss {
		copy(all[int64(i)*nc:], codes)
	}
	vals := make([]byte, len(all)*out.Size())
	if err := l.Dequantize("w", vals, out, all, 0, ss); err != nil {
		return fmt.Errorf("scales %v..%v: %v", ss[0], ss[len(ss)-1], err)
	}
	back := make([]byte, len(all))
	if err := l.QuantizeReuse("w", back, out, vals, ss); err != nil {
		return fmt.Errorf("scales %v..%v: %v", ss[0], ss[len(ss)-1], err)
	}
	for k := range all {
		if back[k] != all[k] {
			s := ss[int64(k)/nc]
			return fmt.Errorf("%v, scale %v (0x%08X): code 0x%02X came back 0x%02X", out, s, math.Float32bits(s), all[k], back[k])
		}
	}
	return nil
}

// roundTrip checks every finite code with every scale of ss (see
// roundTrips), in batches spread over GOMAXPROCS goroutines, and fails
// the test with the first failure in the order of ss.
func roundTrip(t *testing.T, out tensor.DType, ss []float32, codes []byte) {
	t.Helper()
	const batch = 2048
	errs := make([]error, (len(ss)+batch-1)/batch)
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				errs[i] = roundTrips(out, ss[i*batch:min((i+1)*batch, len(ss))], codes)
			}
		})
	}
	for i := range errs {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func finiteCodes() []byte {
	var codes []byte
	for b := range 256 {
		if !tensor.E4M3IsNaN(uint8(b)) {
			codes = append(codes, uint8(b))
		}
	}
	return codes
}

// TestReuseTheorem is lora-fp8.md §2.5's theorem, exhaustively: for every
// finite code q and every positive BF16 scale in [2^-117, 2^119], and for
// 10^6 random F32 scales, enc(dequant(q, s) ⊘ s) = q, through BF16 (and
// F32 for some).
func TestReuseTheorem(t *testing.T) {
	codes := finiteCodes()
	var ss []float32
	for h := uint16(0); h < 0x7F80; h++ {
		s := tensor.BF16ToF32(h)
		if s < MinScale || s > 0x1p119 {
			continue
		}
		ss = append(ss, s)
	}
	if len(ss) < 30000 {
		t.Fatalf("only %d BF16 scales tried", len(ss))
	}
	roundTrip(t, tensor.BF16, ss, codes)
	r := rand.New(rand.NewPCG(7, 8))
	count := 1_000_000 // random scales (x 254 codes)
	if testing.Short() {
		count = 20000
	}
	ss = ss[:0]
	for range count {
		s := float32(math.Ldexp(1+r.Float64(), r.IntN(236)-117))
		if s < MinScale || s > 0x1p119 {
			continue
		}
		ss = append(ss, s)
	}
	roundTrip(t, tensor.BF16, ss, codes)
	ss = ss[:0]
	for range 1000 {
		ss = append(ss, float32(math.Ldexp(1+r.Float64(), r.IntN(40)-30)))
	}
	roundTrip(t, tensor.F32, ss, codes)
}

// TestDequantizeEdgeBlocks checks partial edge blocks and leading axes
// against a direct per-element computation.
func TestDequantizeEdgeBlocks(t *testing.T) {
	for _, shape := range []tensor.Shape{{130, 7}, {5, 300}, {1, 1}, {2, 130, 260}} {
		grid, _ := Grid(shape, [2]int64{128, 128})
		l, codes, scales := randomWeight(rand.New(rand.NewPCG(uint64(len(shape)), 3)), shape, 20)
		n := shape.NumElements()
		got := make([]byte, 2*n)
		if err := l.Dequantize("w", got, tensor.BF16, codes, 0, scales); err != nil {
			t.Fatal(err)
		}
		gm, gn := grid[len(grid)-2], grid[len(grid)-1]
		M, N := shape[len(shape)-2], shape[len(shape)-1]
		for k := int64(0); k < n; k++ {
			lead, i, j := k/(M*N), (k/N)%M, k%N
			s := scales[lead*gm*gn+(i/128)*gn+j/128]
			want := tensor.F32ToBF16(tensor.E4M3ToF32(codes[k]) * s)
			if g := binary.LittleEndian.Uint16(got[2*k:]); g != want {
				t.Fatalf("%v: element %d: 0x%04X, want 0x%04X", shape, k, g, want)
			}
		}
		// Any run of elements (blocks of a stream) gives the same bytes.
		for _, step := range []int64{1, 7, N, 129, 1000} {
			for e := int64(0); e < n; e += step {
				c := min(step, n-e)
				part := make([]byte, 2*c)
				if err := l.Dequantize("w", part, tensor.BF16, codes[e:e+c], e, scales); err != nil {
					t.Fatal(err)
				}
				if string(part) != string(got[2*e:2*(e+c)]) {
					t.Fatalf("%v: elements %d+%d differ when dequantized alone", shape, e, c)
				}
			}
		}
	}
}

// TestDataErrors: NaN codes, bad scales, F16 overflow, reuse overflow.
func TestDataErrors(t *testing.T) {
	l := NewLayout(tensor.Shape{2, 3}, [2]int64{128, 128})
	err := l.Dequantize("m.w", make([]byte, 12), tensor.BF16, []byte{0, 1, 2, 3, 0xFF, 5}, 0, []float32{1})
	var de *DataError
	if !errors.As(err, &de) || de.Code != CodeNaN || !strings.Contains(err.Error(), `"m.w"`) || !strings.Contains(err.Error(), "[1, 1]") {
		t.Errorf("NaN code: %v", err)
	}
	err = l.Dequantize("m.w", make([]byte, 12), tensor.F16, []byte{0, 1, 2, 3, 0x7E, 5}, 0, []float32{1000})
	if err == nil || !strings.Contains(err.Error(), "F16") {
		t.Errorf("F16 overflow: %v", err)
	}
	for _, bad := range []float32{0, -1, float32(math.Inf(1)), float32(math.NaN())} {
		b := make([]byte, 4)
		binary.LittleEndian.PutUint32(b, math.Float32bits(bad))
		if _, err := Scales("m.w_scale_inv", tensor.F32, tensor.Shape{1, 1}, b); err == nil || !strings.Contains(err.Error(), "not a finite positive") {
			t.Errorf("scale %v: %v", bad, err)
		}
	}
	src := EncodeScales(tensor.F32, []float32{1, 2, 3, 4, 470, 6})
	err = l.QuantizeReuse("m.w", make([]byte, 6), tensor.F32, src, []float32{1})
	if !errors.As(err, &de) || de.Code != CodeReuse || !strings.Contains(err.Error(), "recompute") {
		t.Errorf("reuse overflow: %v", err)
	}
}

// TestRecompute checks amax scales, the zero block, the BF16-rounded
// scale used as stored, and edge blocks.
func TestRecompute(t *testing.T) {
	shape := tensor.Shape{3, 130}
	l := NewLayout(shape, [2]int64{2, 128})
	vals := make([]float32, 3*130)
	for k := range vals {
		vals[k] = float32(k%7) * 0.37
	}
	vals[0], vals[1] = 0, 0
	for k := 128; k < 130; k++ { // block (0, 1): zero
		vals[k], vals[130+k] = 0, 0
	}
	src := EncodeScales(tensor.F32, vals)
	codes := make([]byte, len(vals))
	sc, err := l.QuantizeRecompute("w", codes, tensor.F32, src, tensor.BF16)
	if err != nil {
		t.Fatal(err)
	}
	amax := func(r0, r1, j0, j1 int) float32 {
		var a float32
		for r := r0; r < r1; r++ {
			for j := j0; j < j1; j++ {
				a = max(a, float32(math.Abs(float64(vals[r*130+j]))))
			}
		}
		return a
	}
	want := []float32{RoundScale(tensor.BF16, amax(0, 2, 0, 128)/448), 1, RoundScale(tensor.BF16, amax(2, 3, 0, 128)/448), RoundScale(tensor.BF16, amax(2, 3, 128, 130)/448)}
	if d := cmp.Diff(want, sc); d != "" {
		t.Errorf("scales (-want +got):\n%s", d)
	}
	for k, v := range vals {
		r, j := k/130, k%130
		s := sc[(r/2)*2+j/128]
		if w := tensor.F32ToE4M3(clamp(v / s)); codes[k] != w {
			t.Fatalf("element %d: 0x%02X, want 0x%02X", k, codes[k], w)
		}
	}
}

func TestParseConfig(t *testing.T) {
	cases := []struct{ json, err string }{
		{`{}`, ""},
		{`{"quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 64]}}`, ""},
		{`{"quantization_config": {"quant_method": "compressed-tensors"}}`, `quant_method is "compressed-tensors"`},
		{`{"quantization_config": {"quant_method": "fp8", "fmt": "e5m2"}}`, `fmt is "e5m2"`},
		{`{"quantization_config": {"quant_method": "fp8", "weight_block_size": null}}`, ``},
		{`{"quantization_config": {"quant_method": "fp8", "weight_block_size": [128]}}`, `not a list of two integers`},
		{`{"quantization_config": {"quant_method": "fp8", "weight_block_size": [0, 128]}}`, `from 1 to 2^20`},
		{`{"quantization_config": {"quant_method": "fp8", "scale_fmt": "ue8m0"}}`, `scale_fmt is "ue8m0"`},
		{`{"quantization_config": 3}`, `not an object`},
	}
	for _, c := range cases {
		o, err := pyjson.ParseObject([]byte(c.json))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := ParseConfig(o)
		if c.err == "" {
			if err != nil {
				t.Errorf("%s: %v", c.json, err)
			}
			if strings.Contains(c.json, "64") && cfg.Block != [2]int64{128, 64} {
				t.Errorf("%s: block %v", c.json, cfg.Block)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want %q", c.json, err, c.err)
		}
	}
}

// blockNaming is the stdlib's default quant section, fp8_block (its
// rules live in stdlib/templates/common.rolltpl; the runtime gets them
// from the template).
var blockNaming = Naming{{Weight: "{}.weight", Scale: "{}.weight_scale_inv"}}

func TestPairs(t *testing.T) {
	cfg := &Config{Block: [2]int64{128, 128}}
	ts := []Meta{
		{"a.weight", tensor.F8E4M3, tensor.Shape{576, 300}},
		{"a.weight_scale_inv", tensor.F32, tensor.Shape{5, 3}},
		{"b.weight", tensor.F8E4M3, tensor.Shape{130, 7}},
		{"c.weight", tensor.F8E4M3, tensor.Shape{130, 7}},
		{"c.weight_scale_inv", tensor.F32, tensor.Shape{1, 1}},
		{"d.weight", tensor.F8E4M3, tensor.Shape{130, 7}},
		{"d.weight_scale_inv", tensor.I32, tensor.Shape{2, 1}},
		{"e.weight", tensor.BF16, tensor.Shape{4}},
		{"e.weight_scale_inv", tensor.F32, tensor.Shape{1}},
		{"f.weight_scale_inv", tensor.F32, tensor.Shape{1}},
		{"g.weight", tensor.F8E5M2, tensor.Shape{4, 4}},
		{"h.weight_scale", tensor.F32, tensor.Shape{}},
		{"q.weight", tensor.F8E4M3, tensor.Shape{130, 7}},
		{"q.weight_scale_inv", tensor.BF16, tensor.Shape{2, 1}},
	}
	pairs, probs := Pairs(cfg, ts, blockNaming)
	if d := cmp.Diff([]Pair{{0, 1}, {12, 13}}, pairs); d != "" {
		t.Errorf("pairs:\n%s", d)
	}
	type pr struct {
		Code   string
		Tensor string
	}
	var got []pr
	for _, p := range probs {
		got = append(got, pr{p.Code, ts[p.Tensor].Name})
	}
	want := []pr{
		{CodeScaleMissing, "b.weight"}, {CodeScaleShape, "c.weight_scale_inv"}, {CodeScaleDType, "d.weight_scale_inv"},
		{CodeNotBlock, "g.weight"}, {CodeScaleOrphan, "e.weight_scale_inv"}, {CodeScaleOrphan, "f.weight_scale_inv"}, {CodeNotBlock, "h.weight_scale"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
	_, probs = Pairs(nil, ts[:2], blockNaming)
	if len(probs) != 1 || probs[0].Code != CodeConfig {
		t.Errorf("no config: %+v", probs)
	}
}

// TestPairsByRules pairs by the template's rules, not a fixed suffix: a
// custom naming, two rules at once (fused 3-D experts with their plural
// scales, the leading axis carried into the grid), a weight no rule
// names, a scale of a naming the rules lack, and no rules at all.
func TestPairsByRules(t *testing.T) {
	cfg := &Config{Block: [2]int64{128, 128}}
	naming := Naming{
		{Weight: "{}.weight", Scale: "{}.wscale_inv"},
		{Weight: "{}.gate_up_proj", Scale: "{}.gate_up_proj_scales_inv"},
	}
	ts := []Meta{
		{"a.weight", tensor.F8E4M3, tensor.Shape{576, 300}},
		{"a.wscale_inv", tensor.BF16, tensor.Shape{5, 3}},
		{"m.experts.gate_up_proj", tensor.F8E4M3, tensor.Shape{2, 130, 260}},
		{"m.experts.gate_up_proj_scales_inv", tensor.F32, tensor.Shape{2, 2, 3}},
		{"m.experts.down_proj", tensor.F8E4M3, tensor.Shape{2, 260, 130}},
		{"b.weight", tensor.F8E4M3, tensor.Shape{4, 4}},
		{"b.weight_scale_inv", tensor.F32, tensor.Shape{1, 1}},
		{"c.wscale_inv", tensor.F32, tensor.Shape{1, 1}},
	}
	pairs, probs := Pairs(cfg, ts, naming)
	if d := cmp.Diff([]Pair{{0, 1}, {2, 3}}, pairs); d != "" {
		t.Errorf("pairs:\n%s", d)
	}
	var got []string
	for _, p := range probs {
		got = append(got, p.Code+" "+ts[p.Tensor].Name+": "+p.Msg)
	}
	want := []string{
		`fp8-scale-missing m.experts.down_proj: is F8_E4M3 but no scale rule of the template names its scale (rules: "{}.weight" -> "{}.wscale_inv", "{}.gate_up_proj" -> "{}.gate_up_proj_scales_inv"); add one to the template's quant section`,
		`fp8-scale-missing b.weight: is F8_E4M3 but has no scale "b.wscale_inv"`,
		`fp8-not-block b.weight_scale_inv: is a scale of another quantization format (per-tensor or per-channel weight_scale, input_scale, fused-expert scales_inv) or of a naming the template's quant rules ("{}.weight" -> "{}.wscale_inv", "{}.gate_up_proj" -> "{}.gate_up_proj_scales_inv") lack: only block grids those rules name are supported`,
		`fp8-scale-orphan c.wscale_inv: is a scale but the checkpoint has no weight "c.weight"`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
	if _, probs := Pairs(cfg, ts[:2], nil); len(probs) != 1 || probs[0].Code != CodeScaleMissing {
		t.Errorf("no rules: %+v", probs)
	}
	if got := naming.WeightsOf("x.gate_up_proj_scales_inv"); !cmp.Equal(got, []string{"x.gate_up_proj"}) {
		t.Errorf("WeightsOf = %v", got)
	}
}
