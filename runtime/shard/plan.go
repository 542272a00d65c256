package shard

import (
	"fmt"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// A GlobalTensor describes a global MCA weight without its data. For a
// weight produced as stacked components (swiglu gate/up, gdn parts)
// Components holds their row counts and Shape is the concatenated shape.
type GlobalTensor struct {
	Name       string
	DType      tensor.DType
	Shape      tensor.Shape
	Components []int64
}

// Bytes returns the size of the tensor's data.
func (g GlobalTensor) Bytes() int64 { return g.Shape.NumElements() * int64(g.DType.Size()) }

// A WritePlan lists, for every rank file of a layout, the tensors it will
// hold, in order, with their sizes and where their bytes come from.
type WritePlan struct {
	Files []FilePlan // in [Ranks] order
}

// A FilePlan is one rank file (iter_XXXXXXX/<Dir>/model_optim_rng.pt).
type FilePlan struct {
	Rank    Rank
	Dir     string
	Entries []Entry // by stage, then in the order the globals were given
}

// An Entry is one local tensor of a rank file.
type Entry struct {
	Stage int
	Key   string // "model" or "model<Stage>"
	Name  string
	DType tensor.DType
	Shape tensor.Shape
	// Parts fill the tensor; a single part at offset 0 except for a legacy
	// grouped GEMM tensor, which has one part per local expert.
	Parts []Part
}

// Bytes returns the size of the entry's data.
func (e Entry) Bytes() int64 { return e.Shape.NumElements() * int64(e.DType.Size()) }

// Bytes returns the total size of the file's tensor data.
func (f FilePlan) Bytes() int64 {
	var n int64
	for _, e := range f.Entries {
		n += e.Bytes()
	}
	return n
}

// PlanWrite plans the rank files for a model whose global MCA weights are
// globals (in the order a writer will read them). Every global weight's
// [Sharder.Split] pieces land exactly in the entries listed here: piece
// (Rank, Stage, Name) goes at Offset into the entry of that name.
func (s *Sharder) PlanWrite(globals []GlobalTensor) (*WritePlan, error) {
	g := s.g
	ranks := Ranks(g.Layout)
	index := make(map[Rank]int, len(ranks))
	type pending struct {
		stage   int
		seq     int
		e       Entry
		offsets map[int64]bool
	}
	type stageName struct {
		stage int
		name  string
	}
	perFile := make([]map[stageName]*pending, len(ranks))
	for i, r := range ranks {
		index[r] = i
		perFile[i] = map[stageName]*pending{}
	}
	seq := 0
	for _, gt := range globals {
		if err := gt.validate(); err != nil {
			return nil, err
		}
		targets, err := s.targets(gt.Name, gt.DType, gt.Shape, gt.Components)
		if err != nil {
			return nil, err
		}
		for _, t := range targets {
			var ferr error
			t.expand(g, func(rk Rank, vp int, p Part, _ int) {
				if ferr != nil {
					return
				}
				key := stageName{vp, t.local}
				f := perFile[index[rk]]
				pe, ok := f[key]
				if !ok {
					pe = &pending{stage: vp, seq: seq,
						e: Entry{Stage: vp, Key: StageKey(vp, g.Layout), Name: t.local, DType: gt.DType, Shape: t.shape}}
					f[key] = pe
					seq++
				} else if pe.e.DType != gt.DType || !pe.e.Shape.Equal(t.shape) || pe.offsets[p.Offset] || !p.Transpose {
					ferr = fmt.Errorf("rank file %s, %s: tensor %q is produced twice (by %q and %q)",
						RankDir(rk, g.Layout), StageKey(vp, g.Layout), t.local, pe.e.Parts[0].Global, gt.Name)
					return
				}
				if p.Transpose { // legacy grouped: one part per local expert
					if pe.offsets == nil {
						pe.offsets = map[int64]bool{}
					}
					pe.offsets[p.Offset] = true
				}
				pe.e.Parts = append(pe.e.Parts, p)
			})
			if ferr != nil {
				return nil, ferr
			}
		}
	}
	plan := &WritePlan{Files: make([]FilePlan, len(ranks))}
	for i, r := range ranks {
		ps := make([]*pending, 0, len(perFile[i]))
		for _, pe := range perFile[i] {
			ps = append(ps, pe)
		}
		sort.Slice(ps, func(a, b int) bool {
			if ps[a].stage != ps[b].stage {
				return ps[a].stage < ps[b].stage
			}
			return ps[a].seq < ps[b].seq
		})
		fp := FilePlan{Rank: r, Dir: RankDir(r, g.Layout), Entries: make([]Entry, len(ps))}
		for j, pe := range ps {
			e := pe.e
			if want := e.Bytes(); partBytes(e) != want {
				return nil, fmt.Errorf("rank file %s, %s: grouped tensor %q gets %d of its %d expert blocks; every local expert of the layer must be among the globals",
					fp.Dir, e.Key, e.Name, len(e.Parts), g.perEP)
			}
			fp.Entries[j] = e
		}
		plan.Files[i] = fp
	}
	return plan, nil
}

func partBytes(e Entry) int64 {
	var n int64
	for _, p := range e.Parts {
		n += p.Shape.NumElements() * int64(e.DType.Size())
	}
	return n
}

func (gt GlobalTensor) validate() error {
	if gt.DType.Size() == 0 {
		return fmt.Errorf("weight %q: invalid dtype %v", gt.Name, gt.DType)
	}
	if gt.Shape.NumElements() < 0 {
		return fmt.Errorf("weight %q: invalid shape %v", gt.Name, gt.Shape)
	}
	if gt.Components != nil {
		var sum int64
		for _, c := range gt.Components {
			if c < 0 {
				return fmt.Errorf("weight %q: negative component rows %v", gt.Name, gt.Components)
			}
			sum += c
		}
		if len(gt.Shape) == 0 || sum != gt.Shape[0] {
			return fmt.Errorf("weight %q: component rows %v do not add up to dim 0 of %v", gt.Name, gt.Components, gt.Shape)
		}
	}
	return nil
}

// A RankFile describes one rank file found on disk for [Sharder.PlanRead]:
// its rank, the keys of its state dict and its tensors.
type RankFile struct {
	Rank    Rank
	Keys    []string // "model", or "model0", "model1", …
	Tensors []LocalTensor
}

// A LocalTensor is a tensor of a rank file, without data.
type LocalTensor struct {
	Stage int
	Name  string
	DType tensor.DType
	Shape tensor.Shape
}

// A LocalRef names one local tensor.
type LocalRef struct {
	Rank  Rank
	Stage int
	Name  string
}

// A ReadPlan groups the local tensors of a checkpoint into independent
// merges: passing the tensors of one group's Members to [Sharder.Merge]
// yields exactly its Globals.
type ReadPlan struct {
	Groups []ReadGroup
}

// A ReadGroup is one merge.
type ReadGroup struct {
	Members []LocalRef
	Globals []GlobalTensor
}

// PlanRead checks that files are a complete checkpoint of the layout —
// every rank file present, every state-dict key, every tensor-parallel
// share of every weight — and groups its tensors into merges, in the order
// of the rank files, stages and tensors given. The tied LM-head copy on
// the last stage is grouped with the embedding it must equal.
func (s *Sharder) PlanRead(files []RankFile) (*ReadPlan, error) {
	g := s.g
	want := Ranks(g.Layout)
	seen := map[Rank]bool{}
	for _, f := range files {
		if f.Rank.TP < 0 || f.Rank.TP >= g.TP || f.Rank.PP < 0 || f.Rank.PP >= g.PP || f.Rank.EP < 0 || f.Rank.EP >= g.EP {
			return nil, fmt.Errorf("rank file %v is outside the layout (TP %d, PP %d, EP %d)", f.Rank, g.TP, g.PP, g.EP)
		}
		if seen[f.Rank] {
			return nil, fmt.Errorf("rank file %s is given twice", RankDir(f.Rank, g.Layout))
		}
		seen[f.Rank] = true
	}
	var missing []string
	for _, r := range want {
		if !seen[r] {
			missing = append(missing, RankDir(r, g.Layout))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing rank file%s %s (the layout has %d)", plural(len(missing)), strings.Join(missing, ", "), len(want))
	}
	keys := StageKeys(g.Layout)
	type loc struct {
		LocalRef
		t LocalTensor
	}
	var locs []loc
	for _, f := range files {
		dir := RankDir(f.Rank, g.Layout)
		have := map[string]bool{}
		for _, k := range f.Keys {
			if _, err := ParseStageKey(k, g.Layout); err != nil {
				return nil, fmt.Errorf("rank file %s: %w", dir, err)
			}
			have[k] = true
		}
		for _, k := range keys {
			if !have[k] {
				return nil, fmt.Errorf("rank file %s has no %q entry (found %q)", dir, k, f.Keys)
			}
		}
		names := map[LocalRef]bool{}
		for _, t := range f.Tensors {
			lr := LocalRef{Rank: f.Rank, Stage: t.Stage, Name: t.Name}
			if names[lr] {
				return nil, fmt.Errorf("rank file %s, %s: tensor %q appears twice", dir, StageKey(t.Stage, g.Layout), t.Name)
			}
			names[lr] = true
			locs = append(locs, loc{lr, t})
		}
	}
	groups, order, err := s.groupMeta(len(locs), func(i int) (LocalRef, LocalTensor) { return locs[i].LocalRef, locs[i].t })
	if err != nil {
		return nil, err
	}
	// Union the globals that share a local tensor (the experts of a legacy
	// grouped tensor) into one read group.
	parent := make([]int, len(order))
	for i := range parent {
		parent[i] = i
	}
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	owner := map[LocalRef]int{}
	for i, name := range order {
		for _, m := range groups[name] {
			lr := LocalRef{m.rank, m.stage, m.name}
			if j, ok := owner[lr]; ok {
				a, b := find(i), find(j)
				if a != b {
					parent[max(a, b)] = min(a, b)
				}
			} else {
				owner[lr] = i
			}
		}
	}
	plan := &ReadPlan{}
	at := map[int]int{}
	inGroup := map[LocalRef]int{} // local tensor → read group holding it
	for i, name := range order {
		gt, err := s.mergeShape(name, groups[name])
		if err != nil {
			return nil, err
		}
		root := find(i)
		gi, ok := at[root]
		if !ok {
			gi = len(plan.Groups)
			at[root] = gi
			plan.Groups = append(plan.Groups, ReadGroup{})
		}
		rg := &plan.Groups[gi]
		rg.Globals = append(rg.Globals, gt)
		for _, m := range groups[name] {
			lr := LocalRef{m.rank, m.stage, m.name}
			if _, dup := inGroup[lr]; !dup {
				inGroup[lr] = gi
				rg.Members = append(rg.Members, lr)
			}
		}
	}
	if err := s.checkComplete(plan, locs2map(locs, func(l loc) (LocalRef, LocalTensor) { return l.LocalRef, l.t })); err != nil {
		return nil, err
	}
	return plan, nil
}

func locs2map[T any](ls []T, f func(T) (LocalRef, LocalTensor)) map[LocalRef]LocalTensor {
	m := make(map[LocalRef]LocalTensor, len(ls))
	for _, l := range ls {
		r, t := f(l)
		m[r] = t
	}
	return m
}

// checkComplete re-plans the writing of the merged globals and requires
// the rank files to hold exactly those tensors with those shapes: a tensor
// missing from one rank file, or one that should not be there, is an
// error naming it.
func (s *Sharder) checkComplete(plan *ReadPlan, have map[LocalRef]LocalTensor) error {
	var globals []GlobalTensor
	for _, g := range plan.Groups {
		globals = append(globals, g.Globals...)
	}
	wp, err := s.PlanWrite(globals)
	if err != nil {
		return fmt.Errorf("the merged weights cannot be placed back: %w", err)
	}
	l := s.g.Layout
	want := map[LocalRef]bool{}
	for _, f := range wp.Files {
		for _, e := range f.Entries {
			lr := LocalRef{f.Rank, e.Stage, e.Name}
			want[lr] = true
			t, ok := have[lr]
			switch {
			case !ok:
				return fmt.Errorf("rank file %s, %s: tensor %q is missing (it holds a share of %q)", f.Dir, e.Key, e.Name, e.Parts[0].Global)
			case t.DType != e.DType || !t.Shape.Equal(e.Shape):
				return fmt.Errorf("rank file %s, %s: tensor %q is %v%v, but the layout puts %v%v there", f.Dir, e.Key, e.Name, t.DType, t.Shape, e.DType, e.Shape)
			}
		}
	}
	var extra []LocalRef
	for lr := range have {
		if !want[lr] {
			extra = append(extra, lr)
		}
	}
	if len(extra) > 0 {
		sort.Slice(extra, func(i, j int) bool {
			a, b := extra[i], extra[j]
			if a.Rank != b.Rank {
				return RankDir(a.Rank, l) < RankDir(b.Rank, l)
			}
			if a.Stage != b.Stage {
				return a.Stage < b.Stage
			}
			return a.Name < b.Name
		})
		lr := extra[0]
		return fmt.Errorf("rank file %s, %s: tensor %q is not where the layout puts the weight it belongs to", RankDir(lr.Rank, l), StageKey(lr.Stage, l), lr.Name)
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// metaMember is a member without data.
type metaMember struct {
	member
	dtype tensor.DType
	shape tensor.Shape
}

func (s *Sharder) groupMeta(n int, at func(i int) (LocalRef, LocalTensor)) (map[string][]metaMember, []string, error) {
	groups := map[string][]metaMember{}
	var order []string
	for i := range n {
		lr, t := at(i)
		refs, err := s.resolveIn(lr.Rank, lr.Stage, lr.Name)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range refs {
			if _, ok := groups[r.global]; !ok {
				order = append(order, r.global)
			}
			groups[r.global] = append(groups[r.global], metaMember{
				member: member{ref: r, rank: lr.Rank, stage: lr.Stage, name: lr.Name},
				dtype:  t.DType, shape: t.Shape,
			})
		}
	}
	return groups, order, nil
}

// mergeShape is [Sharder.mergeOne] on shapes: it checks that every share
// is present and that the shares fit together, and returns the global
// weight's description.
func (s *Sharder) mergeShape(name string, mms []metaMember) (GlobalTensor, error) {
	ms := make([]member, len(mms))
	for i, m := range mms {
		ms[i] = m.member
	}
	slots, err := s.slots(name, ms)
	if err != nil {
		return GlobalTensor{}, err
	}
	shares := make([]tensor.Shape, len(slots))
	var dt tensor.DType
	for r, sl := range slots {
		first := mms[sl[0]]
		sh := first.shape
		if first.sub >= 0 {
			b, a, err := s.legacyBlockShape(first.name, sh, first.rowish)
			if err != nil {
				return GlobalTensor{}, fmt.Errorf("%s: %w", first.where(s.g.Layout), err)
			}
			sh = tensor.Shape{a, b} // transposed back
		}
		for _, i := range sl[1:] {
			x := mms[i]
			if x.dtype != first.dtype || !x.shape.Equal(first.shape) {
				return GlobalTensor{}, fmt.Errorf("weight %q: replicated copies differ: %s is %v%v, %s is %v%v",
					name, x.where(s.g.Layout), x.dtype, x.shape, first.where(s.g.Layout), first.dtype, first.shape)
			}
		}
		if r == 0 {
			dt = first.dtype
		} else if first.dtype != dt {
			return GlobalTensor{}, fmt.Errorf("weight %q: the share in %s is %v, the share in %s is %v",
				name, s.shareAt(ms, slots, 0), dt, s.shareAt(ms, slots, r), first.dtype)
		}
		shares[r] = sh
	}
	gt := GlobalTensor{Name: name, DType: dt}
	cls := ms[0].class
	switch cls {
	case Duplicated:
		gt.Shape = shares[0]
		return gt, nil
	case Column, Row, Swiglu, GDN:
		d := 0
		if cls == Row {
			d = 1
		}
		gt.Shape = append(tensor.Shape(nil), shares[0]...)
		if len(gt.Shape) <= d {
			return GlobalTensor{}, fmt.Errorf("weight %q is %v but the share in %s has shape %v", name, cls, s.shareAt(ms, slots, 0), shares[0])
		}
		gt.Shape[d] = 0
		for r, sh := range shares {
			mismatch := len(sh) != len(shares[0])
			for i := range sh {
				if !mismatch && i != d && sh[i] != shares[0][i] {
					mismatch = true
				}
			}
			if mismatch {
				return GlobalTensor{}, fmt.Errorf("weight %q: the share in %s is %v, the share in %s is %v: they do not concatenate along dim %d",
					name, s.shareAt(ms, slots, 0), shares[0], s.shareAt(ms, slots, r), sh, d)
			}
			gt.Shape[d] += sh[d]
		}
		var per []int64
		switch cls {
		case Swiglu:
			if shares[0][0]%2 != 0 {
				return GlobalTensor{}, fmt.Errorf("swiglu weight %q: the share in %s has shape %v, which does not halve into gate and up",
					name, s.shareAt(ms, slots, 0), shares[0])
			}
			per = []int64{shares[0][0] / 2, shares[0][0] / 2}
		case GDN:
			if per, err = s.gdnShareRows(name, len(shares)); err != nil {
				return GlobalTensor{}, s.inShares(err, ms, slots)
			}
			var sum int64
			for _, r := range per {
				sum += r
			}
			if sum != shares[0][0] {
				return GlobalTensor{}, s.inShares(fmt.Errorf("gdn weight %q: shares have %d rows, the linear_* sizes give %d", name, shares[0][0], sum), ms, slots)
			}
		default:
			return gt, nil
		}
		for r, sh := range shares {
			if sh[0] != shares[0][0] {
				return GlobalTensor{}, fmt.Errorf("%v weight %q: the share in %s has %d rows, the share in %s has %d",
					cls, name, s.shareAt(ms, slots, 0), shares[0][0], s.shareAt(ms, slots, r), sh[0])
			}
		}
		gt.Components = make([]int64, len(per))
		for i, r := range per {
			gt.Components[i] = r * int64(len(shares))
		}
		return gt, nil
	}
	return GlobalTensor{}, fmt.Errorf("weight %q: class %v cannot be merged", name, cls)
}
