package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// This file writes the rank files of an MCA checkpoint (HF -> MCA, every
// layout): the shard write plan's files, written concurrently, each by its
// own executor.

// progressSum adds the progress of concurrent executors.
type progressSum struct {
	mu  sync.Mutex
	sum Progress // the totals are set at the start
	fn  func(Progress)
}

// add counts n more bytes and k more tensors and reports the sum.
func (p *progressSum) add(n int64, k int) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	p.sum.Bytes += n
	p.sum.Tensors += k
	p.fn(p.sum)
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
	tensors := 0
	for _, f := range files {
		total += f.Bytes()
		tensors += len(f.Entries)
	}
	prog := &progressSum{sum: Progress{TotalBytes: total, TotalTensors: tensors}, fn: opts.Progress}
	index := rankIndex(sh.Layout())
	stampOf := stamper(p.Config)
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
		path := out.Path(rels[i])
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, 0, err
		}
		if err := removeStaleWriters(path, opts.Notice); err != nil {
			return nil, 0, err
		}
		w, err := torchsave.Create(path, rankRoot(sh, f), &torchsave.Options{Sync: opts.Sync, PageCache: opts.pageCache})
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
				var last Progress
				o.Progress = func(p Progress) {
					prog.add(p.Bytes-last.Bytes, p.Tensors-last.Tensors)
					last = p
				}
				ex := newExecutor(p, o, input)
				path := out.Path(rels[i])
				st := stampOf(index[files[i].Rank], files[i].Dir)
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
			ex.tensorDone()
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
		if err := ex.readPieces(b.buf[pc.Offset:], pc.Data.Pieces()); err != nil {
			return fmt.Errorf("%s: %w", path, err)
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
				if ex.computedFor(pieces, fp.Rank, vp) {
					// The split computed (a transpose) from an FP8
					// weight's untouched bytes: decode them, split again.
					if err := ex.materialize(); err != nil {
						return err
					}
					if pieces, err = sh.Split(name, t); err != nil {
						return err
					}
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
						ex.tensorDone()
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
