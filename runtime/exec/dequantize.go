package exec

import (
	"context"
	"fmt"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/rolltpl/rolltpl/runtime/blockio"
	"github.com/rolltpl/rolltpl/runtime/fp8"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
)

// DequantizeOptions configure [DequantizeHF].
type DequantizeOptions struct {
	// To is the output dtype of the weights: DequantBF16 (the zero
	// value), DequantF16 or DequantF32.
	To Dequantize
	// Scales are the scale naming rules that pair each F8 weight with
	// its grid: a template's quant rules (ir.Template.Scales; the stdlib
	// template of the checkpoint's model type, or the stdlib default
	// rules, ir.Program.DefaultScales, when it has none). Required.
	Scales []ir.ScaleRule
	// Force, Sync, Notice and Progress are as in [Options].
	Force    bool
	Sync     bool
	Notice   func(msg string)
	Progress func(Progress)
}

// DequantizeResult describes a finished (or refused) dequantization.
type DequantizeResult struct {
	// FP8 is what was dequantized (nil when the source was refused
	// before pairing).
	FP8 *FP8Info
	// Problems are the structural problems that refused the source.
	Problems []Problem
	// Files are the shards and index written, Copied the other files.
	Files, Copied []string
	// Written is the number of tensor bytes written.
	Written int64
}

// DequantizeHF writes the FP8 block-quantized HF checkpoint in src as a
// plain HF checkpoint in dst, the drop-in for DeepSeek's fp8_cast_bf16.py:
// the same shard names, every F8_E4M3 weight dequantized (lora-fp8.md
// §2.4) and its scale removed, every other tensor copied byte for byte,
// the index's weight_map and total_size rewritten, config.json without
// quantization_config, the tokenizer and remote-code files copied. Every
// structural problem (fp8.Pairs, by opts.Scales) refuses the source before anything is
// written, as does a bad scale value; a NaN code found while streaming
// aborts the output, leaving nothing behind. Output goes through a
// temporary folder moved into place when complete, as convert's does.
// Memory is bounded by the 2 MiB blocks of the pipe, whatever the
// tensor sizes.
func DequantizeHF(ctx context.Context, src, dst string, opts DequantizeOptions) (res *DequantizeResult, err error) {
	defer recoverInternal(&err)
	if opts.To == "" {
		opts.To = DequantBF16
	}
	if opts.To == DequantRefuse {
		return nil, fmt.Errorf("dequantize: %q is not an output dtype (bf16, f16 or f32)", opts.To)
	}
	if len(opts.Scales) == 0 {
		return nil, fmt.Errorf("dequantize: no scale naming rules to pair the F8 weights with their scales (the template's quant rules, or the stdlib default)")
	}
	outDT := opts.To.dtype()
	if err := checkPaths(src, dst); err != nil {
		return nil, err
	}
	if _, err := checkDest(src, dst, opts.Force, opts.Notice); err != nil {
		return nil, err
	}
	_, cfgText, cfgObj, err := ReadHFConfig(src)
	if err != nil {
		return nil, err
	}
	sh, err := safetensors.OpenSharded(src)
	if err != nil {
		return nil, err
	}
	defer sh.Close()
	all := sh.Tensors()
	metas := make([]TensorMeta, len(all))
	for i, t := range all {
		metas[i] = TensorMeta{Name: t.Name, DType: t.DType, Shape: t.Shape, Size: t.Size, File: t.File.Path()}
	}
	info, _, _, probs := fp8Prepass(cfgText, metas, opts.To, scaleNaming(opts.Scales))
	res = &DequantizeResult{FP8: info, Problems: probs}
	if len(probs) > 0 {
		return res, &PlanError{Problems: probs}
	}
	if info == nil || len(info.Pairs) == 0 {
		return res, fmt.Errorf("%s is not an FP8 block-quantized checkpoint: no F8_E4M3 weights with scale grids (config.json has no quantization_config with quant_method \"fp8\")", src)
	}
	// Pairs by weight index and the set of scales, in source indices.
	scaleOf := map[int]int{}
	isScale := map[int]bool{}
	for pi, p := range info.deq {
		src := info.keep[pi]
		scaleOf[src] = p.Scale
		isScale[p.Scale] = true
	}
	for _, w := range slices.Sorted(maps.Keys(scaleOf)) { // the first bad one in file order
		sc := all[scaleOf[w]]
		data := sc.File.Data(sc.TensorInfo)
		_, err := fp8.Scales(sc.Name, sc.DType, sc.Shape, data)
		dropPages(data)
		if err != nil {
			return res, fmt.Errorf("%s: %w; nothing was written", sc.File.Path(), err)
		}
	}

	out, err := newOutput(src, dst, Options{Force: opts.Force, Sync: opts.Sync, Notice: opts.Notice})
	if err != nil {
		return res, err
	}
	defer out.Abort(&err)

	// The shards: same names, tensors in the reference writer's order.
	type shardOut struct {
		name  string
		specs []safetensors.Spec
		srcOf map[string]int
	}
	var shards []shardOut
	byFile := map[*safetensors.File]int{}
	weightMap := map[string]string{}
	var total int64
	for i, t := range all {
		if isScale[i] {
			continue
		}
		k, ok := byFile[t.File]
		if !ok {
			k = len(shards)
			byFile[t.File] = k
			shards = append(shards, shardOut{name: filepath.Base(t.File.Path()), srcOf: map[string]int{}})
		}
		dt := t.DType
		if _, ok := scaleOf[i]; ok {
			dt = outDT
		}
		sp := safetensors.Spec{Name: t.Name, DType: dt, Shape: t.Shape}
		shards[k].specs = append(shards[k].specs, sp)
		shards[k].srcOf[t.Name] = i
		weightMap[t.Name] = shards[k].name
		total += t.Shape.NumElements() * int64(dt.Size())
	}
	// A shard holding only scales keeps its name, empty.
	for _, f := range sh.Files {
		if _, ok := byFile[f]; !ok {
			byFile[f] = len(shards)
			shards = append(shards, shardOut{name: filepath.Base(f.Path()), srcOf: map[string]int{}})
		}
	}
	d := &dequantWriter{opts: opts, total: total, totalTensors: len(weightMap), files: map[string]*os.File{}}
	d.pipe.Sync = opts.Sync
	defer d.close()
	for _, so := range shards {
		safetensors.SortSpecs(so.specs)
		if err := d.writeShard(ctx, out.Path(so.name), so.specs, func(name string) (safetensors.ShardTensor, *safetensors.ShardTensor) {
			i := so.srcOf[name]
			if s, ok := scaleOf[i]; ok {
				sc := all[s]
				return all[i], &sc
			}
			return all[i], nil
		}, info.Config.Block); err != nil {
			return res, err
		}
		res.Files = append(res.Files, so.name)
	}
	res.Written = d.done
	if sh.Index != nil {
		if err := safetensors.WriteIndex(out.Path(safetensors.IndexFileName), weightMap, total); err != nil {
			return res, err
		}
		res.Files = append(res.Files, safetensors.IndexFileName)
	}
	cfgObj.Delete(fp8.ConfigKey)
	if err := writeFileSync(out.Path(HFConfigName), append(pyjson.Encode(cfgObj, 2, false), '\n'), opts.Sync); err != nil {
		return res, err
	}
	res.Copied, err = copyAux(src, out.Dir(), func(name string) bool { return name == HFConfigName || weightFile(name) })
	if err != nil {
		return res, err
	}
	return res, out.Commit()
}

// dequantWriter streams the shards of DequantizeHF.
type dequantWriter struct {
	opts                  DequantizeOptions
	done, total           int64
	tensors, totalTensors int
	pipe                  blockio.Pipe
	files                 map[string]*os.File
	codes                 []byte
}

func (d *dequantWriter) close() {
	for _, f := range d.files {
		f.Close()
	}
}

func (d *dequantWriter) file(path string) (*os.File, error) {
	if f, ok := d.files[path]; ok {
		return f, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	d.files[path] = f
	return f, nil
}

// writeShard writes one output shard at path: its header, then each
// tensor, dequantized block by block from the source codes (pread) or
// copied.
func (d *dequantWriter) writeShard(ctx context.Context, path string, specs []safetensors.Spec, source func(name string) (safetensors.ShardTensor, *safetensors.ShardTensor), block [2]int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	sw, err := safetensors.NewWriter(f, specs, map[string]string{"format": "pt"})
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := blockio.Preallocate(f, 0, sw.Size()); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	for _, sp := range specs {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		t, sc := source(sp.Name)
		in, err := d.file(t.File.Path())
		if err != nil {
			return err
		}
		n := sp.Shape.NumElements() * int64(sp.DType.Size())
		var fill blockio.Fill
		if sc == nil {
			fill = func(b []byte, off int64) error {
				if err := blockio.ReadFull(in, in.Name(), b, t.Offset+off); err != nil {
					return err
				}
				d.progress(int64(len(b)))
				return nil
			}
		} else {
			data := sc.File.Data(sc.TensorInfo)
			scales, err := fp8.Scales(sc.Name, sc.DType, sc.Shape, data)
			if err != nil {
				return err
			}
			dec, err := fp8.NewLayout(t.Shape, block).NewDecoder(t.Name, sp.DType, scales)
			if err != nil {
				return err
			}
			size := int64(sp.DType.Size())
			fill = func(b []byte, off int64) error {
				e0, c := off/size, int64(len(b))/size
				if int64(cap(d.codes)) < c {
					d.codes = make([]byte, c)
				}
				codes := d.codes[:c]
				if err := blockio.ReadFull(in, in.Name(), codes, t.Offset+e0); err != nil {
					return err
				}
				if err := dec.Decode(b, codes, e0); err != nil {
					return fmt.Errorf("%s: %w", t.File.Path(), err)
				}
				d.progress(int64(len(b)))
				return nil
			}
		}
		if _, err := d.pipe.Copy(f, n, fill, nil); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		d.tensors++
		d.progress(0)
	}
	if pos, _ := f.Seek(0, 1); pos != sw.Size() {
		return fmt.Errorf("writing %s: internal error: %d bytes written, the header lays out %d", path, pos, sw.Size())
	}
	if d.opts.Sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return f.Close()
}

func (d *dequantWriter) progress(n int64) {
	d.done += n
	if d.opts.Progress != nil {
		d.opts.Progress(Progress{Bytes: d.done, TotalBytes: d.total, Tensors: d.tensors, TotalTensors: d.totalTensors})
	}
}
