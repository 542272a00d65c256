package exec

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/rolltpl/rolltpl/runtime/fp8"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// This file is the FP8 post-pass of MCA -> HF conversions (lora-fp8.md
// §2.5, §2.6.2): the HF output tensors that were F8_E4M3 in the source
// of an MCA checkpoint (its rolltpl_quantization.json says which) are
// quantized back, each followed by its scale grid under the name the
// source had (the sidecar records it: the template's quant rules paired
// them on the way in), and
// config.json gets its quantization_config back verbatim.

// Scale modes of [QuantizeOptions].
const (
	ScalesReuse     = "reuse"
	ScalesRecompute = "recompute"
)

// QuantizeOptions configure the re-quantization of MCA -> HF.
type QuantizeOptions struct {
	// Scales is ScalesReuse (the default: the source's scales, from the
	// sidecar; byte-exact for unchanged weights, refused for a block a
	// weight outgrew) or ScalesRecompute (amax/448 per block).
	Scales string
}

// quantizer re-quantizes an MCA -> HF plan's outputs.
type quantizer struct {
	recompute bool
	weights   map[string]*qWeight // by HF weight name
	isScale   map[string]bool
	scales    *safetensors.File
}

// qWeight is one weight to quantize.
type qWeight struct {
	scale   string
	scaleDT tensor.DType
	shape   tensor.Shape
	grid    tensor.Shape
	layout  fp8.Layout
	stored  []byte // the source's scale grid (mapped), for reuse
}

func (q *quantizer) close() {
	if q != nil && q.scales != nil {
		q.scales.Close()
	}
}

// sidecarWeight is one entry of the sidecar's "weights".
type sidecarWeight struct {
	name, scale string
	shape, grid tensor.Shape
	scaleDT     tensor.DType
}

// readFP8Sidecar reads rolltpl_quantization.json of the MCA checkpoint
// in dir.
func readFP8Sidecar(dir string) (*pyjson.Object, [2]int64, []sidecarWeight, error) {
	path := filepath.Join(dir, FP8SidecarName)
	var block [2]int64
	text, err := ReadConfigFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, block, nil, fmt.Errorf("%s: no %s: nothing records which weights were FP8 (the checkpoint was not converted from an FP8 one by rolltplc)", dir, FP8SidecarName)
	}
	if err != nil {
		return nil, block, nil, err
	}
	o, err := pyjson.ParseObject(text)
	if err != nil {
		return nil, block, nil, fmt.Errorf("%s: %v", path, err)
	}
	bad := func(what string) error { return fmt.Errorf("%s: %s", path, what) }
	if f, _ := o.Get("format"); f != fp8SidecarFormat {
		return nil, block, nil, bad(fmt.Sprintf("format is %v, want %q", f, fp8SidecarFormat))
	}
	ints := func(v any) (tensor.Shape, bool) {
		l, ok := v.([]any)
		if !ok {
			return nil, false
		}
		s := make(tensor.Shape, len(l))
		for i, e := range l {
			n, ok := e.(pyjson.Number)
			if !ok {
				return nil, false
			}
			if s[i], ok = n.Int(); !ok || s[i] < 0 {
				return nil, false
			}
		}
		return s, true
	}
	bv, _ := o.Get("weight_block_size")
	if b, ok := ints(bv); !ok || len(b) != 2 || b[0] < 1 || b[1] < 1 {
		return nil, block, nil, bad("weight_block_size is not two positive integers")
	} else {
		block = [2]int64{b[0], b[1]}
	}
	var cfg *pyjson.Object
	if v, ok := o.Get(fp8.ConfigKey); ok {
		cfg, _ = v.(*pyjson.Object)
	}
	wv, _ := o.Get("weights")
	list, ok := wv.([]any)
	if !ok {
		return nil, block, nil, bad("weights is not a list")
	}
	var ws []sidecarWeight
	for i, e := range list {
		eo, ok := e.(*pyjson.Object)
		if !ok {
			return nil, block, nil, bad(fmt.Sprintf("weights[%d] is not an object", i))
		}
		var w sidecarWeight
		nv, _ := eo.Get("weight")
		sv, _ := eo.Get("scale")
		dv, _ := eo.Get("scale_dtype")
		shv, _ := eo.Get("shape")
		gv, _ := eo.Get("grid")
		w.name, _ = nv.(string)
		w.scale, _ = sv.(string)
		ds, _ := dv.(string)
		var err error
		w.scaleDT, err = tensor.ParseDType(ds)
		var ok1, ok2 bool
		w.shape, ok1 = ints(shv)
		w.grid, ok2 = ints(gv)
		if w.name == "" || w.scale == "" || err != nil || !fp8.ScaleDTypeOK(w.scaleDT) || !ok1 || !ok2 {
			return nil, block, nil, bad(fmt.Sprintf("weights[%d] is malformed", i))
		}
		if g, ok := fp8.Grid(w.shape, block); !ok || !g.Equal(w.grid) {
			return nil, block, nil, bad(fmt.Sprintf("weights[%d] (%q): grid %v is not the grid of %v", i, w.name, w.grid, w.shape))
		}
		ws = append(ws, w)
	}
	return cfg, block, ws, nil
}

// prepareQuantize sets up the re-quantization of an MCA -> HF plan: the
// outputs the sidecar names become F8_E4M3, each followed by its scale
// output, and config.json gets quantization_config back. Every weight
// the sidecar names must be an output of the plan with its recorded
// shape and a float dtype; otherwise nothing is written.
func prepareQuantize(dir string, p *Plan, hfConfig []byte, qo *QuantizeOptions) (*quantizer, []byte, error) {
	switch qo.Scales {
	case "", ScalesReuse, ScalesRecompute:
	default:
		return nil, nil, fmt.Errorf("--scales %q is not reuse or recompute", qo.Scales)
	}
	cfg, block, ws, err := readFP8Sidecar(dir)
	if err != nil {
		return nil, nil, err
	}
	q := &quantizer{recompute: qo.Scales == ScalesRecompute, weights: map[string]*qWeight{}, isScale: map[string]bool{}}
	if !q.recompute {
		if q.scales, err = safetensors.Open(filepath.Join(dir, FP8ScalesName)); err != nil {
			return nil, nil, fmt.Errorf("--scales reuse: %w", err)
		}
	}
	for _, w := range ws {
		qw := &qWeight{scale: w.scale, scaleDT: w.scaleDT, shape: w.shape, grid: w.grid, layout: fp8.NewLayout(w.shape, block)}
		if q.scales != nil {
			ti, ok := q.scales.Lookup(w.scale)
			if !ok || ti.DType != w.scaleDT || !ti.Shape.Equal(w.grid) {
				q.close()
				return nil, nil, fmt.Errorf("%s: scale %q missing or not %v%v", q.scales.Path(), w.scale, w.scaleDT, w.grid)
			}
			qw.stored = q.scales.Data(ti)
			if _, err := fp8.Scales(w.scale, w.scaleDT, w.grid, qw.stored); err != nil {
				q.close()
				return nil, nil, fmt.Errorf("%s: %w", q.scales.Path(), err)
			}
		}
		q.weights[w.name] = qw
		q.isScale[w.scale] = true
	}
	found := map[string]bool{}
	for si := range p.Steps {
		st := &p.Steps[si]
		var outs []Output
		for _, o := range st.Outputs {
			qw := q.weights[o.Name]
			if qw == nil {
				if q.isScale[o.Name] {
					q.close()
					return nil, nil, fmt.Errorf("the conversion produces %q, the name of a scale the FP8 sidecar restores", o.Name)
				}
				outs = append(outs, o)
				continue
			}
			if !o.Shape.Equal(qw.shape) || !fp8.OutDTypeOK(o.DType) {
				q.close()
				return nil, nil, fmt.Errorf("%q is %v%v; the FP8 sidecar records a weight of shape %v, which must come back BF16, F16 or F32 in that shape", o.Name, o.DType, o.Shape, qw.shape)
			}
			found[o.Name] = true
			n := o.Shape.NumElements()
			outs = append(outs, Output{Name: o.Name, DType: tensor.F8E4M3, Shape: o.Shape, Size: n},
				Output{Name: qw.scale, DType: qw.scaleDT, Shape: qw.grid, Size: qw.grid.NumElements() * int64(qw.scaleDT.Size())})
		}
		st.Outputs = outs
	}
	for _, w := range ws {
		if !found[w.name] {
			q.close()
			return nil, nil, fmt.Errorf("the FP8 sidecar names %q, which the conversion does not produce", w.name)
		}
	}
	if cfg != nil {
		hf, err := pyjson.ParseObject(hfConfig)
		if err != nil {
			q.close()
			return nil, nil, err
		}
		hf.Set(fp8.ConfigKey, pyjson.CloneValue(cfg))
		hfConfig = append(pyjson.Encode(hf, 2, true), '\n')
	}
	return q, hfConfig, nil
}

// apply replaces a step's results for quantized weights by their codes
// and scale grids, in the order of the step's (re-planned) outputs.
func (q *quantizer) apply(ex *executor, st *Step, ts []tensor.Tensor) ([]tensor.Tensor, error) {
	out := make([]tensor.Tensor, 0, len(st.Outputs))
	k := 0
	for _, o := range st.Outputs {
		if q.isScale[o.Name] {
			continue // produced with its weight
		}
		if k >= len(ts) {
			return nil, fmt.Errorf("internal error: step has %d results for its outputs", len(ts))
		}
		t := ts[k]
		k++
		qw := q.weights[o.Name]
		if qw == nil {
			out = append(out, t)
			continue
		}
		src := t.AppendTo(ex.arena.alloc(int(t.Len()))[:0])
		codes := ex.arena.alloc(int(t.NumElements()))
		var scaleBytes []byte
		if q.recompute {
			sc, err := qw.layout.QuantizeRecompute(o.Name, codes, t.DType, src, qw.scaleDT)
			if err != nil {
				return nil, err
			}
			scaleBytes = fp8.EncodeScales(qw.scaleDT, sc)
		} else {
			sc, err := fp8.Scales(qw.scale, qw.scaleDT, qw.grid, qw.stored)
			if err != nil {
				return nil, err
			}
			if err := qw.layout.QuantizeReuse(o.Name, codes, t.DType, src, sc); err != nil {
				return nil, err
			}
			scaleBytes = qw.stored
		}
		ct, err := tensor.New(tensor.F8E4M3, t.Shape, codes)
		if err != nil {
			return nil, err
		}
		sct, err := tensor.New(qw.scaleDT, qw.grid, scaleBytes)
		if err != nil {
			return nil, err
		}
		out = append(out, ct, sct)
	}
	return out, nil
}
