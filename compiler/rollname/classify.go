package rollname

import "strings"

// PureName is the name DistConverter.dist_convert classifies an MCA pure
// name (layer and expert prefix already removed) under: a name ending in
// ".bias" is read as its weight, every ".bias" in it replaced by
// ".weight" (pure_name.replace(".bias", ".weight")); any other name is
// itself.
func PureName(pure string) string {
	if strings.HasSuffix(pure, ".bias") {
		return strings.ReplaceAll(pure, ".bias", ".weight")
	}
	return pure
}

// Class is a tensor-parallel class of an MCA weight.
type Class int

// The classes, in the order DistConverter.dist_convert tries them.
const (
	Unclassified Class = iota
	GroupedDuplicated
	GroupedColumn
	GroupedRow
	Swiglu
	GDN
	Duplicated
	Column
	Row
)

// String is the class as prose ("grouped column").
func (c Class) String() string {
	if c == Unclassified {
		return "unclassified"
	}
	return strings.ReplaceAll(c.Key(), "_", " ")
}

// Key is the class's name in a template's parallel set ("grouped_column");
// "" for Unclassified.
func (c Class) Key() string {
	switch c {
	case GroupedDuplicated:
		return "grouped_duplicated"
	case GroupedColumn:
		return "grouped_column"
	case GroupedRow:
		return "grouped_row"
	case Swiglu:
		return "swiglu"
	case GDN:
		return "gdn"
	case Duplicated:
		return "duplicated"
	case Column:
		return "column"
	case Row:
		return "row"
	}
	return ""
}

// Classes lists the classes in dist_convert's order.
var Classes = []Class{GroupedDuplicated, GroupedColumn, GroupedRow, Swiglu, GDN, Duplicated, Column, Row}

// Patterns is a compiled list of names and globs matched like ROLL's
// name_match: exact membership, then fnmatch against each pattern.
type Patterns struct {
	exact map[string]bool
	globs []*Glob
}

// CompilePatterns compiles a list of names and globs.
func CompilePatterns(list []string) Patterns {
	p := Patterns{exact: make(map[string]bool, len(list))}
	for _, s := range list {
		p.exact[s] = true
		if strings.ContainsAny(s, "*?[") {
			p.globs = append(p.globs, CompileGlob(s))
		}
	}
	return p
}

// Match reports whether name is in the list or matches one of its globs.
func (p Patterns) Match(name string) bool {
	if p.exact[name] {
		return true
	}
	for _, g := range p.globs {
		if g.Match(name) {
			return true
		}
	}
	return false
}

// ClassLists are the patterns of each class of an effective parallel
// set (ROLL's DistParallelConfig after merging). A grouped class's list
// is its map's keys followed by its values (ROLL's grouped_*_weights).
type ClassLists map[Class][]string

// Classifier classifies pure MCA names against an effective parallel
// set in ROLL's first-match order.
type Classifier struct {
	classes [Row + 1]Patterns
}

// NewClassifier compiles the class lists.
func NewClassifier(lists ClassLists) *Classifier {
	c := &Classifier{}
	for _, k := range Classes {
		c.classes[k] = CompilePatterns(lists[k])
	}
	return c
}

// Classify returns the class of a pure MCA name as dist_convert decides
// it: the name read through [PureName], then the first class whose
// patterns match it, trying the grouped classes only when grouped
// (moe_grouped_gemm) and swiglu only when swiglu (the model's gated
// linear unit), then gdn, duplicated, column, row.
func (c *Classifier) Classify(pure string, grouped, swiglu bool) Class {
	n := PureName(pure)
	for _, k := range Classes {
		switch {
		case k <= GroupedRow && !grouped, k == Swiglu && !swiglu:
			continue
		}
		if c.classes[k].Match(n) {
			return k
		}
	}
	return Unclassified
}

// MapEntry is one entry of a map-valued parallel class.
type MapEntry struct {
	From, To string
}

// MatchedName is ROLL's DistConverter.get_matched_name: the value for an
// exact key, else, for the first key the name fnmatches, the value's
// part before ".lora" joined with the name's part from ".lora" on (ok is
// false when either has no ".lora", where ROLL would build a wrong name).
func MatchedName(name string, m []MapEntry) (string, bool) {
	for _, e := range m {
		if e.From == name {
			return e.To, true
		}
	}
	for _, e := range m {
		if !Fnmatch(name, e.From) {
			continue
		}
		vi, ni := strings.Index(e.To, ".lora"), strings.Index(name, ".lora")
		if vi < 0 || ni < 0 {
			return "", false
		}
		return e.To[:vi] + name[ni:], true
	}
	return "", false
}
