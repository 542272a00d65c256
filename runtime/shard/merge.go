package shard

import (
	"fmt"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// A Local is one tensor of a rank file: local name Name in virtual stage
// Stage of rank file Rank.
type Local struct {
	Rank   Rank
	Stage  int
	Name   string
	Tensor tensor.Tensor
}

// A Global is a merged global MCA weight. For swiglu and gdn weights
// Stacked holds the components (gate, up; or the gdn parts), the form the
// template's inverse ops take, and Tensor is their concatenation.
type Global struct {
	Name    string
	Tensor  tensor.Tensor
	Stacked *tensor.Stacked
}

// ref says which global weight a local tensor holds a share of.
type ref struct {
	global string
	class  Class // Duplicated, Column, Row, Swiglu or GDN
	parts  int   // T: how many tensor-parallel parts the global is cut into
	slot   int   // which part this local tensor holds
	sub    int   // legacy grouped GEMM: the local expert block; -1 otherwise
	rowish bool  // legacy grouped GEMM: a weight2 (stacked along dim 0)
}

// resolve maps local tensor name of rank rk, stage vp back to the global
// weight(s) it holds; errors name the rank file and stage (see resolve).
func (s *Sharder) resolveIn(rk Rank, vp int, name string) ([]ref, error) {
	refs, err := s.resolve(rk, vp, name)
	if err != nil {
		return nil, fmt.Errorf("rank file %s, %s: %w", RankDir(rk, s.g.Layout), s.stageKey(vp), err)
	}
	return refs, nil
}

// stageKey is StageKey for a stage that may be outside the layout.
func (s *Sharder) stageKey(vp int) string {
	if vp < 0 || vp >= s.g.Layout.Normalized().VPP {
		return fmt.Sprintf("stage %d", vp)
	}
	return StageKey(vp, s.g.Layout)
}

// resolve maps local tensor name of rank rk, stage vp back to the global
// weight(s) it holds (§5.4 with revert=True): the tied LM-head copy to the
// embedding, local to global layer and expert indices, TE grouped and
// legacy grouped names to per-expert names, local (transformer_impl=local)
// norm names to TE names.
func (s *Sharder) resolve(rk Rank, vp int, name string) ([]ref, error) {
	g := s.g
	if rk.TP < 0 || rk.TP >= g.TP || rk.PP < 0 || rk.PP >= g.PP || rk.EP < 0 || rk.EP >= g.EP || vp < 0 || vp >= g.VPP {
		return nil, fmt.Errorf("tensor %q: rank %v, stage %d is outside the layout", name, rk, vp)
	}
	v := name
	if g.TiedEmbeddings && g.PP > 1 && g.isLast(rk.PP, vp) && v == OutputLayerName {
		// The last stage's copy of the tied embedding: merged as a
		// replica of the embedding, so it is checked and then dropped.
		v = EmbeddingName
	}
	n, err := rollname.ParseMCAName(v)
	if err != nil {
		return nil, err
	}
	layer := n.Layer
	if layer >= 0 && !n.MTP {
		if layer, err = g.globalLayer(rk.PP, vp, n.Layer); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
	}
	pure := n.Pure
	teK := -1
	if g.ExpertNaming() == TEGrouped {
		if d := trailingDigits(pure); d != "" && s.groupedReverseKeys.Match(pure[:len(pure)-len(d)]) {
			pure = pure[:len(pure)-len(d)]
			if teK, err = atoi(d); err != nil {
				return nil, fmt.Errorf("tensor %q: %w", name, err)
			}
		}
	}
	local := g.TransformerImpl == ImplLocal
	if local {
		if t, ok := lookup(s.localToTE, pure); ok {
			pure = t
		}
	}
	cls := s.classify(pure)
	if cls == Unclassified {
		return nil, s.unclassified(name, pure)
	}
	if local { // ROLL maps once in get_pure_name and again in _name_relocate
		if t, ok := lookup(s.localToTE, pure); ok {
			pure = t
		}
	}
	r := ref{class: cls, parts: g.TP, slot: rk.TP, sub: -1}
	expertParts := func() {
		r.parts = g.ETP
		r.slot = rk.TP % g.ETP
	}
	switch cls {
	case GroupedDuplicated, GroupedColumn, GroupedRow:
		if !s.groupedReverseKeys.Match(pure) {
			return nil, fmt.Errorf("tensor %q: with grouped GEMM, expert weights must have grouped names (%s), not %q",
				name, g.ExpertNaming(), pure)
		}
		per, ok := rollname.MatchedName(pure, s.groupedReverseNames)
		if !ok {
			return nil, fmt.Errorf("tensor %q: no per-expert name for grouped name %q", name, pure)
		}
		expertParts()
		switch cls {
		case GroupedDuplicated:
			r.class, r.parts, r.slot = Duplicated, 1, 0
		case GroupedRow:
			r.class = Row
		case GroupedColumn:
			r.class = Column
			if g.Swiglu {
				r.class = Swiglu
			}
		}
		if g.ExpertNaming() == TEGrouped {
			if teK < 0 {
				return nil, fmt.Errorf("tensor %q: a TE grouped expert weight needs the local expert index at the end of its name", name)
			}
			if teK >= g.perEP {
				return nil, fmt.Errorf("tensor %q: local expert %d is out of range (%d experts per EP rank)", name, teK, g.perEP)
			}
			r.global = rollname.AddMCAPrefix(per, n.MTP, layer, g.perEP*rk.EP+teK)
			return []ref{r}, nil
		}
		if cls == GroupedDuplicated {
			return nil, fmt.Errorf("tensor %q: grouped-duplicated weights exist only with TE grouped names", name)
		}
		refs := make([]ref, g.perEP)
		for k := range refs {
			refs[k] = r
			refs[k].sub = k
			refs[k].rowish = cls == GroupedRow
			refs[k].global = rollname.AddMCAPrefix(per, n.MTP, layer, g.perEP*rk.EP+k)
		}
		return refs, nil
	}
	expert := -1
	if n.Expert >= 0 {
		if g.perEP == 0 {
			return nil, fmt.Errorf("tensor %q is an expert weight, but num_moe_experts is 0", name)
		}
		if n.Expert >= g.perEP {
			return nil, fmt.Errorf("tensor %q: local expert %d is out of range (%d experts per EP rank)", name, n.Expert, g.perEP)
		}
		expert = g.perEP*rk.EP + n.Expert
		expertParts()
	}
	if cls == Duplicated {
		r.parts, r.slot = 1, 0
	}
	r.global = rollname.AddMCAPrefix(pure, n.MTP, layer, expert)
	return []ref{r}, nil
}

// member is one local tensor's share of a global weight.
type member struct {
	ref
	rank  Rank
	stage int
	name  string
	data  tensor.Tensor
}

func (m member) where(l Layout) string {
	return fmt.Sprintf("%s (%s, %q)", RankDir(m.rank, l), StageKey(m.stage, l), m.name)
}

// shareAt names where tensor-parallel share r of a weight is: the rank
// file, stage and local name of its first copy.
func (s *Sharder) shareAt(ms []member, slots [][]int, r int) string {
	return ms[slots[r][0]].where(s.g.Layout)
}

// inShares adds to err where every share of the weight is.
func (s *Sharder) inShares(err error, ms []member, slots [][]int) error {
	where := make([]string, len(slots))
	for r := range slots {
		where[r] = s.shareAt(ms, slots, r)
	}
	return fmt.Errorf("%w (shares in %s)", err, strings.Join(where, ", "))
}

// Merge reconstructs the global weights held by locals, which must contain
// every tensor-parallel share of each of them: a TP merge per class
// (concatenation along dim 0 for column, dim 1 for row, per component for
// swiglu and gdn), local → global names, grouped GEMM → per-expert
// weights. Every other copy of a share — duplicated weights on all tensor
// ranks, dense weights on all expert ranks, the embedding copy on the last
// stage — must be bit-identical, else Merge fails naming the weight and
// the rank files that differ. Globals come out in the order locals first
// mention them; concatenations are views of the locals' bytes, legacy
// grouped experts are transposed into new buffers.
func (s *Sharder) Merge(locals []Local) ([]Global, error) {
	groups, order, err := s.group(len(locals), func(i int) (Rank, int, string, tensor.Tensor) {
		l := locals[i]
		return l.Rank, l.Stage, l.Name, l.Tensor
	})
	if err != nil {
		return nil, err
	}
	out := make([]Global, 0, len(order))
	for _, name := range order {
		g, err := s.mergeOne(name, groups[name])
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

func (s *Sharder) group(n int, at func(i int) (Rank, int, string, tensor.Tensor)) (map[string][]member, []string, error) {
	groups := map[string][]member{}
	var order []string
	for i := range n {
		rk, vp, name, t := at(i)
		refs, err := s.resolveIn(rk, vp, name)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range refs {
			if _, ok := groups[r.global]; !ok {
				order = append(order, r.global)
			}
			groups[r.global] = append(groups[r.global], member{ref: r, rank: rk, stage: vp, name: name, data: t})
		}
	}
	return groups, order, nil
}

// slots sorts the members of one global weight by tensor-parallel part
// (as indices into ms) and checks that every part is present.
func (s *Sharder) slots(name string, ms []member) ([][]int, error) {
	first := ms[0]
	for _, m := range ms[1:] {
		if m.class != first.class || m.parts != first.parts || m.rowish != first.rowish {
			return nil, fmt.Errorf("weight %q: %s holds it as %v in %d parts, %s as %v in %d parts",
				name, first.where(s.g.Layout), first.class, first.parts, m.where(s.g.Layout), m.class, m.parts)
		}
	}
	slots := make([][]int, first.parts)
	for i, m := range ms {
		slots[m.slot] = append(slots[m.slot], i)
	}
	for r, sl := range slots {
		if len(sl) == 0 {
			rk := first.rank
			rk.TP = r
			return nil, fmt.Errorf("weight %q: missing the share of tensor-parallel rank %d (expected in rank file %s)", name, r, RankDir(rk, s.g.Layout))
		}
	}
	return slots, nil
}

// block returns a member's data: the local tensor, or for legacy grouped
// GEMM the untransposed [b, a] block of its expert.
func (s *Sharder) block(m member) (tensor.Tensor, error) {
	if m.sub < 0 {
		return m.data, nil
	}
	b, a, err := s.legacyBlockShape(m.name, m.data.Shape, m.rowish)
	if err != nil {
		return tensor.Tensor{}, err
	}
	flat, err := m.data.Reshape(tensor.Shape{int64(s.g.perEP), -1})
	if err != nil {
		return tensor.Tensor{}, err
	}
	row, err := flat.Rows(int64(m.sub), int64(m.sub)+1)
	if err != nil {
		return tensor.Tensor{}, err
	}
	return row.Reshape(tensor.Shape{b, a})
}

// legacyBlockShape returns the [b, a] shape of one expert's transposed
// block in a legacy grouped tensor: weight1 [H, n·a] holds [n, H, a],
// weight2 [n·b, H] holds [n, b, H].
func (s *Sharder) legacyBlockShape(name string, shape tensor.Shape, rowish bool) (b, a int64, err error) {
	n := int64(s.g.perEP)
	if len(shape) != 2 {
		return 0, 0, fmt.Errorf("legacy grouped tensor %q has shape %v, want 2-d", name, shape)
	}
	if rowish {
		if shape[0]%n != 0 {
			return 0, 0, fmt.Errorf("legacy grouped tensor %q: %d rows do not divide into %d experts", name, shape[0], n)
		}
		return shape[0] / n, shape[1], nil
	}
	if shape[1]%n != 0 {
		return 0, 0, fmt.Errorf("legacy grouped tensor %q: %d columns do not divide into %d experts", name, shape[1], n)
	}
	return shape[0], shape[1] / n, nil
}

func (s *Sharder) mergeOne(name string, ms []member) (Global, error) {
	slots, err := s.slots(name, ms)
	if err != nil {
		return Global{}, err
	}
	pieces := make([]tensor.Tensor, len(slots))
	for r, sl := range slots {
		ref, err := s.block(ms[sl[0]])
		if err != nil {
			return Global{}, fmt.Errorf("%s: %w", ms[sl[0]].where(s.g.Layout), err)
		}
		var diff []string
		for _, i := range sl[1:] {
			t, err := s.block(ms[i])
			if err != nil {
				return Global{}, fmt.Errorf("%s: %w", ms[i].where(s.g.Layout), err)
			}
			if !t.Equal(ref) {
				diff = append(diff, ms[i].where(s.g.Layout))
			}
		}
		if len(diff) > 0 {
			return Global{}, fmt.Errorf("weight %q: replicated copies differ: %s differ%s from %s",
				name, strings.Join(diff, ", "), map[bool]string{true: "s", false: ""}[len(diff) == 1], ms[sl[0]].where(s.g.Layout))
		}
		if ms[sl[0]].sub >= 0 {
			if ref, err = tensor.Transpose(ref, 0, 1, s.alloc(ref.Len())); err != nil {
				return Global{}, fmt.Errorf("%s: %w", ms[sl[0]].where(s.g.Layout), err)
			}
		}
		pieces[r] = ref
	}
	first := ms[0]
	out := Global{Name: name}
	switch first.class {
	case Duplicated:
		out.Tensor = pieces[0]
	case Column, Row:
		d := 0
		if first.class == Row {
			d = 1
		}
		if len(pieces) == 1 {
			out.Tensor = pieces[0]
		} else if out.Tensor, err = tensor.Concat(d, pieces...); err != nil {
			return Global{}, s.inShares(fmt.Errorf("weight %q: %v merge: %w", name, first.class, err), ms, slots)
		}
	case Swiglu, GDN:
		var sizes []int64
		if first.class == Swiglu {
			if len(pieces[0].Shape) == 0 || pieces[0].Shape[0]%2 != 0 {
				return Global{}, fmt.Errorf("swiglu weight %q: the share in %s has shape %v, which does not halve into gate and up",
					name, s.shareAt(ms, slots, 0), pieces[0].Shape)
			}
			h := pieces[0].Shape[0] / 2
			sizes = []int64{h, h}
		} else if sizes, err = s.gdnShareRows(name, len(pieces)); err != nil {
			return Global{}, s.inShares(err, ms, slots)
		}
		comps := make([][]tensor.Tensor, len(sizes))
		for r, p := range pieces {
			parts, err := tensor.Split(p, 0, sizes...)
			if err != nil {
				return Global{}, fmt.Errorf("%v weight %q: the share in %s: %w", first.class, name, s.shareAt(ms, slots, r), err)
			}
			for c := range parts {
				comps[c] = append(comps[c], parts[c])
			}
		}
		joined := make([]tensor.Tensor, len(comps))
		for c, ts := range comps {
			if joined[c], err = tensor.Concat(0, ts...); err != nil {
				return Global{}, s.inShares(fmt.Errorf("%v weight %q: %w", first.class, name, err), ms, slots)
			}
		}
		st, err := tensor.NewStacked(0, joined...)
		if err != nil {
			return Global{}, s.inShares(fmt.Errorf("%v weight %q: %w", first.class, name, err), ms, slots)
		}
		out.Stacked = &st
		if out.Tensor, err = st.Concat(); err != nil {
			return Global{}, s.inShares(fmt.Errorf("%v weight %q: %w", first.class, name, err), ms, slots)
		}
	default:
		return Global{}, fmt.Errorf("weight %q: class %v cannot be merged", name, first.class)
	}
	return out, nil
}

// gdnShareRows returns the component rows of one tensor-parallel share of
// a gdn weight: the linear_* sizes divided by the number of shares.
func (s *Sharder) gdnShareRows(name string, T int) ([]int64, error) {
	rows, err := s.gdnRows(name)
	if err != nil {
		return nil, err
	}
	for i, r := range rows {
		if r%int64(T) != 0 {
			return nil, fmt.Errorf("gdn weight %q: component of %d rows is not divisible by %d shares", name, r, T)
		}
		rows[i] = r / int64(T)
	}
	return rows, nil
}

// ReadBackName returns the global name ROLL's DistConverter (and Merge)
// reads the global weight name back as from rank files of this layout.
// With transformer_impl "local" a weight is written under its te_to_local
// name and read back through the inverted map, twice (ROLL's
// get_pure_name and _name_relocate), which need not lead back to the name
// it was written from: with ROLL's default classes (its mixtral) the MoE
// layers' ".pre_mlp_layernorm.weight" is written as it is and read back
// as the dense ".mlp.linear_fc1.layer_norm_weight". Otherwise it is name.
func (s *Sharder) ReadBackName(name string) (string, error) {
	if s.g.TransformerImpl != ImplLocal {
		return name, nil
	}
	n, err := rollname.ParseMCAName(name)
	if err != nil {
		return "", err
	}
	pure := n.Pure
	if v, ok := lookup(s.teToLocal, pure); ok {
		pure = v
	}
	for range 2 {
		if v, ok := lookup(s.localToTE, pure); ok {
			pure = v
		}
	}
	if pure == n.Pure {
		return name, nil
	}
	return rollname.AddMCAPrefix(pure, n.MTP, n.Layer, n.Expert), nil
}
