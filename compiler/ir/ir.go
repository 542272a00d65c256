// Package ir is the lowered, resolved form of .rolltpl templates that both
// backends read: the Python emitter (compiler/pyemit) and the Go runtime
// (runtime/exec). It is pure data: every element keeps the source span it
// came from, and the package imports nothing but lang/token. The checks of
// config values against a template ([Template.CheckHFConfig], [MCARules])
// live here too, as the one place both the compiler's `check --hf-config`
// and the runtime can reach.
//
// A [Program] holds the templates in build order and the named parallel sets
// they reference. Reuse (`use`, `extends`) is already expanded: each
// [Template] lists its own config entries, constants and ops in order.
package ir

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/lang/token"
)

// Program is a set of compiled templates.
type Program struct {
	Templates []*Template
	// ParallelSets are the named parallel sets the templates use, in
	// dependency order (a set comes after the sets it uses).
	ParallelSets []*ParallelSet
}

// Template returns the template for an HF model type, or nil.
func (p *Program) Template(modelType string) *Template {
	for _, t := range p.Templates {
		if t.Name == modelType {
			return t
		}
	}
	return nil
}

// ParallelSet returns the named parallel set, or nil.
func (p *Program) ParallelSet(name string) *ParallelSet {
	for _, s := range p.ParallelSets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Template is one conversion template; Name is the HF model type.
type Template struct {
	Name string
	Span token.Span
	// NameSpan is the span of the template's name.
	NameSpan token.Span
	// File is the source file the template is declared in.
	File string

	// LayerPrefix is the HF layer prefix, e.g. "model.layers.".
	LayerPrefix string
	// ExpertPrefix is the HF MoE expert prefix, e.g. ".mlp.experts."; empty
	// when the template has none.
	ExpertPrefix string

	// Config maps HF keys (dotted paths) to MCA keys, in source order.
	Config []ConfigEntry
	// KeyPrefixes are the HF key prefix rules, tried in order.
	KeyPrefixes []PrefixRule
	// Constants are the constant MCA config values, in source order.
	Constants []Constant
	// Invalid lists HF pure names that are ignored on purpose.
	Invalid []Located
	// Ops are the weight ops in registration order (first match wins).
	Ops []*Op
	// Parallel is the template's parallel classification.
	Parallel *ParallelSet
}

// EffectiveKey applies the template's key-prefix rules to an HF config key
// (ROLL's VisionTemplate / Qwen3OmniMoeTemplate prefixing,
// [rollname.PrefixKey]): the first rule none of whose Unless globs
// (Python fnmatch on the whole key) matches the key prefixes it; with no
// such rule the key is unchanged.
func (t *Template) EffectiveKey(key string) string {
	rules := make([]rollname.PrefixRule, len(t.KeyPrefixes))
	for i, r := range t.KeyPrefixes {
		rules[i] = rollname.PrefixRule{Prefix: r.Prefix, Unless: r.Unless}
	}
	return rollname.PrefixKey(key, rules)
}

// Located is a string with the span it was written at.
type Located struct {
	Value string
	Span  token.Span
}

// ConfigEntry maps one HF key to one MCA key.
type ConfigEntry struct {
	HF   string
	MCA  string
	Span token.Span
	// Type is the HF key's type in the model type's config schema, filled
	// in by the compiler when it has the schema; nil otherwise.
	Type *ConfigType
}

// PrefixRule prefixes every HF config key except those matching Unless
// (shell globs, whole string): the first rule whose Unless list does not
// match a key applies to it.
type PrefixRule struct {
	Prefix string
	Unless []string
	Span   token.Span
}

// Constant is one constant MCA config value.
type Constant struct {
	Key   string
	Value Value
	Span  token.Span
}

// ValueKind is the kind of a [Value].
type ValueKind uint8

// The value kinds.
const (
	Null ValueKind = iota
	Bool
	Int
	Float
	String
	List
)

// Value is a constant or an expression's value: null, bool, int, float,
// string, a list of values, or a dict (from a config; see expr_value.go).
// Text keeps a number as written, so 0.0 stays a float.
type Value struct {
	Kind ValueKind
	Bool bool
	Text string // Int and Float as written; String unquoted
	// Elems are the elements of a List, the values of a Dict.
	Elems []Value
	// Keys are the keys of a Dict, in order, one per element.
	Keys []string
}

// String formats v like Python would write it.
func (v Value) String() string {
	switch v.Kind {
	case Null:
		return "None"
	case Bool:
		if v.Bool {
			return "True"
		}
		return "False"
	case Int, Float:
		return v.Text
	case String:
		return fmt.Sprintf("%q", v.Text)
	case List:
		parts := make([]string, len(v.Elems))
		for i, e := range v.Elems {
			parts[i] = e.String()
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return "?"
}

// Op is one weight op.
type Op struct {
	// Kind is the op kind, e.g. "rename", "stack", "qkv".
	Kind string
	HF   []Name
	MCA  []Name
	// Params holds the op's parameters by name (e.g. "dim").
	Params map[string]Value
	// Inputs, when set, are the op's HF operands built from tensor steps
	// (one per operand as written; leaves index HF). Nil when the op takes
	// the weights HF names as they are.
	Inputs []*TensorExpr
	Span   token.Span
}

// Param returns the parameter named key and whether it is set.
func (o *Op) Param(key string) (Value, bool) {
	v, ok := o.Params[key]
	return v, ok
}

// ParamNames returns the op's parameter names, sorted.
func (o *Op) ParamNames() []string {
	names := make([]string, 0, len(o.Params))
	for k := range o.Params {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Name is a weight name, fixed or chosen by a build flag: when Flag is
// empty the name is Value; otherwise it is Then when the flag is set and
// Else when not. Names starting with "." are relative to the layer prefix;
// "{}" is a wildcard.
type Name struct {
	Value string
	Flag  string
	Then  *Name
	Else  *Name
	// Layer is set when the choice is per layer rather than per build:
	// Then for the layers where mca.<Layer.Key>[layer] == Layer.Equals.
	// Flag is then Layer.Flag(), so Resolve and Flags treat it like a
	// build flag (a consumer that knows layers picks per layer).
	Layer *LayerCond
	Span  token.Span
}

// LayerCond is the per-layer condition mca.<Key>[layer] == "<Equals>".
type LayerCond struct {
	Key, Equals string
}

// Flag returns the pseudo build flag standing for c in Name.Flag.
func (c LayerCond) Flag() string { return "mca." + c.Key + "[layer] == " + strconv.Quote(c.Equals) }

// Holds reports whether c holds for a layer whose mca.<Key> entry is v.
func (c LayerCond) Holds(v string) bool { return v == c.Equals }

// LayerConds returns the per-layer conditions n depends on.
func (n Name) LayerConds() []LayerCond {
	if n.Flag == "" {
		return nil
	}
	var out []LayerCond
	if n.Layer != nil {
		out = append(out, *n.Layer)
	}
	return append(append(out, n.Then.LayerConds()...), n.Else.LayerConds()...)
}

// Resolve returns the name for the given build flags.
func (n Name) Resolve(flags map[string]bool) string {
	if n.Flag == "" {
		return n.Value
	}
	if flags[n.Flag] {
		return n.Then.Resolve(flags)
	}
	return n.Else.Resolve(flags)
}

// Flags returns the build flags n depends on (not its per-layer
// conditions).
func (n Name) Flags() []string {
	if n.Flag == "" {
		return nil
	}
	var out []string
	if n.Layer == nil {
		out = append(out, n.Flag)
	}
	return append(append(out, n.Then.Flags()...), n.Else.Flags()...)
}

// Resolved returns the op's HF and MCA names for the given build flags.
func (o *Op) Resolved(flags map[string]bool) (hf, mca []string) {
	for _, n := range o.HF {
		hf = append(hf, n.Resolve(flags))
	}
	for _, n := range o.MCA {
		mca = append(mca, n.Resolve(flags))
	}
	return hf, mca
}

// ParallelClasses lists the list-valued parallel classes in the order ROLL's
// DistParallelConfig declares them.
var ParallelClasses = []string{
	"pre_process", "post_process", "duplicated", "column", "row", "swiglu", "gdn",
}

// ParallelMaps lists the map-valued parallel classes in ROLL's order.
var ParallelMaps = []string{
	"grouped_duplicated", "grouped_column", "grouped_row", "te_to_local",
}

// ParallelSet is a parallel classification built from parts, merged in
// order like ROLL's DistParallelConfig.merge_configs: lists are
// concatenated, maps are merged with later entries winning.
type ParallelSet struct {
	// Name is empty for a template's own set.
	Name  string
	Parts []ParallelPart
	Span  token.Span
}

// ParallelPart is either a reference to a named set (Use) or inline
// entries.
type ParallelPart struct {
	Use   string
	Lists map[string][]Located
	Maps  map[string][]MapEntry
	Span  token.Span
}

// MapEntry is one entry of a map-valued parallel class.
type MapEntry struct {
	From, To string
	Span     token.Span
}

// Effective is a fully merged parallel classification.
type Effective struct {
	Lists map[string][]string
	Maps  map[string][]MapEntry // insertion order kept, later keys replaced in place
}

// ClassLists returns the set's tensor-parallel classes for
// [rollname.NewClassifier]: each list class as is, each grouped class as
// its map's keys followed by its values (ROLL's grouped_*_weights).
func (e Effective) ClassLists() rollname.ClassLists {
	out := rollname.ClassLists{}
	for _, c := range rollname.Classes {
		out[c] = append(out[c], e.Lists[c.Key()]...)
		m := e.Maps[c.Key()]
		for _, me := range m {
			out[c] = append(out[c], me.From)
		}
		for _, me := range m {
			out[c] = append(out[c], me.To)
		}
	}
	return out
}

// Effective merges the set's parts, looking up named sets in p.
func (p *Program) Effective(s *ParallelSet) Effective {
	e := Effective{Lists: map[string][]string{}, Maps: map[string][]MapEntry{}}
	p.mergeInto(&e, s, 0)
	return e
}

func (p *Program) mergeInto(e *Effective, s *ParallelSet, depth int) {
	if s == nil || depth > 64 {
		return
	}
	for _, part := range s.Parts {
		if part.Use != "" {
			p.mergeInto(e, p.ParallelSet(part.Use), depth+1)
			continue
		}
		for _, c := range ParallelClasses {
			for _, l := range part.Lists[c] {
				e.Lists[c] = append(e.Lists[c], l.Value)
			}
		}
		for _, m := range ParallelMaps {
			for _, me := range part.Maps[m] {
				replaced := false
				for i := range e.Maps[m] {
					if e.Maps[m][i].From == me.From {
						e.Maps[m][i] = me
						replaced = true
					}
				}
				if !replaced {
					e.Maps[m] = append(e.Maps[m], me)
				}
			}
		}
	}
}
