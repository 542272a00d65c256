// Package fp8 owns the FP8 block-quantized checkpoint format of DeepSeek-V3
// and the Qwen3 FP8 releases (lora-fp8.md Part 2): the
// quantization_config of config.json, the pairing of F8_E4M3 weights with
// their scale grids by a template's scale naming rules ([Naming]; the
// stdlib's default names X.weight's grid X.weight_scale_inv), and the
// exact arithmetic that
// dequantizes them (§2.4) and quantizes them back (§2.5).
//
// A weight X of shape [*lead, M, N] holds E4M3 codes; its scale S has
// shape [*lead, ⌈M/bm⌉, ⌈N/bn⌉] for the block [bm, bn] of
// weight_block_size, in F32, BF16 or F16. The value of element (i, j) is
// RNE_out(fl32(dec(X[i,j]) × f32(S[⌊i/bm⌋, ⌊j/bn⌋]))): one float32
// multiply, then one rounding to the output dtype. Partial edge blocks use
// their grid scale as is; nothing is padded.
//
// The package depends on runtime/tensor, runtime/pyjson and
// compiler/rollname (the "{}" matching of name patterns) only; the
// executor (runtime/exec) decides where the passes run.
package fp8

import (
	"fmt"
	"math"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// Rule is one scale naming rule of a template's quant section
// (lang/spec.md §7a): the HF name pattern of a quantized weight and that
// of its scale grid, each with one "{}" standing for the same text
// ("{}.weight" -> "{}.weight_scale_inv").
type Rule struct{ Weight, Scale string }

// Naming is a template's scale naming rules, in order. The patterns are
// matched by compiler/rollname, the one owner of the "{}" matching; a
// rule whose side has not exactly one "{}" matches nothing (the compiler
// refuses such rules).
type Naming []Rule

// ScalesOf returns the scale names the rules give a weight name, in rule
// order.
func (n Naming) ScalesOf(weight string) []string {
	var out []string
	for _, r := range n {
		if s, ok := rollname.RewriteWildcard(r.Weight, r.Scale, weight); ok {
			out = append(out, s)
		}
	}
	return out
}

// WeightsOf returns the weight names whose scale the rules say name is,
// in rule order; none when name is not a scale name.
func (n Naming) WeightsOf(scale string) []string {
	var out []string
	for _, r := range n {
		if w, ok := rollname.RewriteWildcard(r.Scale, r.Weight, scale); ok {
			out = append(out, w)
		}
	}
	return out
}

// IsScale reports whether name is a scale name under the rules.
func (n Naming) IsScale(name string) bool { return len(n.WeightsOf(name)) > 0 }

// String lists the rules as a quant section writes them.
func (n Naming) String() string {
	parts := make([]string, len(n))
	for i, r := range n {
		parts[i] = fmt.Sprintf("%q -> %q", r.Weight, r.Scale)
	}
	return strings.Join(parts, ", ")
}

// ConfigKey is the config.json key of the quantization settings.
const ConfigKey = "quantization_config"

// Config is the fp8 quantization_config of a checkpoint.
type Config struct {
	// Block is weight_block_size: rows of the output dim, columns of the
	// input dim.
	Block [2]int64
	// ScaleFmt is scale_fmt ("" or "float"; "ue8m0" is refused for now).
	ScaleFmt string
	// NotConverted lists modules_to_not_convert (cross-checked only).
	NotConverted []string
	// Value is the quantization_config object itself, restored verbatim
	// on re-quantization.
	Value *pyjson.Object
}

// ConfigError is a quantization_config the runtime does not handle: a
// quant_method other than fp8, another fmt, a malformed block size.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// ParseConfig reads quantization_config from a parsed config.json. It
// returns nil, nil when there is none.
func ParseConfig(cfg *pyjson.Object) (*Config, error) {
	v, ok := cfg.Get(ConfigKey)
	if !ok || v == nil {
		return nil, nil
	}
	o, ok := v.(*pyjson.Object)
	if !ok {
		return nil, &ConfigError{fmt.Sprintf("%s is %s, not an object", ConfigKey, pyjson.Kind(v))}
	}
	c := &Config{Block: [2]int64{128, 128}, Value: o}
	str := func(key string) (string, bool, error) {
		v, ok := o.Get(key)
		if !ok || v == nil {
			return "", false, nil
		}
		s, isStr := v.(string)
		if !isStr {
			return "", true, &ConfigError{fmt.Sprintf("%s.%s is %s, not a string", ConfigKey, key, pyjson.Kind(v))}
		}
		return s, true, nil
	}
	method, has, err := str("quant_method")
	if err != nil {
		return nil, err
	}
	if !has {
		return nil, &ConfigError{fmt.Sprintf("%s has no quant_method", ConfigKey)}
	}
	if method != "fp8" {
		return nil, &ConfigError{fmt.Sprintf("%s.quant_method is %q: only block-quantized \"fp8\" checkpoints (DeepSeek-V3, Qwen3 FP8) are supported; dequantize it with the tool that made it", ConfigKey, method)}
	}
	if f, has, err := str("fmt"); err != nil {
		return nil, err
	} else if has && f != "e4m3" {
		return nil, &ConfigError{fmt.Sprintf("%s.fmt is %q: only \"e4m3\" is supported", ConfigKey, f)}
	}
	if sf, _, err := str("scale_fmt"); err != nil {
		return nil, err
	} else if sf != "" && sf != "float" {
		return nil, &ConfigError{fmt.Sprintf("%s.scale_fmt is %q: only \"float\" scales are supported", ConfigKey, sf)}
	} else {
		c.ScaleFmt = sf
	}
	if v, ok := o.Get("weight_block_size"); ok && v != nil {
		l, isList := v.([]any)
		if !isList || len(l) != 2 {
			return nil, &ConfigError{fmt.Sprintf("%s.weight_block_size is %s, not a list of two integers: per-tensor and per-channel scales are not block quantization", ConfigKey, pyjson.Encode(v, -1, false))}
		}
		for k, e := range l {
			n, isNum := e.(pyjson.Number)
			var x int64
			if isNum {
				x, isNum = n.Int()
			}
			if !isNum || x < 1 || x > 1<<20 {
				return nil, &ConfigError{fmt.Sprintf("%s.weight_block_size is %s: each size must be an integer from 1 to 2^20", ConfigKey, pyjson.Encode(v, -1, false))}
			}
			c.Block[k] = x
		}
	}
	for _, key := range []string{"modules_to_not_convert", "ignored_layers"} {
		if v, ok := o.Get(key); ok {
			if l, ok := v.([]any); ok {
				for _, e := range l {
					if s, ok := e.(string); ok {
						c.NotConverted = append(c.NotConverted, s)
					}
				}
			}
		}
	}
	return c, nil
}

// Grid returns the scale grid shape of a weight of the given shape:
// leading axes as they are, the last two ceil-divided by the block. A
// weight of fewer than two dimensions has no grid (ok false).
func Grid(shape tensor.Shape, block [2]int64) (tensor.Shape, bool) {
	n := len(shape)
	if n < 2 {
		return nil, false
	}
	g := append(tensor.Shape(nil), shape...)
	g[n-2] = ceilDiv(shape[n-2], block[0])
	g[n-1] = ceilDiv(shape[n-1], block[1])
	return g, true
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// ScaleDTypeOK reports whether dt is a scale dtype the runtime reads.
func ScaleDTypeOK(dt tensor.DType) bool {
	return dt == tensor.F32 || dt == tensor.BF16 || dt == tensor.F16
}

// OutDTypeOK reports whether dt is a dequantization output dtype.
func OutDTypeOK(dt tensor.DType) bool {
	return dt == tensor.BF16 || dt == tensor.F16 || dt == tensor.F32
}

// Meta is a tensor's name, dtype and shape, as a header gives them.
type Meta struct {
	Name  string
	DType tensor.DType
	Shape tensor.Shape
}

// Pair is one quantized weight and its scale, as indices into the tensor
// list given to [Pairs].
type Pair struct {
	Weight, Scale int
}

// Problem codes (lora-fp8.md §2.6.4).
const (
	CodeScaleMissing = "fp8-scale-missing"
	CodeScaleOrphan  = "fp8-scale-orphan"
	CodeScaleShape   = "fp8-scale-shape"
	CodeScaleDType   = "fp8-scale-dtype"
	CodeConfig       = "fp8-config"
	CodeNotBlock     = "fp8-not-block"
	CodeNaN          = "fp8-nan"
	CodeReuse        = "fp8-reuse-overflow"
)

// Problem is a structural defect of an FP8 checkpoint, naming a tensor.
type Problem struct {
	Code   string
	Tensor int // index into the tensor list, -1 for none
	Msg    string
}

// Pairs pairs every F8_E4M3 weight of ts with its scale by the naming
// rules (the first scale they name that ts has) and checks the pair
// against cfg (nil when the
// checkpoint has no fp8 quantization_config). It returns the pairs in
// the order of their weights and every problem: an F8 weight without its
// scale, a scale without its F8 weight, a grid that is not the ceil-div
// shape, a scale dtype other than F32/BF16/F16, an F8_E5M2 tensor, F8
// tensors without an fp8 config, and other formats' scale tensors
// (per-tensor or per-channel weight_scale, input_scale).
func Pairs(cfg *Config, ts []Meta, naming Naming) ([]Pair, []Problem) {
	byName := make(map[string]int, len(ts))
	for i, t := range ts {
		byName[t.Name] = i
	}
	var pairs []Pair
	var probs []Problem
	paired := map[int]bool{}
	noConfig := false
	for i, t := range ts {
		switch t.DType {
		case tensor.F8E5M2:
			probs = append(probs, Problem{CodeNotBlock, i, "is F8_E5M2: only F8_E4M3 block-quantized weights are supported"})
			continue
		case tensor.F8E4M3:
		default:
			continue
		}
		if cfg == nil {
			if !noConfig {
				probs = append(probs, Problem{CodeConfig, i, "is F8_E4M3 but config.json has no quantization_config with quant_method \"fp8\": the scales' layout is unknown"})
				noConfig = true
			}
			continue
		}
		cands := naming.ScalesOf(t.Name)
		si, ok := -1, false
		for _, c := range cands {
			if si, ok = byName[c]; ok {
				break
			}
		}
		switch {
		case len(cands) == 0:
			probs = append(probs, Problem{CodeScaleMissing, i, fmt.Sprintf("is F8_E4M3 but no scale rule of the template names its scale (rules: %s); add one to the template's quant section", naming)})
			continue
		case !ok:
			probs = append(probs, Problem{CodeScaleMissing, i, fmt.Sprintf("is F8_E4M3 but has no scale %q", cands[0])})
			continue
		}
		paired[si] = true
		s := ts[si]
		grid, ok := Grid(t.Shape, cfg.Block)
		if !ok {
			probs = append(probs, Problem{CodeScaleShape, i, fmt.Sprintf("is F8_E4M3 of shape %v: a block-quantized weight has at least two dimensions", t.Shape)})
			continue
		}
		if !ScaleDTypeOK(s.DType) {
			probs = append(probs, Problem{CodeScaleDType, si, fmt.Sprintf("is %v: scales must be F32, BF16 or F16", s.DType)})
			continue
		}
		if !s.Shape.Equal(grid) {
			probs = append(probs, Problem{CodeScaleShape, si, fmt.Sprintf("has shape %v; the %v weight %q with blocks %dx%d needs the grid %v", s.Shape, t.Shape, t.Name, cfg.Block[0], cfg.Block[1], grid)})
			continue
		}
		pairs = append(pairs, Pair{Weight: i, Scale: si})
	}
	for i, t := range ts {
		if paired[i] {
			continue
		}
		switch {
		case naming.IsScale(t.Name):
			ws := naming.WeightsOf(t.Name)
			w := ws[0]
			for _, c := range ws {
				if _, ok := byName[c]; ok {
					w = c
					break
				}
			}
			wi, ok := byName[w]
			switch {
			case ok && ts[wi].DType != tensor.F8E4M3 && ts[wi].DType != tensor.F8E5M2:
				// Also without a config: a checkpoint cast to BF16 that
				// kept its scales (a template's scale op would copy them).
				probs = append(probs, Problem{CodeScaleOrphan, i, fmt.Sprintf("is a scale but its weight %q is %v, not F8_E4M3 (a dequantized checkpoint that kept its scales? remove them)", w, ts[wi].DType)})
			case cfg == nil:
				// The F8 weights' problem says why.
			case !ok:
				probs = append(probs, Problem{CodeScaleOrphan, i, fmt.Sprintf("is a scale but the checkpoint has no weight %q", w)})
			}
		case strings.HasSuffix(t.Name, ".weight_scale") || strings.HasSuffix(t.Name, ".input_scale") || strings.HasSuffix(t.Name, "_scales_inv") || strings.HasSuffix(t.Name, "_scale_inv"):
			if cfg != nil || hasF8(ts) {
				probs = append(probs, Problem{CodeNotBlock, i, fmt.Sprintf("is a scale of another quantization format (per-tensor or per-channel weight_scale, input_scale, fused-expert scales_inv) or of a naming the template's quant rules (%s) lack: only block grids those rules name are supported", naming)})
			}
		}
	}
	return pairs, probs
}

func hasF8(ts []Meta) bool {
	for _, t := range ts {
		if t.DType == tensor.F8E4M3 || t.DType == tensor.F8E5M2 {
			return true
		}
	}
	return false
}

// MinScale is the smallest scale whose products with every nonzero E4M3
// code are float32 normals (2^-117): below it a flush-to-zero device
// kernel and the CPU could disagree.
const MinScale = 0x1p-117

// Scales widens a scale grid (F32, BF16 or F16 bytes) to float32 and
// checks every value: finite and positive. name names the tensor in
// errors, with the grid index.
func Scales(name string, dt tensor.DType, grid tensor.Shape, data []byte) ([]float32, error) {
	n := grid.NumElements()
	if n < 0 || int64(len(data)) != n*int64(dt.Size()) {
		return nil, fmt.Errorf("scale %q: %d bytes for a %v%v grid", name, len(data), dt, grid)
	}
	out := make([]float32, n)
	for k := range out {
		var v float32
		switch dt {
		case tensor.F32:
			v = math.Float32frombits(le32(data[4*k:]))
		case tensor.BF16:
			v = tensor.BF16ToF32(le16(data[2*k:]))
		case tensor.F16:
			v = tensor.F16ToF32(le16(data[2*k:]))
		default:
			return nil, fmt.Errorf("scale %q is %v: scales must be F32, BF16 or F16", name, dt)
		}
		if !(v > 0) || math.IsInf(float64(v), 0) {
			return nil, &DataError{Code: CodeNaN, Tensor: name, Msg: fmt.Sprintf("scale %v at %s is not a finite positive number", v, gridIndex(grid, int64(k)))}
		}
		out[k] = v
	}
	return out, nil
}

// DataError is a defect found in tensor data during a pass: a NaN code, a
// non-finite or non-positive scale, a value that does not fit.
type DataError struct {
	Code   string
	Tensor string
	Msg    string
}

func (e *DataError) Error() string { return fmt.Sprintf("tensor %q: %s [%s]", e.Tensor, e.Msg, e.Code) }

// gridIndex formats the multi-index of flat position k in shape.
func gridIndex(shape tensor.Shape, k int64) string {
	idx := make([]int64, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		if shape[d] > 0 {
			idx[d] = k % shape[d]
			k /= shape[d]
		}
	}
	return tensor.Shape(idx).String()
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
