package exec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// This file reads the rank files of an MCA checkpoint (MCA -> HF, every
// layout) and merges them into the global weights the executor takes.

// rankSet is the opened rank files of an MCA checkpoint.
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
