package shard

import (
	"fmt"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/rollname"
)

// Options adjusts a [Sharder]. The zero value is ROLL's behaviour with
// zero-copy outputs.
type Options struct {
	// TEMoE is merged into the classification when the layout uses TE
	// grouped names; nil means [TEMoEClassification].
	TEMoE *Classification
	// MegatronLlama is merged when Layout.MegatronLlama; nil means
	// [MegatronLlamaClassification].
	MegatronLlama *Classification
	// Alloc returns a buffer of n bytes for data that cannot be a view of
	// the input: the transposed experts of legacy grouped GEMM and, with
	// ContiguousRows, row-parallel shards. nil means make([]byte, n).
	Alloc func(n int) []byte
	// ContiguousRows makes row-parallel (dim 1) shards one contiguous
	// buffer from Alloc. Without it they are zero-copy views with one
	// piece per matrix row, which a writer streams with
	// [tensor.Tensor.WriteTo] at no extra cost.
	ContiguousRows bool
}

// A Sharder splits global MCA weights into the rank files of one layout
// and merges them back (roll-converter-spec.md §5). It is immutable after
// [New] and safe for concurrent use.
type Sharder struct {
	g    *geometry
	cls  Classification
	opts Options

	pre, post            rollname.Patterns
	classes              *rollname.Classifier
	groupedMap           []MapEntry
	groupedReverse       []MapEntry
	groupedReverseKeys   rollname.Patterns
	groupedReverseNames  []rollname.MapEntry // groupedReverse for rollname.MatchedName
	teToLocal, localToTE []MapEntry
}

// New returns a Sharder for layout l and the template's classification c
// (the caller converts the template's merged parallel set). As ROLL's
// DistConverter does, it merges TE grouped-MoE names when the layout uses
// them and the megatron-llama config when Layout.MegatronLlama.
func New(l Layout, c Classification, opts *Options) (*Sharder, error) {
	g, err := l.geometry()
	if err != nil {
		return nil, err
	}
	s := &Sharder{g: g}
	if opts != nil {
		s.opts = *opts
	}
	if g.ExpertNaming() == TEGrouped {
		te := TEMoEClassification()
		if s.opts.TEMoE != nil {
			te = *s.opts.TEMoE
		}
		c = c.Merge(te)
	}
	if g.MegatronLlama {
		ml := MegatronLlamaClassification()
		if s.opts.MegatronLlama != nil {
			ml = *s.opts.MegatronLlama
		}
		c = c.Merge(ml)
	}
	s.cls = c
	s.pre, s.post = rollname.CompilePatterns(c.PreProcess), rollname.CompilePatterns(c.PostProcess)
	s.classes = rollname.NewClassifier(classLists(c))
	s.groupedMap = mergeMap(mergeMap(c.GroupedDuplicated, c.GroupedColumn), c.GroupedRow)
	s.groupedReverse = invertMap(s.groupedMap)
	s.groupedReverseKeys = rollname.CompilePatterns(mapKeys(s.groupedReverse))
	for _, e := range s.groupedReverse {
		s.groupedReverseNames = append(s.groupedReverseNames, rollname.MapEntry{From: e.From, To: e.To})
	}
	if g.ExpertNaming() == TEGrouped {
		// A TE grouped name is the grouped name plus the local expert
		// index; a grouped name ending in a digit would be ambiguous
		// (megatron-llama's ".mlp.weight1" + "7" reads back as expert 17).
		for _, e := range s.groupedMap {
			if trailingDigits(e.To) != "" {
				return nil, fmt.Errorf("TE grouped MoE names append the expert index to the grouped name, "+
					"but grouped name %q (for %q) already ends in a digit", e.To, e.From)
			}
		}
	}
	s.teToLocal = c.TEToLocal
	s.localToTE = invertMap(c.TEToLocal)
	return s, nil
}

// Layout returns the normalized layout.
func (s *Sharder) Layout() Layout { return s.g.Layout }

// Classification returns the merged classification in use.
func (s *Sharder) Classification() Classification { return s.cls }

// classify returns the class of a pure name as ROLL's dist_convert
// decides it (rollname: ".bias" read as ".weight", first match wins).
func (s *Sharder) classify(pure string) Class {
	return s.classes.Classify(pure, s.g.MoEGroupedGEMM, s.g.Swiglu)
}

// Classify returns the class of a global MCA name.
func (s *Sharder) Classify(name string) (Class, error) {
	n, err := rollname.ParseMCAName(name)
	if err != nil {
		return Unclassified, err
	}
	c := s.classify(n.Pure)
	if c == Unclassified {
		return c, s.unclassified(name, n.Pure)
	}
	return c, nil
}

func (s *Sharder) unclassified(name, pure string) error {
	return fmt.Errorf("weight %q (pure name %q) matches no parallel class (duplicated, column, row, swiglu, gdn%s); add it to the template's parallel set",
		name, pure, map[bool]string{true: ", grouped", false: ""}[s.g.MoEGroupedGEMM])
}

func (s *Sharder) alloc(n int64) []byte {
	if s.opts.Alloc != nil {
		if b := s.opts.Alloc(int(n)); int64(len(b)) >= n {
			return b[:n]
		}
	}
	return make([]byte, n)
}

// gdnRows returns the component row counts of a full gdn weight
// ([Layout.GDNRows]).
func (s *Sharder) gdnRows(name string) ([]int64, error) { return s.g.GDNRows(name) }

// GDNRows returns the component row counts of a full gdn weight: in_proj
// q, k, v, z, b, a = [QK, QK, V, V, nv, nv], conv1d q, k, v = [QK, QK, V]
// (§2.6), chosen like ROLL by "in_proj" / "conv1d" in the name. It is the
// one place the gdn sizes are derived from the linear_* config values.
func (l Layout) GDNRows(name string) ([]int64, error) {
	qk := int64(l.LinearNumKeyHeads) * int64(l.LinearKeyHeadDim)
	v := int64(l.LinearNumValueHeads) * int64(l.LinearValueHeadDim)
	nv := int64(l.LinearNumValueHeads)
	if qk <= 0 || v <= 0 {
		return nil, fmt.Errorf("gdn weight %q: the layout has no linear_* sizes (linear_num_key_heads, linear_key_head_dim, linear_num_value_heads, linear_value_head_dim)", name)
	}
	switch {
	case strings.Contains(name, "in_proj"):
		return []int64{qk, qk, v, v, nv, nv}, nil
	case strings.Contains(name, "conv1d"):
		return []int64{qk, qk, v}, nil
	}
	return nil, fmt.Errorf("gdn weight %q is neither an in_proj nor a conv1d weight", name)
}
