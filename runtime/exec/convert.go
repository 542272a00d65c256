package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rolltpl/rolltpl/runtime/blockio"
	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// DefaultMaxShardSize is the HF shard size limit (transformers' "5GB").
const DefaultMaxShardSize = 5_000_000_000

// Options configure a conversion.
type Options struct {
	// Force replaces the checkpoint in a destination that is not empty:
	// every entry must be a checkpoint's own file (weights, configs,
	// tokenizer and processor files, the files the source has at its top
	// level; see foreignFiles), or the conversion is refused naming the
	// others, and nothing is changed.
	Force bool
	// Notice, if set, is told about stale temporaries of interrupted
	// conversions that were removed (a message naming each).
	Notice func(msg string)
	// Layout is the parallel layout to write (HF → MCA); the zero value
	// is TP=PP=EP=1. MCA → HF reads the layout from mca_config.json.
	Layout Layout
	// Progress, if set, is called as tensor bytes are written and as
	// tensors are finished, with the figures so far. Calls come one at a
	// time, in order, but not always from the calling goroutine (blocks
	// of copied bytes are counted as they are read, just before they are
	// written).
	Progress func(Progress)
	// MaxShardSize limits the HF shard size (MCA → HF); 0 means
	// DefaultMaxShardSize. A tensor larger than the limit gets a shard of
	// its own.
	MaxShardSize int64
	// Sync fsyncs every file before the output is renamed into place.
	Sync bool
	// NameOrPath is recorded as name_or_path in mca_config.json; empty
	// means the source directory as given.
	NameOrPath string
	// Ranks, when not nil, makes ConvertHFToMCA one job of a conversion
	// split over several jobs sharing the destination: it writes only
	// the rank files with these indices in shard.Ranks order (ROLL's
	// rank-file order: tensor rank, then pipeline rank, then expert
	// rank), in place, each through a temporary name renamed when
	// complete, then its run stamp (RunStampName). The destination may
	// exist and hold other jobs' files; the shared files are left to a
	// Finalize job. A finalized destination (with a tracker file) is
	// refused unless Force, and with Force its tracker is removed before
	// any rank file is written.
	Ranks []int
	// Finalize makes ConvertHFToMCA the last job of such a conversion: it
	// checks that every rank file of the layout is in the destination,
	// finished, stamped with this conversion's run id and holding the
	// planned tensors (naming every one that is not), then writes the
	// shared files
	// (mca_config.json, the source's tokenizer and other files, and last
	// latest_checkpointed_iteration.txt).
	Finalize bool
	// Dequantize is how HF -> MCA treats an FP8 block-quantized
	// checkpoint (fp8.go); the zero value dequantizes to BF16.
	Dequantize Dequantize
	// Quantize, when set, makes MCA -> HF re-quantize the weights the
	// FP8 sidecar names (fp8export.go).
	Quantize *QuantizeOptions

	// finalizeHook, set by an HF -> MCA Finalize job, writes the FP8
	// sidecar before mca_config.json.
	finalizeHook func(dir string) error

	// compare, set by Verify, makes an MCA → HF conversion compare every
	// tensor with the original HF checkpoint instead of writing shards.
	compare *comparer
	// pageCache, set by Verify, writes the rank files through the page
	// cache (torchsave.Options.PageCache): they are read back right away.
	pageCache bool
}

// Result describes a finished (or refused) conversion.
type Result struct {
	// Plan is the plan the conversion ran (or refused to run).
	Plan *Plan
	// Written is the number of tensor bytes written.
	Written int64
	// Files are the weight files written, relative to the destination.
	Files []string
	// Copied are the other files copied from the source.
	Copied []string
}

// ConvertHFToMCA converts the HF checkpoint in src to an MCA checkpoint in
// dst: mca_config.json, latest_checkpointed_iteration.txt and
// iter_0000001/mp_rank_00/model_optim_rng.pt holding {"model": {name:
// tensor}} in the HF dtypes, plus the source's tokenizer and code files.
//
// The plan is made from the headers first; any error problem (a tensor no
// op consumes, an incomplete group, a name nothing matches, shapes that
// disagree with the config) is returned as a *PlanError before anything is
// written. Tensors are streamed from the mapped shards to the output file
// in plan order without copies for the ops that only reorder rows; the
// pages of consumed input are dropped from the resident set as they are
// written. Output goes to a temporary folder moved into place when
// complete (see output).
func ConvertHFToMCA(ctx context.Context, m *Model, src, dst string, opts Options) (res *Result, err error) {
	return convertHFToMCA(ctx, m, src, nil, dst, opts)
}

// convertHFToMCA is ConvertHFToMCA with config.json as cm (read from
// src) holds it, or read from src when cm is nil.
func convertHFToMCA(ctx context.Context, m *Model, src string, cm *CheckpointModel, dst string, opts Options) (res *Result, err error) {
	defer recoverInternal(&err)
	if err := opts.Layout.Check(); err != nil {
		return nil, err
	}
	if err := checkPaths(src, dst); err != nil {
		return nil, err
	}
	job := opts.Ranks != nil || opts.Finalize
	if !job {
		if _, err := checkDest(src, dst, opts.Force, opts.Notice); err != nil {
			return nil, err
		}
	}
	hs, err := openHFSource(m, src, cm, opts.Layout, opts.NameOrPath, opts.Dequantize)
	if err != nil {
		return nil, err
	}
	defer hs.sh.Close()
	mc, plan := hs.mc, hs.plan
	res = &Result{Plan: plan}
	if err := plan.Err(); err != nil {
		return res, err
	}
	if err := hs.checkScales(); err != nil {
		return res, err
	}
	if opts.Ranks != nil {
		if err := hs.checkCodes(ctx); err != nil {
			return res, err
		}
	}
	if err := recordRun(m, mc, hs.sh); err != nil {
		return res, err
	}

	input := hs.input
	if job {
		opts.finalizeHook = func(dir string) error { return writeFP8Sidecar(dir, plan, hs.sh, opts.Sync) }
		return convertHFToMCAJob(ctx, m, src, dst, mc, plan, opts, input, res)
	}
	out, err := newOutput(src, dst, opts)
	if err != nil {
		return res, err
	}
	defer out.Abort(&err)
	if res.Files, res.Written, err = convertHFToMCALayout(ctx, m, mc, plan, opts, out, input); err != nil {
		return res, err
	}
	if err := writeFP8Sidecar(out.Dir(), plan, hs.sh, opts.Sync); err != nil {
		return res, err
	}
	return finishMCA(res, src, out, mc, opts)
}

// finishMCA writes the small files of an MCA output, copies the
// auxiliary files and commits the output.
func finishMCA(res *Result, src string, out *output, mc *MCAConfig, opts Options) (*Result, error) {
	var err error
	if err := writeFileSync(out.Path(MCAConfigName), mc.JSON(), opts.Sync); err != nil {
		return res, err
	}
	if err := writeFileSync(out.Path(TrackerName), []byte("1"), opts.Sync); err != nil {
		return res, err
	}
	res.Copied, err = copyAux(src, out.Dir(), func(name string) bool {
		return name == HFConfigName || name == MCAConfigName || name == TrackerName || weightFile(name)
	})
	if err != nil {
		return res, err
	}
	if err := out.Commit(); err != nil {
		return res, err
	}
	return res, nil
}

// ConvertMCAToHF converts the MCA checkpoint in src (any parallel layout
// recorded in its mca_config.json, the single rank file being the 1x1x1
// one; the rank files are merged) back to an
// HF checkpoint in dst: shards model-0000N-of-0000M.safetensors cut at
// opts.MaxShardSize in plan order, model.safetensors.index.json, and
// config.json rebuilt from hf_config_json and the template's reversed
// config map, plus the source's other files.
func ConvertMCAToHF(ctx context.Context, m *Model, src, dst string, opts Options) (res *Result, err error) {
	return convertMCAToHF(ctx, m, src, nil, dst, opts)
}

// convertMCAToHF is ConvertMCAToHF with mca_config.json as cm (read
// from src) holds it, or read from src when cm is nil.
func convertMCAToHF(ctx context.Context, m *Model, src string, cm *CheckpointModel, dst string, opts Options) (res *Result, err error) {
	defer recoverInternal(&err)
	if err := checkPaths(src, dst); err != nil {
		return nil, err
	}
	if _, err := checkDest(src, dst, opts.Force, opts.Notice); err != nil {
		return nil, err
	}
	ms, err := openMCA(m, src, cm)
	if err != nil {
		return nil, err
	}
	defer ms.close()
	res = &Result{Plan: ms.plan}
	if err := ms.plan.Err(); err != nil {
		return res, err
	}
	hfConfig := ms.hfConfig
	var quant *quantizer
	if opts.Quantize != nil {
		if quant, hfConfig, err = prepareQuantize(src, ms.plan, hfConfig, opts.Quantize); err != nil {
			return res, err
		}
		defer quant.close()
	}
	out, err := newOutput(src, dst, opts)
	if err != nil {
		return res, err
	}
	defer out.Abort(&err)
	// The executor reads the global weights merged from the rank files
	// (at 1x1x1 the one rank file's tensors, in place).
	ex := newExecutor(ms.plan, opts, nil)
	ex.merged = ms.mi
	ex.spans = ms.rs.spans()
	ex.quant = quant
	defer ex.close()
	return res, finishHF(ctx, ex, out, src, hfConfig, opts, res)
}

// finishHF writes the HF shards, config.json and the copied auxiliary
// files of an MCA -> HF conversion, then commits the output. For Verify
// (opts.compare) it compares the tensors with the original instead of
// writing shards, and writes only config.json.
func finishHF(ctx context.Context, ex *executor, out *output, src string, hfConfig []byte, opts Options, res *Result) error {
	maxShard := opts.MaxShardSize
	if maxShard <= 0 {
		maxShard = DefaultMaxShardSize
	}
	if opts.compare != nil {
		err := ex.eachOutput(ctx, func(name string, t tensor.Tensor) error {
			if err := opts.compare.tensor(ex, name, t); err != nil {
				return err
			}
			ex.tensorDone()
			return nil
		})
		if err != nil {
			return err
		}
		if err := writeFileSync(out.Path(HFConfigName), hfConfig, opts.Sync); err != nil {
			return err
		}
		return out.Commit()
	}
	files, err := ex.writeHF(ctx, out, maxShard)
	if err != nil {
		return err
	}
	res.Written = ex.done
	res.Files = files
	if err := writeFileSync(out.Path(HFConfigName), hfConfig, opts.Sync); err != nil {
		return err
	}
	res.Copied, err = copyAux(src, out.Dir(), func(name string) bool {
		return name == HFConfigName || name == MCAConfigName || name == TrackerName || weightFile(name) || fp8SidecarFile(name)
	})
	if err != nil {
		return err
	}
	return out.Commit()
}

// recoverInternal turns a panic into an error; the deferred cleanups have
// already removed the temporary output by the time it runs.
func recoverInternal(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("internal error: %v", r)
	}
}

// writeChunk is the size of the writes the executor issues; pages of
// mapped input are dropped after each (formats.md §5: writes of a few MB
// straight from the mapping run at disk speed).
const writeChunk = 16 << 20

// executor runs a plan's steps on real tensor data.
type executor struct {
	plan   *Plan
	opts   Options
	cfg    ops.Config
	stacks *shard.Stacks
	input  func(i int) inputData
	// merged, when set, serves the inputs instead of input: global
	// weights merged from the rank files of a parallel layout.
	merged *mergeInput
	arena  arena
	done   int64
	total  int64
	// tensors of totalTensors are finished (written, or compared).
	tensors, totalTensors int
	// ranges are the current step's mapped inputs: output pieces inside
	// them are copied from their file by the kernel, and their pages are
	// dropped after writing.
	ranges []inputRange
	files  map[string]*os.File
	// spans are the address ranges of the whole mapped input files. The
	// kernel maps pages around every fault (fault-around), including pages
	// of tensors already written or not yet reached; dropping the whole
	// mappings every dropEvery bytes keeps those from accumulating.
	spans     [][2]uintptr
	sinceDrop int64
	// pending are the small finished input ranges not yet dropped
	// (drop, mem_drop.go).
	pending pendingDrops
	// windows read runs of small consecutive pieces of one input file
	// (readSmall), per file.
	windows map[*os.File]*window
	// quant re-quantizes FP8 weights (MCA -> HF --quantize fp8), or nil.
	quant *quantizer
	// views are the FP8 weights the current step reads, windowsFP8 the
	// windows of codes they are decoded from, tick their clock
	// (fp8decode.go).
	views      []*deqView
	windowsFP8 []*codeWindow
	tick       int64
}

// inputData locates one input tensor: its bytes (a slice of a read-only
// shared file mapping) and, when known, the file and offset they are at.
type inputData struct {
	data []byte
	path string // "" when the file offset is unknown
	off  int64
	st   *safetensors.File // for Release, or nil
	ti   safetensors.TensorInfo
	deq  *deqInput // an FP8 weight: data are its codes (fp8.go)
}

type inputRange struct {
	start, end uintptr
	path       string
	off        int64
}

// dropEvery is how many bytes are written between drops of the whole
// input mappings.
const dropEvery = 256 << 20

func newExecutor(p *Plan, opts Options, input func(int) inputData) *executor {
	ex := &executor{plan: p, opts: opts, cfg: p.Config.OpsConfig(), stacks: p.stacks, input: input,
		total: p.OutBytes(), totalTensors: p.NumOutputs(), files: map[string]*os.File{}}
	ex.cfg.Alloc = ex.arena.alloc
	// One span per input file, from its tensors' data.
	byFile := map[string]int{}
	for i, in := range p.Inputs {
		if input == nil {
			break
		}
		s, e := addrRange(input(i).data)
		if e <= s {
			continue
		}
		k, ok := byFile[in.File]
		if !ok {
			k = len(ex.spans)
			byFile[in.File] = k
			ex.spans = append(ex.spans, [2]uintptr{s, e})
		}
		ex.spans[k][0] = min(ex.spans[k][0], s)
		ex.spans[k][1] = max(ex.spans[k][1], e)
	}
	return ex
}

func (ex *executor) close() {
	ex.releaseDeq()
	ex.arena.free()
	for _, f := range ex.files {
		f.Close()
	}
}

// file returns an open descriptor of an input file, for in-kernel copies.
func (ex *executor) file(path string) (*os.File, error) {
	if f, ok := ex.files[path]; ok {
		return f, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	ex.files[path] = f
	return f, nil
}

// run applies one step to real data and returns its outputs, checked
// against the plan.
func (ex *executor) run(st *Step) ([]tensor.Tensor, error) {
	ex.arena.reset()
	ex.releaseDeq()
	ex.ranges = ex.ranges[:0]
	desc := st.side.info.describe()
	vals := make([]ops.Value, len(st.Inputs))
	for j, i := range st.Inputs {
		if ex.merged != nil {
			var err error
			if vals[j], err = ex.mergedValue(i); err != nil {
				return nil, err
			}
			continue
		}
		meta := ex.plan.Inputs[i]
		in := ex.input(i)
		t, err := tensor.New(meta.DType, meta.Shape, ex.inputBytes(in))
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %v", meta.File, meta.Name, err)
		}
		if s, e := addrRange(in.data); e > s && in.deq == nil {
			ex.ranges = append(ex.ranges, inputRange{start: s, end: e, path: in.path, off: in.off})
		}
		if ex.plan.Dir == ops.MCAToHF {
			if vals[j], err = cutStack(ex.stacks, meta.Name, t); err != nil {
				return nil, fmt.Errorf("%s: %v", meta.File, err)
			}
		} else {
			vals[j] = ops.TensorValue(t)
		}
	}
	ts, err := ex.results(st, vals)
	if err == nil && ex.computed(ts...) {
		// An op computed from an FP8 weight's untouched bytes: decode
		// them and run it again (fp8decode.go).
		if err := ex.materialize(); err != nil {
			return nil, err
		}
		ts, err = ex.results(st, vals)
	}
	if err != nil {
		return nil, err
	}
	if ex.quant != nil {
		if ts, err = ex.quant.apply(ex, st, ts); err != nil {
			return nil, err
		}
	}
	if len(ts) != len(st.Outputs) {
		return nil, fmt.Errorf("%s: internal error: %d results, planned %d", desc, len(ts), len(st.Outputs))
	}
	for k, t := range ts {
		o := st.Outputs[k]
		if t.DType != o.DType || !t.Shape.Equal(o.Shape) {
			return nil, fmt.Errorf("%s: internal error: %q is %v, planned %v%v", desc, o.Name, t, o.DType, o.Shape)
		}
	}
	return ts, nil
}

// results applies step st's op to its input values and returns the
// results as tensors: HF -> MCA results joined from stacked components.
func (ex *executor) results(st *Step, vals []ops.Value) ([]tensor.Tensor, error) {
	desc := st.side.info.describe()
	outs, err := st.side.info.apply(ex.plan.Dir, ex.cfg, vals)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", desc, err)
	}
	var ts []tensor.Tensor
	for k, v := range outs {
		if ex.plan.Dir == ops.HFToMCA {
			if len(ts) >= len(st.Outputs) {
				return nil, fmt.Errorf("%s: internal error: result %d beyond the %d planned outputs", desc, k, len(st.Outputs))
			}
			t, err := joinStack(ex.stacks, st.Outputs[len(ts)].Name, v)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", desc, err)
			}
			ts = append(ts, t)
			continue
		}
		t, err := v.Flatten()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", desc, err)
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// inputOf returns the current step's input holding b, or nil.
func (ex *executor) inputOf(b []byte) *inputRange {
	s, e := addrRange(b)
	if e <= s {
		return nil
	}
	for k := range ex.ranges {
		if r := &ex.ranges[k]; s >= r.start && e <= r.end {
			return r
		}
	}
	return nil
}

// sink is where tensor bytes go: the torch.save writer, or an HF shard.
// Copy writes n bytes that fill produces block by block, pipelined with
// the writes (blockio.Pipe).
type sink interface {
	Write(p []byte) (int, error)
	Copy(n int64, fill blockio.Fill) error
}

// write streams t to w. A tensor whose bytes an op computed in memory, in
// large pieces, is written from that memory. Any other tensor goes through
// w.Copy: pieces of mapped input whose file is known are read from the
// file with pread (the mapping is never touched, so it costs no page
// faults and no memory; writing from the mapping runs 2-3x slower on the
// target VM), small pieces (the rows of a row-parallel shard) are
// gathered into blocks, and mapped pages read through memory are dropped
// after. Small pieces are read with one pread each too: at TP=4 (1 KiB
// rows of the row-parallel weights) that ran in 0.23 s for 512 MiB where
// copying them from the mapping took 0.39 s (a page fault per 4 KiB).
func (ex *executor) write(w sink, t tensor.Tensor) error {
	pieces := t.Pieces()
	segs := make([]segment, len(pieces))
	copied := len(pieces) > 1 && t.Len()/int64(len(pieces)) < smallPiece
	for i, p := range pieces {
		segs[i].data = p
		if v, e := ex.viewOf(p); v != nil { // decoded as it is written
			segs[i].view, segs[i].elem = v, e
			copied = true
			continue
		}
		r := ex.inputOf(p)
		if r == nil {
			continue
		}
		copied = true
		segs[i].mapped = true
		if r.path == "" {
			continue
		}
		f, err := ex.file(r.path)
		if err != nil {
			return err
		}
		s, _ := addrRange(p)
		segs[i].file, segs[i].off = f, r.off+int64(s-r.start)
	}
	if copied {
		return w.Copy(t.Len(), ex.filler(segs))
	}
	for _, p := range pieces {
		for len(p) > 0 {
			c := p[:min(len(p), writeChunk)]
			if _, err := w.Write(c); err != nil {
				return err
			}
			ex.progress(int64(len(c)))
			p = p[len(c):]
		}
	}
	return nil
}

// segment is one piece of an output tensor: bytes in memory, and the file
// and offset they are at when they are mapped input of a known file, or
// the FP8 weight and first element they are a view of.
type segment struct {
	data   []byte
	mapped bool
	file   *os.File
	off    int64
	view   *deqView
	elem   int64
}

// filler returns the blockio.Fill producing the concatenation of segs,
// for consecutive blocks (the only way blockio.Pipe calls it). It runs on
// the pipe's filling goroutine while the executor's waits in Copy, so it
// may update the executor's counters.
func (ex *executor) filler(segs []segment) blockio.Fill {
	k, at := 0, 0 // segs[k].data[at:] comes next
	return func(b []byte, _ int64) error {
		n := len(b)
		for len(b) > 0 {
			sg := &segs[k]
			c := min(len(b), len(sg.data)-at)
			if sg.view != nil { // blocks and pieces are whole elements
				if err := ex.decodeTo(b[:c], sg.view, sg.elem+int64(at/sg.view.d.out.Size())); err != nil {
					return err
				}
			} else if sg.file != nil {
				if err := ex.readSmall(sg.file, b[:c], sg.off+int64(at)); err != nil {
					return err
				}
			} else {
				copy(b, sg.data[at:at+c])
				if sg.mapped {
					ex.drop(addrRange(sg.data[at : at+c]))
				}
			}
			b = b[c:]
			if at += c; at == len(sg.data) {
				k, at = k+1, 0
			}
		}
		ex.progress(int64(n))
		return nil
	}
}

// window is a block of an input file read ahead for small pieces that
// follow each other in the file.
type window struct {
	buf  []byte
	off  int64 // file offset of buf[0]
	n    int   // valid bytes in buf
	next int64 // file offset just past the last piece read
}

// Window sizes: windowSize bytes per input file, for at most maxWindows
// files.
const (
	windowSize = 256 << 10
	maxWindows = 16
)

// readSmall reads len(b) bytes of f at off. A piece shorter than
// windowSize that starts where the previous piece of f ended (the rows of
// one rank's part of a row-parallel weight, merged MCA -> HF: at TP=4 a
// 1-4 KiB row of each rank file in turn) is served from a window of f read
// ahead with one pread, instead of one pread per row (377k syscalls for a
// 3 GB checkpoint at TP=4); any other piece is read directly. At most
// maxWindows files get a window; the others are read directly.
func (ex *executor) readSmall(f *os.File, b []byte, off int64) error {
	w := ex.windows[f]
	if w == nil && len(ex.windows) < maxWindows && len(b) < windowSize {
		if ex.windows == nil {
			ex.windows = map[*os.File]*window{}
		}
		w = &window{next: -1}
		ex.windows[f] = w
	}
	if w == nil || len(b) >= windowSize {
		return blockio.ReadFull(f, f.Name(), b, off)
	}
	end := off + int64(len(b))
	if off < w.off || end > w.off+int64(w.n) {
		if off != w.next {
			w.next = end
			return blockio.ReadFull(f, f.Name(), b, off)
		}
		if w.buf == nil {
			w.buf = make([]byte, windowSize)
		}
		k, err := f.ReadAt(w.buf, off)
		w.off, w.n = off, k
		if k < len(b) {
			w.n = 0
			if err == nil || err == io.EOF {
				return fmt.Errorf("%s: %d bytes at offset %d: only %d there (file shorter than expected)", f.Name(), len(b), off, k)
			}
			return fmt.Errorf("%s: reading %d bytes at offset %d: %v", f.Name(), len(b), off, err)
		}
	}
	copy(b, w.buf[off-w.off:])
	w.next = end
	return nil
}

// progress counts n more bytes written, drops the mapped input pages
// every dropEvery bytes and reports progress.
func (ex *executor) progress(n int64) {
	ex.done += n
	if ex.sinceDrop += n; ex.sinceDrop >= dropEvery {
		ex.dropAll()
	}
	ex.report()
}

// tensorDone counts one more tensor finished and reports progress.
func (ex *executor) tensorDone() {
	ex.tensors++
	ex.report()
}

// report tells Options.Progress (if set) the executor's figures.
func (ex *executor) report() {
	if ex.opts.Progress != nil {
		ex.opts.Progress(Progress{Bytes: ex.done, TotalBytes: ex.total, Tensors: ex.tensors, TotalTensors: ex.totalTensors})
	}
}

// Progress is how far a conversion (or verify, dequantize, a LoRA
// export or merge) got: tensor bytes written and tensors finished, of
// their totals.
type Progress struct {
	Bytes, TotalBytes     int64
	Tensors, TotalTensors int
}

// smallPiece is the average piece size below which a tensor's pieces
// (the rows of a row-parallel shard or of a merged row-parallel weight)
// are gathered into blocks: one write per row would cost more than the
// copy.
const smallPiece = 64 << 10

// dropAll drops every mapped page of the input files.
func (ex *executor) dropAll() {
	for _, s := range ex.spans {
		dropRange(s[0], s[1])
	}
	clear(ex.pending.hull)
	ex.pending.bytes = 0
	ex.sinceDrop = 0
}

// releaseInputs drops the pages of a finished step's inputs.
func (ex *executor) releaseInputs(st *Step) {
	if ex.merged != nil {
		for _, r := range ex.ranges {
			ex.drop(r.start, r.end)
		}
		return
	}
	for _, i := range st.Inputs {
		in := ex.input(i)
		if in.st != nil {
			in.st.Release(in.ti)
		}
		ex.drop(addrRange(in.data))
	}
}

// shardFile is one HF output shard: a contiguous run of the plan's
// outputs.
type shardFile struct {
	name       string
	first, end int // output indices [first, end)
	size       int64
}

// assignShards cuts the outputs, in order, into shards of at most max
// bytes: a shard is closed when the next tensor would overflow it, and a
// tensor larger than max gets a shard of its own (as transformers does,
// but keeping the order so that shards can be streamed).
func assignShards(outs []Output, max int64) []shardFile {
	var shards []shardFile
	cur := shardFile{}
	for i, o := range outs {
		if i > cur.first && cur.size+o.Size > max {
			cur.end = i
			shards = append(shards, cur)
			cur = shardFile{first: i}
		}
		cur.size += o.Size
	}
	cur.end = len(outs)
	if cur.end > cur.first || len(shards) == 0 {
		shards = append(shards, cur)
	}
	for i := range shards {
		shards[i].name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
	}
	return shards
}

// fileSink writes tensor data straight to a shard file, after the
// header safetensors.NewWriter wrote: the data region is the tensors'
// bytes back to back in header order, which fileSink counts.
type fileSink struct {
	f    *os.File
	n    int64
	pipe blockio.Pipe
}

func (s *fileSink) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	s.n += int64(n)
	return n, err
}

func (s *fileSink) Copy(n int64, fill blockio.Fill) error {
	m, err := s.pipe.Copy(s.f, n, fill, nil)
	s.n += m
	return err
}

// eachOutput runs the plan's steps in order and hands every output tensor
// to fn with its name, releasing each step's inputs after.
func (ex *executor) eachOutput(ctx context.Context, fn func(name string, t tensor.Tensor) error) error {
	for si := range ex.plan.Steps {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		st := &ex.plan.Steps[si]
		if st.Dropped {
			continue
		}
		ts, err := ex.run(st)
		if err != nil {
			return err
		}
		for j, t := range ts {
			if err := fn(st.Outputs[j].Name, t); err != nil {
				return err
			}
		}
		ex.releaseInputs(st)
	}
	return nil
}

// writeHF writes the HF shards and the index; it returns the file names.
// Every shard is created, with its header, and its disk space reserved
// before the first tensor byte is written, so that a full disk is
// reported first (reserveNote). Each shard's header comes from
// safetensors.NewWriter, whose layout (Tensors, Size) the data then
// follows; the data itself goes through a fileSink so that bytes of the
// mapped input are copied by the kernel.
func (ex *executor) writeHF(ctx context.Context, out *output, maxShard int64) ([]string, error) {
	outs := ex.plan.Outputs()
	shards := assignShards(outs, maxShard)
	weightMap := make(map[string]string, len(outs))
	var total int64
	for _, s := range shards {
		for _, o := range outs[s.first:s.end] {
			weightMap[o.Name] = s.name
			total += o.Size
		}
	}
	type shardOut struct {
		f      *os.File
		fs     *fileSink
		layout []safetensors.TensorInfo
		size   int64
	}
	opened := make([]shardOut, len(shards))
	defer func() {
		for _, so := range opened {
			if so.f != nil {
				so.f.Close()
			}
		}
	}()
	files := make([]string, 0, len(shards)+1)
	for i, s := range shards {
		specs := make([]safetensors.Spec, 0, s.end-s.first)
		for _, o := range outs[s.first:s.end] {
			specs = append(specs, safetensors.Spec{Name: o.Name, DType: o.DType, Shape: o.Shape})
		}
		f, err := os.OpenFile(out.Path(s.name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, err
		}
		opened[i].f = f
		sw, err := safetensors.NewWriter(f, specs, map[string]string{"format": "pt"})
		if err != nil {
			return nil, fmt.Errorf("writing %s: %w", s.name, err)
		}
		opened[i].layout, opened[i].size = sw.Tensors(), sw.Size()
		if err := blockio.Preallocate(f, 0, sw.Size()); err != nil {
			return nil, fmt.Errorf("writing %s: %w%s", out.Path(s.name), err, reserveNote(err, len(shards), "shards", total))
		}
		opened[i].fs = &fileSink{f: f}
		opened[i].fs.pipe.Sync = ex.opts.Sync
		files = append(files, s.name)
	}
	cur := -1
	finish := func() error {
		if cur < 0 || opened[cur].f == nil {
			return nil
		}
		so := &opened[cur]
		var err error
		if pos, _ := so.f.Seek(0, io.SeekCurrent); pos != so.size {
			err = fmt.Errorf("internal error: %d bytes written, the header lays out %d", pos, so.size)
		}
		if err == nil && ex.opts.Sync {
			err = so.f.Sync()
		}
		if cerr := so.f.Close(); err == nil {
			err = cerr
		}
		so.f, so.fs = nil, nil // the sink's buffers can go
		if err != nil {
			return fmt.Errorf("writing %s: %w", shards[cur].name, err)
		}
		return nil
	}
	next := func() error {
		if err := finish(); err != nil {
			return err
		}
		cur++
		return nil
	}
	k := 0
	err := ex.eachOutput(ctx, func(name string, t tensor.Tensor) error {
		for cur < 0 || k >= shards[cur].end {
			if err := next(); err != nil {
				return err
			}
		}
		so := &opened[cur]
		ti := so.layout[k-shards[cur].first]
		if ti.Name != name || ti.Size != t.Len() || so.fs.n != ti.Offset-so.layout[0].Offset {
			return fmt.Errorf("writing %s: internal error: tensor %q at %d, the header has %q at %d", shards[cur].name, name, so.fs.n, ti.Name, ti.Offset)
		}
		if err := ex.write(so.fs, t); err != nil {
			return fmt.Errorf("writing %s: %w", shards[cur].name, err)
		}
		ex.tensorDone()
		k++
		return nil
	})
	if err != nil {
		return nil, err
	}
	for cur < len(shards)-1 { // a shard of nothing (no outputs at all)
		if err := next(); err != nil {
			return nil, err
		}
	}
	if err := finish(); err != nil {
		return nil, err
	}
	if err := safetensors.WriteIndex(out.Path(safetensors.IndexFileName), weightMap, total); err != nil {
		return nil, err
	}
	return append(files, safetensors.IndexFileName), nil
}

// reserveNote adds to a failed reservation of one of n output files what
// all of them need, when the disk is full.
func reserveNote(err error, n int, what string, total int64) string {
	if n < 2 || !errors.Is(err, blockio.ErrNoSpace) {
		return ""
	}
	return fmt.Sprintf("; the %d %s of the output need %s in all", n, what, HumanBytes(total))
}
