package exec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// This file connects the conversions to runtime/shard, which owns the
// placement rules: the op results are joined into global MCA weights
// (shard.Stacks), which are split into the rank files of a parallel layout
// (HF → MCA); the rank files are merged back into global weights and cut
// into the components the inverse ops read (MCA → HF).

// Layout is the parallel layout of an MCA checkpoint: the layout of
// runtime/shard, where its rules live (sizes, divisibility, pipeline
// split, rank directory names). The zero value is the single rank file,
// a 1x1x1 layout.
type Layout = shard.Layout

// newStacks returns the stacked-weight rules (swiglu, gdn) of the model's
// classification at the layout mc records.
func newStacks(m *Model, mc *MCAConfig) (*shard.Stacks, error) {
	return shard.NewStacks(mc.Layout(), shardClassification(m))
}

// joinStack returns the global MCA weight name of an op result v: the
// components of a stacked swiglu or gdn result concatenated.
func joinStack(s *shard.Stacks, name string, v ops.Value) (tensor.Tensor, error) {
	return s.Join(name, v.Tensor, v.Stacked)
}

// cutStack returns the op input of the global MCA weight t: swiglu and
// gdn weights cut into their components.
func cutStack(s *shard.Stacks, name string, t tensor.Tensor) (ops.Value, error) {
	st, stacked, err := s.Cut(name, t)
	if err != nil || !stacked {
		return ops.TensorValue(t), err
	}
	return ops.StackedValue(st), nil
}

// shardClassification converts the template's effective parallel
// classification.
func shardClassification(m *Model) shard.Classification {
	e := m.Parallel
	maps := func(k string) []shard.MapEntry {
		var out []shard.MapEntry
		for _, me := range e.Maps[k] {
			out = append(out, shard.MapEntry{From: me.From, To: me.To})
		}
		return out
	}
	return shard.Classification{
		PreProcess:        e.Lists["pre_process"],
		PostProcess:       e.Lists["post_process"],
		Duplicated:        e.Lists["duplicated"],
		Column:            e.Lists["column"],
		Row:               e.Lists["row"],
		Swiglu:            e.Lists["swiglu"],
		GDN:               e.Lists["gdn"],
		GroupedDuplicated: maps("grouped_duplicated"),
		GroupedColumn:     maps("grouped_column"),
		GroupedRow:        maps("grouped_row"),
		TEToLocal:         maps("te_to_local"),
	}
}

func newSharder(m *Model, mc *MCAConfig) (*shard.Sharder, error) {
	// The megatron_llama set is already merged into m.Parallel (NewModel).
	sl := mc.Layout()
	if err := sl.Validate(); err != nil {
		return nil, fmt.Errorf("parallel layout: %w", err)
	}
	sh, err := shard.New(sl, shardClassification(m), nil)
	if err != nil {
		return nil, fmt.Errorf("parallel layout: %w", err)
	}
	return sh, nil
}

// progressSum adds the progress of concurrent executors.
type progressSum struct {
	mu    sync.Mutex
	done  int64
	total int64
	fn    func(done, total int64)
}

func (p *progressSum) add(n int64) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	p.done += n
	p.fn(p.done, p.total)
	p.mu.Unlock()
}

// rankIndex returns the index of every rank file of l in shard.Ranks
// order (ROLL's rank-file order, the indices of Options.Ranks).
func rankIndex(l shard.Layout) map[shard.Rank]int {
	index := map[shard.Rank]int{}
	for i, r := range shard.Ranks(l) {
		index[r] = i
	}
	return index
}

// writeMCARanks writes the rank files of files (all those of a write
// plan, or the ones a job selected) under iter_0000001, each followed by its run stamp. Every rank file
// is created and its disk space reserved before the first tensor byte is
// written, so that a full disk is reported first, naming the file; a
// rank job (out written in place) first removes the temporaries its
// killed predecessors left (removeStaleWriters). Rank files are then
// written concurrently, each by its own executor on the shared input
// mapping; each file is written stage by stage, running the steps whose
// outputs it holds and splitting their results. It returns the files
// written (relative to the output) and the bytes written.
func writeMCARanks(ctx context.Context, p *Plan, opts Options, sh *shard.Sharder, files []shard.FilePlan, out *output, input func(int) inputData) ([]string, int64, error) {
	var total int64
	for _, f := range files {
		total += f.Bytes()
	}
	prog := &progressSum{total: total, fn: opts.Progress}
	index := rankIndex(sh.Layout())
	rels := make([]string, len(files))
	writers := make([]*torchsave.Writer, len(files))
	defer func() {
		for _, w := range writers {
			if w != nil {
				w.Abort()
			}
		}
	}()
	for i, f := range files {
		rels[i] = filepath.Join("iter_0000001", f.Dir, MCACheckpointPT)
		path := out.path(rels[i])
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, 0, err
		}
		if err := removeStaleWriters(path, opts.Notice); err != nil {
			return nil, 0, err
		}
		w, err := torchsave.Create(path, rankRoot(sh, f), &torchsave.Options{Sync: opts.Sync})
		if err != nil {
			return nil, 0, fmt.Errorf("%w%s", err, reserveNote(err, len(files), "rank files", total))
		}
		writers[i] = w
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := min(len(files), max(1, runtime.GOMAXPROCS(0)), 4)
	jobs := make(chan int)
	errs := make([]error, len(files))
	written := make([]int64, len(files))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				o := opts
				var last int64
				o.Progress = func(done, _ int64) { prog.add(done - last); last = done }
				ex := newExecutor(p, o, input)
				path := out.path(rels[i])
				st := stampFor(p.Config, index[files[i].Rank], files[i].Dir)
				errs[i] = writeStamped(path, st, opts.Sync, func() error { return ex.writeRankFile(ctx, sh, files[i], writers[i], path) })
				written[i] = ex.done
				ex.close()
				writers[i] = nil // closed or aborted; its buffers can go
				if errs[i] != nil {
					cancel()
				}
			}
		}()
	}
	for i := range files {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	var n int64
	for i, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, 0, err
		}
		n += written[i]
	}
	for _, err := range errs {
		if err != nil {
			return nil, 0, err
		}
	}
	return rels, n, nil
}

// rankRoot is the value tree of a rank file: {"model": ...} or
// {"model0": ..., "model1": ...}, each an ordered state dict of the
// file's entries of that stage.
func rankRoot(sh *shard.Sharder, fp shard.FilePlan) *torchsave.Dict {
	keys := shard.StageKeys(sh.Layout())
	stages := make([]*torchsave.Dict, len(keys))
	for i := range keys {
		stages[i] = &torchsave.Dict{Ordered: true}
	}
	for _, e := range fp.Entries {
		stages[e.Stage].Items = append(stages[e.Stage].Items, torchsave.Item{Key: e.Name, Value: torchsave.TensorSpec{DType: e.DType, Shape: e.Shape}})
	}
	root := &torchsave.Dict{}
	for i, k := range keys {
		root.Items = append(root.Items, torchsave.Item{Key: k, Value: stages[i]})
	}
	return root
}

// rankBufferHook, when set (by tests), is called after each rank file is
// written with the most bytes its pending buffers held at a time and the
// number of buffers allocated.
var rankBufferHook func(path string, peak int64, allocs int)

// writeRankFile writes one rank file at path through w, created with
// rankRoot(sh, fp) as its value tree.
func (ex *executor) writeRankFile(ctx context.Context, sh *shard.Sharder, fp shard.FilePlan, w *torchsave.Writer, path string) error {
	keys := shard.StageKeys(sh.Layout())
	need := make([]map[string]bool, len(keys))
	for i := range keys {
		need[i] = map[string]bool{}
	}
	for _, e := range fp.Entries {
		for _, part := range e.Parts {
			need[e.Stage][part.Global] = true
		}
	}
	defer w.Abort()
	// Entries are written in plan order. A piece of the current entry
	// that continues it is streamed; a piece of another entry, or of a
	// legacy grouped tensor (whose expert blocks arrive interleaved with
	// those of the layer's other grouped tensor), is copied into that
	// entry's buffer, written once it is complete and its turn has come.
	// Buffers are reused: at a time, they hold the grouped tensors of one
	// layer.
	index := make(map[string]int, len(fp.Entries))
	for i, e := range fp.Entries {
		index[fmt.Sprint(e.Stage, "/", e.Name)] = i
	}
	type buffered struct {
		buf    []byte
		filled int64
	}
	pending := map[int]*buffered{}
	var free [][]byte
	var held, peak int64 // bytes of the pending buffers
	allocs := 0
	k := 0            // current entry of fp.Entries
	var inEntry int64 // bytes of it written
	flush := func() error {
		for k < len(fp.Entries) {
			b := pending[k]
			e := fp.Entries[k]
			if b == nil || b.filled < e.Bytes() {
				return nil
			}
			t, err := tensor.New(e.DType, e.Shape, b.buf)
			if err != nil {
				return fmt.Errorf("%s: %s %q: %v", path, e.Key, e.Name, err)
			}
			if err := ex.write(w, t); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			delete(pending, k)
			free = append(free, b.buf)
			held -= int64(len(b.buf))
			k++
		}
		return nil
	}
	buffer := func(j int, pc shard.Piece) error {
		e := fp.Entries[j]
		b := pending[j]
		if b == nil {
			n := e.Bytes()
			b = &buffered{}
			for i, f := range free {
				if int64(cap(f)) >= n {
					b.buf = f[:n]
					free = append(free[:i], free[i+1:]...)
					break
				}
			}
			if b.buf == nil {
				b.buf = make([]byte, n)
				allocs++
			}
			pending[j] = b
			held += n
			peak = max(peak, held)
		}
		if pc.Offset < 0 || pc.Offset+pc.Data.Len() > int64(len(b.buf)) {
			return fmt.Errorf("%s: internal error: piece of %s %q at %d+%d beyond its %d bytes", path, e.Key, e.Name, pc.Offset, pc.Data.Len(), len(b.buf))
		}
		off := pc.Offset
		for _, p := range pc.Data.Pieces() {
			off += int64(copy(b.buf[off:], p))
		}
		b.filled += pc.Data.Len()
		return nil
	}
	for vp := range keys {
		if len(need[vp]) == 0 {
			continue
		}
		for si := range ex.plan.Steps {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			st := &ex.plan.Steps[si]
			if st.Dropped {
				continue
			}
			wanted := false
			for _, o := range st.Outputs {
				if need[vp][o.Name] {
					wanted = true
					break
				}
			}
			if !wanted {
				continue
			}
			ts, err := ex.run(st)
			if err != nil {
				return err
			}
			for j, t := range ts {
				name := st.Outputs[j].Name
				if !need[vp][name] {
					continue
				}
				pieces, err := sh.Split(name, t)
				if err != nil {
					return err
				}
				for _, pc := range pieces {
					if pc.Rank != fp.Rank || pc.Stage != vp {
						continue
					}
					ei, ok := index[fmt.Sprint(pc.Stage, "/", pc.Name)]
					if !ok || ei < k {
						return fmt.Errorf("%s: internal error: piece %q of %q is not among the tensors still to write", path, pc.Name, name)
					}
					e := fp.Entries[ei]
					if ei != k || len(e.Parts) != 1 || pending[k] != nil {
						if err := buffer(ei, pc); err != nil {
							return err
						}
						if err := flush(); err != nil {
							return err
						}
						continue
					}
					if pc.Offset != inEntry {
						return fmt.Errorf("%s: internal error: writing %s %q at %d, the plan has %s %q at %d", path,
							shard.StageKey(pc.Stage, sh.Layout()), pc.Name, pc.Offset, e.Key, e.Name, inEntry)
					}
					if err := ex.write(w, pc.Data); err != nil {
						return fmt.Errorf("%s: %w", path, err)
					}
					inEntry += pc.Data.Len()
					if inEntry == e.Bytes() {
						k++
						inEntry = 0
						if err := flush(); err != nil {
							return err
						}
					}
				}
			}
			ex.releaseInputs(st)
		}
	}
	if k != len(fp.Entries) {
		return fmt.Errorf("%s: internal error: %d of %d planned tensors written", path, k, len(fp.Entries))
	}
	if rankBufferHook != nil {
		rankBufferHook(path, peak, allocs)
	}
	return w.Close()
}

// convertHFToMCALayout writes the rank files of a parallel layout.
func convertHFToMCALayout(ctx context.Context, m *Model, mc *MCAConfig, plan *Plan, opts Options, out *output, input func(int) inputData) ([]string, int64, error) {
	sh, wp, err := rankWritePlan(m, mc, plan)
	if err != nil {
		return nil, 0, err
	}
	return writeMCARanks(ctx, plan, opts, sh, wp.Files, out, input)
}

// rankSet is the opened rank files of a parallel MCA checkpoint.
type rankSet struct {
	sh      *shard.Sharder
	iterDir string
	files   []*torchsave.File
	index   map[shard.Rank]int
	// tensors by rank file index, then "key/name"
	tensors []map[string]*torchsave.Tensor
	offs    []map[*torchsave.Tensor]int64
	rp      *shard.ReadPlan
}

func (rs *rankSet) close() {
	for _, f := range rs.files {
		if f != nil {
			f.Close()
		}
	}
}

// openRankSet opens every rank file of the layout under iterDir: a
// missing rank file is an error naming it.
func openRankSet(m *Model, mc *MCAConfig, configPath, iterDir string) (_ *rankSet, err error) {
	sh, err := newSharder(m, mc)
	if err != nil {
		return nil, err
	}
	rs := &rankSet{sh: sh, iterDir: iterDir, index: map[shard.Rank]int{}}
	defer func() {
		if err != nil {
			rs.close()
		}
	}()
	l := sh.Layout()
	ranks := shard.Ranks(l)
	var rfs []shard.RankFile
	for _, r := range ranks {
		path := filepath.Join(iterDir, shard.RankDir(r, l), MCACheckpointPT)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("rank file %s (rank %v) is missing: %s records tp=%d pp=%d vpp=%d ep=%d etp=%d", path, r, configPath, l.TP, l.PP, l.VPP, l.EP, l.ETP)
		}
		f, err := torchsave.Open(path)
		if err != nil {
			return nil, err
		}
		rs.index[r] = len(rs.files)
		rs.files = append(rs.files, f)
		root, ok := f.Root.(*torchsave.Dict)
		if !ok {
			return nil, fmt.Errorf("%s: the checkpoint is not a dict", path)
		}
		if err := checkStateDicts(path, root); err != nil {
			return nil, err
		}
		rf := shard.RankFile{Rank: r}
		for _, it := range root.Items {
			if k, ok := it.Key.(string); ok && strings.HasPrefix(k, "model") {
				rf.Keys = append(rf.Keys, k)
			}
		}
		offs := map[string]int64{}
		for _, rec := range f.Records() {
			offs[rec.Name] = rec.Offset
		}
		byName := map[string]*torchsave.Tensor{}
		toff := map[*torchsave.Tensor]int64{}
		for _, t := range f.Tensors() {
			key, name, ok := strings.Cut(t.Name, "/")
			if !ok || !strings.HasPrefix(key, "model") || strings.HasSuffix(name, "._extra_state") {
				continue
			}
			if strings.Contains(name, "/") {
				return nil, fmt.Errorf("%s: tensor %q: nested state dicts are not supported", path, t.Name)
			}
			vp, err := shard.ParseStageKey(key, l)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", path, err)
			}
			rf.Tensors = append(rf.Tensors, shard.LocalTensor{Stage: vp, Name: name, DType: t.DType, Shape: t.Shape})
			byName[shard.StageKey(vp, l)+"/"+name] = t
			if off, ok := offs["data/"+t.Storage]; ok {
				toff[t] = off + t.StorageOffset*int64(t.DType.Size())
			} else {
				toff[t] = -1
			}
		}
		rfs = append(rfs, rf)
		rs.tensors = append(rs.tensors, byName)
		rs.offs = append(rs.offs, toff)
	}
	if rs.rp, err = sh.PlanRead(rfs); err != nil {
		return nil, fmt.Errorf("%s: %w", iterDir, err)
	}
	return rs, nil
}

// mergeInput serves the merged global weights of a rankSet to the
// executor, merging one read group at a time.
type mergeInput struct {
	rs      *rankSet
	groupOf []int // input index → read group
	mu      sync.Mutex
	cache   map[int]map[string]tensor.Tensor
	left    map[int]int // globals of a cached group not yet served
}

// metas lists the global weights of the checkpoint, group by group.
func (mi *mergeInput) metas(dir string) []TensorMeta {
	var metas []TensorMeta
	l := mi.rs.sh.Layout()
	for g, grp := range mi.rs.rp.Groups {
		file := dir
		if len(grp.Members) > 0 {
			file = filepath.Join(dir, shard.RankDir(grp.Members[0].Rank, l), MCACheckpointPT)
		}
		for _, gt := range grp.Globals {
			metas = append(metas, TensorMeta{Name: gt.Name, DType: gt.DType, Shape: gt.Shape, Size: gt.Bytes(), File: file})
			mi.groupOf = append(mi.groupOf, g)
		}
	}
	return metas
}

func (mi *mergeInput) locals(g int) ([]shard.Local, []inputRange, error) {
	grp := mi.rs.rp.Groups[g]
	l := mi.rs.sh.Layout()
	locals := make([]shard.Local, 0, len(grp.Members))
	var ranges []inputRange
	for _, ref := range grp.Members {
		fi, ok := mi.rs.index[ref.Rank]
		if !ok {
			return nil, nil, fmt.Errorf("internal error: no rank file for %v", ref.Rank)
		}
		tt := mi.rs.tensors[fi][shard.StageKey(ref.Stage, l)+"/"+ref.Name]
		if tt == nil {
			return nil, nil, fmt.Errorf("%s: no tensor %s/%s", mi.rs.files[fi].Path, shard.StageKey(ref.Stage, l), ref.Name)
		}
		t, err := tensor.New(tt.DType, tt.Shape, tt.Data)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %q: %v", mi.rs.files[fi].Path, tt.Name, err)
		}
		locals = append(locals, shard.Local{Rank: ref.Rank, Stage: ref.Stage, Name: ref.Name, Tensor: t})
		if s, e := addrRange(tt.Data); e > s {
			r := inputRange{start: s, end: e}
			if off := mi.rs.offs[fi][tt]; off >= 0 {
				r.path, r.off = mi.rs.files[fi].Path, off
			}
			ranges = append(ranges, r)
		}
	}
	return locals, ranges, nil
}

// tensor returns global input i, merging its group if needed, and the
// mapped ranges its bytes come from.
func (mi *mergeInput) tensor(i int, name string) (tensor.Tensor, []inputRange, error) {
	mi.mu.Lock()
	defer mi.mu.Unlock()
	g := mi.groupOf[i]
	locals, ranges, err := mi.locals(g)
	if err != nil {
		return tensor.Tensor{}, nil, err
	}
	c, ok := mi.cache[g]
	if !ok {
		globals, err := mi.rs.sh.Merge(locals)
		if err != nil {
			return tensor.Tensor{}, nil, fmt.Errorf("%s: %w", mi.rs.iterDir, err)
		}
		c = map[string]tensor.Tensor{}
		for _, gl := range globals {
			c[gl.Name] = gl.Tensor
		}
		mi.cache[g] = c
		mi.left[g] = len(mi.rs.rp.Groups[g].Globals)
	}
	t, ok := c[name]
	if !ok {
		return tensor.Tensor{}, nil, fmt.Errorf("internal error: merging the rank files gave no %q", name)
	}
	if mi.left[g]--; mi.left[g] <= 0 {
		delete(mi.cache, g)
		delete(mi.left, g)
	}
	return t, ranges, nil
}

// spans returns the address ranges of the mapped rank files.
func (rs *rankSet) spans() [][2]uintptr {
	var out [][2]uintptr
	for _, byName := range rs.tensors {
		var span [2]uintptr
		for _, t := range byName {
			s, e := addrRange(t.Data)
			if e <= s {
				continue
			}
			if span[1] == 0 {
				span = [2]uintptr{s, e}
			}
			span[0] = min(span[0], s)
			span[1] = max(span[1], e)
		}
		if span[1] > 0 {
			out = append(out, span)
		}
	}
	return out
}

// mergedValue is the executor's input value for a merged global weight.
func (ex *executor) mergedValue(i int) (ops.Value, error) {
	meta := ex.plan.Inputs[i]
	t, ranges, err := ex.merged.tensor(i, meta.Name)
	if err != nil {
		return ops.Value{}, err
	}
	ex.ranges = append(ex.ranges, ranges...)
	if t.DType != meta.DType || !t.Shape.Equal(meta.Shape) {
		return ops.Value{}, fmt.Errorf("%s: internal error: merged %q is %v, planned %v%v", meta.File, meta.Name, t, meta.DType, meta.Shape)
	}
	v, err := cutStack(ex.stacks, meta.Name, t)
	if err != nil {
		return ops.Value{}, fmt.Errorf("%s: %v", meta.File, err)
	}
	return v, nil
}
