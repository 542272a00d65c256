package shard

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// A Piece is one rank's share of a global weight: the data of local
// tensor Name in virtual stage Stage of rank file Rank, starting Offset
// bytes into that tensor. Offset is 0 and Data is the whole local tensor
// except for legacy grouped GEMM, where every expert of a rank fills its
// own block of the shared "weight1"/"weight2" tensor.
type Piece struct {
	Rank   Rank
	Stage  int
	Name   string       // local name in the rank file
	Shape  tensor.Shape // shape of the whole local tensor
	Offset int64        // byte offset of Data in the local tensor
	Data   tensor.Tensor
}

// A Part is where one global weight's data goes in a local tensor, as
// slices of the global weight: the Sources are taken, concatenated along
// dim 0, transposed if Transpose, and stored Offset bytes into the local
// tensor with shape Shape.
type Part struct {
	Global    string
	Offset    int64
	Shape     tensor.Shape
	Sources   []Source
	Transpose bool
}

// A Source is a slice of a global weight: rows (Dim 0) or columns (Dim 1)
// [Start, End) of a component, or the whole component (Dim -1).
// Component indexes the components of a Stacked weight; a plain tensor is
// component 0.
type Source struct {
	Component  int
	Dim        int
	Start, End int64
}

// target is where one global weight (under one name variant) goes: the
// same local tensor on every listed stage and EP rank, with part r on the
// tensor ranks tp ≡ r (mod len(parts)).
type target struct {
	variant string // the global name after the tied-embedding rename
	stages  []stageRef
	ep      int // the EP rank holding an expert weight; -1 for every EP rank
	local   string
	class   Class // the split class (grouped classes resolved to their base)
	shape   tensor.Shape
	parts   []Part
}

type stageRef struct{ pp, vp int }

// Split returns every piece of global MCA weight name with full tensor t:
// one per (rank file, virtual stage) holding it, in rank order. Column,
// duplicated, swiglu and gdn pieces are zero-copy views of t; row pieces
// are views with one piece per matrix row (or, with
// Options.ContiguousRows, new buffers); legacy grouped-GEMM experts are
// transposed into new buffers. For swiglu and gdn weights t is the
// concatenation of the components (gate, up; or the gdn parts with the
// layout's linear_* sizes); [Sharder.SplitStacked] takes them apart.
func (s *Sharder) Split(name string, t tensor.Tensor) ([]Piece, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("weight %q: %w", name, err)
	}
	return s.split(name, t.DType, t.Shape, nil, []tensor.Tensor{t})
}

// SplitStacked is [Sharder.Split] for a weight held as components that
// tensor parallelism splits one by one (ROLL's StackedTensors): gate/up of
// a swiglu weight, q/k/v/z/b/a or q/k/v of a gdn weight. The components
// must be stacked along dim 0.
func (s *Sharder) SplitStacked(name string, st tensor.Stacked) ([]Piece, error) {
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("weight %q: %w", name, err)
	}
	if st.Dim != 0 && st.Dim != -len(st.Components[0].Shape) {
		return nil, fmt.Errorf("weight %q: components stacked along dim %d; only dim 0 can be split per component", name, st.Dim)
	}
	full, rows := stackedShape(st)
	return s.split(name, st.Components[0].DType, full, rows, st.Components)
}

func stackedShape(st tensor.Stacked) (tensor.Shape, []int64) {
	full := append(tensor.Shape(nil), st.Components[0].Shape...)
	full[0] = 0
	rows := make([]int64, len(st.Components))
	for i, c := range st.Components {
		rows[i] = c.Shape[0]
		full[0] += c.Shape[0]
	}
	return full, rows
}

func (s *Sharder) split(name string, dt tensor.DType, shape tensor.Shape, comps []int64, in []tensor.Tensor) ([]Piece, error) {
	targets, err := s.targets(name, dt, shape, comps)
	if err != nil {
		return nil, err
	}
	m := materializer{s: s, in: in}
	var out []Piece
	for _, t := range targets {
		data := make([]tensor.Tensor, len(t.parts))
		for r, p := range t.parts {
			if data[r], err = m.part(p); err != nil {
				return nil, fmt.Errorf("weight %q: %w", name, err)
			}
		}
		t.expand(s.g, func(rk Rank, vp int, p Part, r int) {
			out = append(out, Piece{Rank: rk, Stage: vp, Name: t.local, Shape: t.shape, Offset: p.Offset, Data: data[r]})
		})
	}
	return out, nil
}

// expand calls f for every (rank, stage) holding the target, in rank
// order (tp, pp, ep), with the part that rank holds.
func (t *target) expand(g *geometry, f func(r Rank, vp int, p Part, part int)) {
	for tp := range g.TP {
		for _, st := range t.stages {
			for ep := range g.EP {
				if t.ep >= 0 && ep != t.ep {
					continue
				}
				r := tp % len(t.parts)
				f(Rank{TP: tp, PP: st.pp, EP: ep}, st.vp, t.parts[r], r)
			}
		}
	}
}

// targets computes where global weight name goes (roll-converter-spec.md
// §5.4 steps 1–6) without touching data.
func (s *Sharder) targets(name string, dt tensor.DType, shape tensor.Shape, comps []int64) ([]target, error) {
	g := s.g
	var out []target
	for vp := range g.VPP {
		for pp := range g.PP {
			for _, v := range g.stageVariants(name, pp, vp) {
				on, err := s.onPipeline(v, pp, vp)
				if err != nil {
					return nil, fmt.Errorf("weight %q: %w", name, err)
				}
				if !on {
					continue
				}
				i := 0
				for i < len(out) && out[i].variant != v {
					i++
				}
				if i == len(out) {
					out = append(out, target{variant: v})
				}
				out[i].stages = append(out[i].stages, stageRef{pp, vp})
			}
		}
	}
	if len(out) == 0 {
		if strings.HasPrefix(name, "mtp.") {
			return nil, fmt.Errorf("weight %q is an MTP weight, but mtp_num_layers is 0", name)
		}
		return nil, fmt.Errorf("weight %q is on no pipeline stage", name)
	}
	for i := range out {
		if err := s.fill(&out[i], name, dt, shape, comps); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// onPipeline is ROLL's on_this_pipeline for pipeline rank pp, stage vp.
func (s *Sharder) onPipeline(name string, pp, vp int) (bool, error) {
	g := s.g
	if strings.HasPrefix(name, "mtp.") {
		return g.MTPNumLayers > 0 && g.isLast(pp, vp), nil
	}
	if s.pre.Match(name) {
		if name == EmbeddingName && (g.MTPNumLayers > 0 || g.TiedEmbeddings) && g.isLast(pp, vp) {
			return true, nil
		}
		return g.isFirst(pp, vp), nil
	}
	if s.post.Match(name) {
		return g.isLast(pp, vp), nil
	}
	n, err := rollname.ParseMCAName(name)
	if err != nil {
		return false, err
	}
	if n.Layer < 0 {
		return true, nil
	}
	lpp, lvp, _, err := g.layerStage(n.Layer)
	if err != nil {
		return false, err
	}
	return lpp == pp && lvp == vp, nil
}

// fill computes the local name, class, shape and parts of a target.
func (s *Sharder) fill(t *target, name string, dt tensor.DType, shape tensor.Shape, comps []int64) error {
	g := s.g
	n, err := rollname.ParseMCAName(t.variant)
	if err != nil {
		return err
	}
	layer := n.Layer
	if layer >= 0 && !n.MTP {
		if _, _, layer, err = g.layerStage(n.Layer); err != nil {
			return fmt.Errorf("weight %q: %w", name, err)
		}
	}
	cls := s.classify(n.Pure)
	if cls == Unclassified {
		return s.unclassified(name, n.Pure)
	}
	t.ep = -1
	k := -1 // local expert index
	if n.Expert >= 0 {
		if g.perEP == 0 {
			return fmt.Errorf("weight %q is an expert weight, but num_moe_experts is 0", name)
		}
		if n.Expert >= g.NumExperts {
			return fmt.Errorf("weight %q: expert %d is out of range for num_moe_experts %d", name, n.Expert, g.NumExperts)
		}
		t.ep, k = n.Expert/g.perEP, n.Expert%g.perEP
	}
	pure := n.Pure
	if g.TransformerImpl == ImplLocal {
		if v, ok := lookup(s.teToLocal, pure); ok {
			pure = v
		}
	}
	T := g.TP
	if n.Expert >= 0 {
		T = g.ETP
	}
	legacy := false
	switch cls {
	case GroupedColumn, GroupedRow, GroupedDuplicated:
		// ROLL only reads grouped-duplicated weights (LoRA tensors of
		// grouped experts) and raises NotImplementedError when writing
		// them; they are placed like the grouped ones, whole on every
		// tensor rank (the read plan re-plans the writing, and a LoRA
		// import writes them).
		if n.Expert < 0 {
			return fmt.Errorf("weight %q is classified %v but has no expert index", name, cls)
		}
		gname, ok := lookup(s.groupedMap, pure)
		if !ok {
			return fmt.Errorf("weight %q: pure name %q has no grouped-GEMM name", name, pure)
		}
		t.local = rollname.AddMCAPrefix(gname, n.MTP, layer, -1)
		if g.ExpertNaming() == TEGrouped {
			t.local += strconv.Itoa(k)
		} else {
			legacy = true
		}
		if cls == GroupedRow {
			cls = Row
		} else if cls == GroupedDuplicated {
			cls = Duplicated
		} else if g.Swiglu {
			cls = Swiglu
		} else {
			cls = Column
		}
	default:
		t.local = rollname.AddMCAPrefix(pure, n.MTP, layer, k)
	}
	if cls == Duplicated {
		T = 1
	}
	t.class = cls
	parts, pshape, err := s.tpParts(name, cls, T, shape, comps)
	if err != nil {
		return err
	}
	es := int64(dt.Size())
	t.shape = pshape
	if legacy {
		if len(pshape) != 2 {
			return fmt.Errorf("weight %q: legacy grouped GEMM needs 2-d expert weights, got shape %v", name, shape)
		}
		// Stack the transposed [b, a] pieces of all local experts:
		// [E/EP, b, a] viewed as [H, -1] (fc1) or [-1, H] (fc2); expert k
		// fills bytes [k·a·b, (k+1)·a·b).
		a, b := pshape[0], pshape[1]
		if cls == Row {
			t.shape = tensor.Shape{int64(g.perEP) * b, a}
		} else {
			t.shape = tensor.Shape{b, int64(g.perEP) * a}
		}
		for i := range parts {
			parts[i].Transpose = true
			parts[i].Shape = tensor.Shape{b, a}
			parts[i].Offset = int64(k) * a * b * es
		}
	}
	for i := range parts {
		parts[i].Global = name
		if !legacy {
			parts[i].Shape = pshape
		}
	}
	t.parts = parts
	return nil
}

// tpParts splits a weight of the given class into T parts (§5.6) and
// returns them with the shape of one part. It requires even splits: ROLL's
// torch.chunk would silently make uneven or missing pieces (§8.2 item 28).
func (s *Sharder) tpParts(name string, cls Class, T int, shape tensor.Shape, comps []int64) ([]Part, tensor.Shape, error) {
	if comps != nil && cls != Swiglu && cls != GDN {
		return nil, nil, fmt.Errorf("weight %q is given as %d stacked components but is classified %v; only swiglu and gdn weights are split per component", name, len(comps), cls)
	}
	parts := make([]Part, T)
	pshape := append(tensor.Shape(nil), shape...)
	switch cls {
	case Duplicated:
		parts[0].Sources = []Source{{Component: 0, Dim: -1, Start: 0, End: dimOr0(shape)}}
		return parts, pshape, nil
	case Column, Row:
		d := 0
		if cls == Row {
			d = 1
		}
		if len(shape) <= d {
			return nil, nil, fmt.Errorf("weight %q is classified %v but has shape %v (no dim %d to split)", name, cls, shape, d)
		}
		if shape[d]%int64(T) != 0 {
			return nil, nil, fmt.Errorf("weight %q: dim %d of shape %v is not divisible by %s = %d", name, d, shape, s.tpName(T), T)
		}
		c := shape[d] / int64(T)
		pshape[d] = c
		for r := range parts {
			parts[r].Sources = []Source{{Component: 0, Dim: d, Start: int64(r) * c, End: int64(r+1) * c}}
		}
		return parts, pshape, nil
	case Swiglu, GDN:
		if len(shape) == 0 {
			return nil, nil, fmt.Errorf("weight %q is classified %v but is 0-d", name, cls)
		}
		type comp struct {
			in         int
			start, len int64
		}
		var cs []comp
		switch {
		case comps != nil:
			if cls == Swiglu && len(comps) != 2 {
				return nil, nil, fmt.Errorf("swiglu weight %q needs 2 components (gate, up), got %d", name, len(comps))
			}
			if cls == GDN && s.g.LinearNumKeyHeads > 0 {
				want, err := s.gdnRows(name)
				if err != nil {
					return nil, nil, err
				}
				if !equalInts(want, comps) {
					return nil, nil, fmt.Errorf("gdn weight %q: component rows %v do not match the linear_* sizes %v", name, comps, want)
				}
			}
			for i, r := range comps {
				cs = append(cs, comp{i, 0, r})
			}
		case cls == Swiglu:
			if shape[0]%2 != 0 {
				return nil, nil, fmt.Errorf("swiglu weight %q: %d rows do not halve into gate and up", name, shape[0])
			}
			h := shape[0] / 2
			cs = []comp{{0, 0, h}, {0, h, h}}
		default:
			rows, err := s.gdnRows(name)
			if err != nil {
				return nil, nil, err
			}
			var off int64
			for _, r := range rows {
				cs = append(cs, comp{0, off, r})
				off += r
			}
			if off != shape[0] {
				return nil, nil, fmt.Errorf("gdn weight %q has %d rows, but the linear_* sizes give %v = %d", name, shape[0], rows, off)
			}
		}
		var rows int64
		for _, c := range cs {
			if c.len%int64(T) != 0 {
				return nil, nil, fmt.Errorf("%v weight %q: component of %d rows is not divisible by %s = %d", cls, name, c.len, s.tpName(T), T)
			}
			rows += c.len / int64(T)
		}
		pshape[0] = rows
		for r := range parts {
			for _, c := range cs {
				n := c.len / int64(T)
				parts[r].Sources = append(parts[r].Sources, Source{Component: c.in, Dim: 0, Start: c.start + int64(r)*n, End: c.start + int64(r+1)*n})
			}
		}
		return parts, pshape, nil
	}
	return nil, nil, fmt.Errorf("weight %q: class %v cannot be split", name, cls)
}

func (s *Sharder) tpName(T int) string {
	if T == s.g.TP {
		return "TP"
	}
	return "ETP"
}

func dimOr0(shape tensor.Shape) int64 {
	if len(shape) == 0 {
		return 0
	}
	return shape[0]
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// materializer builds part tensors from the input tensors, caching the
// column splits so that each input is cut along dim 1 once for all ranks.
type materializer struct {
	s    *Sharder
	in   []tensor.Tensor
	cols map[[2]int64][]tensor.Tensor // (component, width) → column chunks
}

func (m *materializer) source(src Source) (tensor.Tensor, error) {
	if src.Component < 0 || src.Component >= len(m.in) {
		return tensor.Tensor{}, fmt.Errorf("component %d of %d", src.Component, len(m.in))
	}
	t := m.in[src.Component]
	switch src.Dim {
	case -1:
		return t, nil
	case 0:
		return t.Rows(src.Start, src.End)
	case 1:
		w := src.End - src.Start
		if w <= 0 || len(t.Shape) < 2 || t.Shape[1]%w != 0 || src.Start%w != 0 {
			return tensor.Tensor{}, fmt.Errorf("column slice [%d, %d) of %v", src.Start, src.End, t)
		}
		key := [2]int64{int64(src.Component), w}
		chunks, ok := m.cols[key]
		if !ok {
			sizes := make([]int64, t.Shape[1]/w)
			for i := range sizes {
				sizes[i] = w
			}
			var err error
			if chunks, err = tensor.Split(t, 1, sizes...); err != nil {
				return tensor.Tensor{}, err
			}
			if m.cols == nil {
				m.cols = map[[2]int64][]tensor.Tensor{}
			}
			m.cols[key] = chunks
		}
		return chunks[src.Start/w], nil
	}
	return tensor.Tensor{}, fmt.Errorf("source dim %d", src.Dim)
}

func (m *materializer) part(p Part) (tensor.Tensor, error) {
	if len(p.Sources) == 0 {
		return tensor.Tensor{}, errors.New("part without sources")
	}
	ts := make([]tensor.Tensor, len(p.Sources))
	cols := false
	for i, src := range p.Sources {
		t, err := m.source(src)
		if err != nil {
			return tensor.Tensor{}, err
		}
		ts[i] = t
		cols = cols || src.Dim == 1
	}
	t := ts[0]
	if len(ts) > 1 {
		var err error
		if t, err = tensor.Concat(0, ts...); err != nil {
			return tensor.Tensor{}, err
		}
	}
	switch {
	case p.Transpose:
		return tensor.Transpose(t, 0, 1, m.s.alloc(t.Len()))
	case cols && m.s.opts.ContiguousRows && !t.Contiguous():
		buf := t.AppendTo(m.s.alloc(t.Len())[:0])
		return tensor.New(t.DType, t.Shape, buf)
	}
	return t, nil
}
