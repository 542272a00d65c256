package shard

import "github.com/rolltpl/rolltpl/compiler/rollname"

// Classification is a merged parallel classification: ROLL's
// DistParallelConfig (roll-converter-spec.md §5.1). Every pattern is
// matched against a pure MCA name (layer and expert prefix removed, or the
// full name of a global weight) by exact equality or as a whole-string
// shell glob (Python fnmatch), by package rollname. Lists keep their
// declaration order; maps keep insertion order, a later entry for the
// same key replacing the earlier value in place, as a Python dict update
// does.
type Classification struct {
	PreProcess  []string // first pipeline stage
	PostProcess []string // last pipeline stage
	Duplicated  []string // whole on every tensor rank
	Column      []string // split along dim 0
	Row         []string // split along dim 1
	Swiglu      []string // gate and up, each split along dim 0
	GDN         []string // Gated-DeltaNet components, each split along dim 0

	GroupedDuplicated []MapEntry // per-expert pure name → grouped name
	GroupedColumn     []MapEntry
	GroupedRow        []MapEntry
	TEToLocal         []MapEntry // TE fused name → local (transformer_impl=local) name
}

// MapEntry is one entry of a map-valued class.
type MapEntry struct {
	From, To string
}

// Merge returns c followed by o, like DistParallelConfig.merge_configs:
// lists concatenated (c first), maps merged with o's entries winning.
func (c Classification) Merge(o Classification) Classification {
	cat := func(a, b []string) []string {
		return append(append([]string(nil), a...), b...)
	}
	return Classification{
		PreProcess:        cat(c.PreProcess, o.PreProcess),
		PostProcess:       cat(c.PostProcess, o.PostProcess),
		Duplicated:        cat(c.Duplicated, o.Duplicated),
		Column:            cat(c.Column, o.Column),
		Row:               cat(c.Row, o.Row),
		Swiglu:            cat(c.Swiglu, o.Swiglu),
		GDN:               cat(c.GDN, o.GDN),
		GroupedDuplicated: mergeMap(c.GroupedDuplicated, o.GroupedDuplicated),
		GroupedColumn:     mergeMap(c.GroupedColumn, o.GroupedColumn),
		GroupedRow:        mergeMap(c.GroupedRow, o.GroupedRow),
		TEToLocal:         mergeMap(c.TEToLocal, o.TEToLocal),
	}
}

// mergeMap is {**a, **b} on ordered entries.
func mergeMap(a, b []MapEntry) []MapEntry {
	out := append([]MapEntry(nil), a...)
	for _, e := range b {
		replaced := false
		for i := range out {
			if out[i].From == e.From {
				out[i].To = e.To
				replaced = true
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return out
}

// invertMap is {v: k for k, v in m.items()}: the last key wins for a
// value, at the position where the value first appeared.
func invertMap(m []MapEntry) []MapEntry {
	var inv []MapEntry
	for _, e := range m {
		inv = mergeMap(inv, []MapEntry{{From: e.To, To: e.From}})
	}
	return inv
}

// mapKeysAndValues is ROLL's grouped_*_weights: keys then values.
func mapKeysAndValues(m []MapEntry) []string {
	out := make([]string, 0, 2*len(m))
	for _, e := range m {
		out = append(out, e.From)
	}
	for _, e := range m {
		out = append(out, e.To)
	}
	return out
}

func mapKeys(m []MapEntry) []string {
	out := make([]string, len(m))
	for i, e := range m {
		out[i] = e.From
	}
	return out
}

func lookup(m []MapEntry, k string) (string, bool) {
	for _, e := range m {
		if e.From == k {
			return e.To, true
		}
	}
	return "", false
}

// TEMoEClassification is ROLL's te_moe_config (with lora_te_moe_config),
// merged by the converter when TE grouped GEMM names are in use.
func TEMoEClassification() Classification {
	return Classification{
		GroupedColumn: []MapEntry{
			{".linear_fc1.weight", ".mlp.experts.linear_fc1.weight"},
			{".linear_fc1.lora_B.weight", ".mlp.experts.linear_fc1.lora_B.weight"},
		},
		GroupedRow: []MapEntry{
			{".linear_fc2.weight", ".mlp.experts.linear_fc2.weight"},
			{".linear_fc2.lora_A.weight", ".mlp.experts.linear_fc2.lora_A.weight"},
		},
		GroupedDuplicated: []MapEntry{
			{".linear_fc1.lora_A.weight", ".mlp.experts.linear_fc1.lora_A.weight"},
			{".linear_fc2.lora_B.weight", ".mlp.experts.linear_fc2.lora_B.weight"},
		},
	}
}

// MegatronLlamaClassification is ROLL's megatron_llama_config, merged by
// the converter for megatron-llama-core.
func MegatronLlamaClassification() Classification {
	return Classification{
		Duplicated:    []string{".input_layernorm.weight"},
		GroupedColumn: []MapEntry{{".linear_fc1.weight", ".mlp.weight1"}},
		GroupedRow:    []MapEntry{{".linear_fc2.weight", ".mlp.weight2"}},
	}
}

// Class is the tensor-parallel class of a weight; the classes and their
// order are ROLL's (package rollname).
type Class = rollname.Class

// The classes, in ROLL's matching order.
const (
	Unclassified      = rollname.Unclassified
	GroupedDuplicated = rollname.GroupedDuplicated
	GroupedColumn     = rollname.GroupedColumn
	GroupedRow        = rollname.GroupedRow
	Swiglu            = rollname.Swiglu
	GDN               = rollname.GDN
	Duplicated        = rollname.Duplicated
	Column            = rollname.Column
	Row               = rollname.Row
)

// classLists are the class patterns of c in rollname's form, the grouped
// classes as their maps' keys and values (ROLL's grouped_*_weights).
func classLists(c Classification) rollname.ClassLists {
	return rollname.ClassLists{
		GroupedDuplicated: mapKeysAndValues(c.GroupedDuplicated),
		GroupedColumn:     mapKeysAndValues(c.GroupedColumn),
		GroupedRow:        mapKeysAndValues(c.GroupedRow),
		Swiglu:            c.Swiglu,
		GDN:               c.GDN,
		Duplicated:        c.Duplicated,
		Column:            c.Column,
		Row:               c.Row,
	}
}
