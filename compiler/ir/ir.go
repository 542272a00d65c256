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
	// DefaultScales are the rules of the library's default quant section
	// (vocab.DefaultQuant), which a template naming none gets; nil
	// without a library.
	DefaultScales []ScaleRule
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
	// Sets are the computed config values (`set`), in source order.
	Sets []ConfigSet
	// Invalid lists HF pure names that are ignored on purpose.
	Invalid []Located
	// Ops are the weight ops in registration order (first match wins).
	Ops []*Op
	// Parallel is the template's parallel classification.
	Parallel *ParallelSet
	// MTP says where HF keeps multi-token-prediction layers; nil when the
	// template has none (mtp.go).
	MTP *MTP
	// Scales are the FP8 scale naming rules of the template's quant
	// section, `use`s expanded, in source order; a template that names
	// none gets the library default's (Program.DefaultScales) and
	// QuantDefault set (quant.go).
	Scales       []ScaleRule
	QuantDefault bool
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

// ConfigSet is `set SIDE.KEY = VALUE [when WHEN]`: Side "mca" computes
// an MCA key when converting HF -> MCA (after the maps and constants),
// "hf" a top-level HF key when rebuilding config.json MCA -> HF (winning
// over the maps). When, if set, must be truthy for the value to be
// written. Sets apply in source order.
type ConfigSet struct {
	Side, Key   string
	Value, When *Expr
	Span        token.Span
	// KeySpan is the span of SIDE.KEY.
	KeySpan token.Span
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
	case Dict:
		return v.Repr()
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

// Name is a weight name: fixed (Value), computed (Computed, an
// expression over build flags evaluating to a string), or chosen by a
// condition: Then where Cond is truthy, Else where not. Cond is any
// expression over the build flags, `hf`, `mca` and `layer`; one that reads
// `layer` or a config is a per-layer condition the runtime and the
// generated template class evaluate for each layer. Names starting with "."
// are relative to the layer prefix; "{}" is a wildcard.
type Name struct {
	Value    string
	Computed *Expr
	Cond     *Expr
	Then     *Name
	Else     *Name
	Span     token.Span
}

// CondKey is the key under which a condition's outcome may be given to
// [Name.Resolve] as a pseudo build flag (a caller enumerating the outcomes
// of per-layer conditions sets it).
func CondKey(cond *Expr) string { return "cond " + cond.String() }

// IsStatic reports whether e reads only literals and build flags (no hf,
// mca or layer), so that it can be evaluated from the flags alone.
func (e *Expr) IsStatic() bool {
	if e == nil {
		return true
	}
	if e.Kind == ExprRef && (e.Name == "hf" || e.Name == "mca" || e.Name == "layer") {
		return false
	}
	for _, a := range e.Args {
		if !a.IsStatic() {
			return false
		}
	}
	return true
}

// Refs returns the build flags e reads, in order of first use.
func (e *Expr) Refs() []string {
	var out []string
	var walk func(*Expr)
	walk = func(x *Expr) {
		if x == nil {
			return
		}
		if x.Kind == ExprRef && x.Name != "hf" && x.Name != "mca" && x.Name != "layer" {
			for _, o := range out {
				if o == x.Name {
					return
				}
			}
			out = append(out, x.Name)
		}
		for _, a := range x.Args {
			walk(a)
		}
	}
	walk(e)
	return out
}

// LayerConds returns the per-layer conditions n depends on: the
// conditions that read hf, mca or layer.
func (n Name) LayerConds() []*Expr {
	if n.Cond == nil {
		return nil
	}
	var out []*Expr
	if !n.Cond.IsStatic() {
		out = append(out, n.Cond)
	}
	return append(append(out, n.Then.LayerConds()...), n.Else.LayerConds()...)
}

// flagEnv is an [Env] of build flags alone.
type flagEnv map[string]bool

func (flagEnv) HF(string) (Value, bool)      { return Value{}, false }
func (flagEnv) MCA(string) (Value, bool)     { return Value{}, false }
func (flagEnv) Layer() (int64, bool)         { return 0, false }
func (f flagEnv) Flag(n string) (bool, bool) { return f[n], true }

// Resolve returns the name for the given build flags: a static condition
// is evaluated with them (an unset flag is false); a per-layer condition
// takes its outcome from flags[CondKey(cond)] (false, the Else branch,
// when absent: the name registered by default). A computed name that
// fails to evaluate resolves to "" (the checker reports it).
func (n Name) Resolve(flags map[string]bool) string {
	switch {
	case n.Computed != nil:
		v, err := n.Computed.Eval(flagEnv(flags))
		if err != nil || v.Kind != String {
			return ""
		}
		return v.Text
	case n.Cond == nil:
		return n.Value
	}
	holds := flags[CondKey(n.Cond)]
	if n.Cond.IsStatic() {
		v, err := n.Cond.Eval(flagEnv(flags))
		holds = err == nil && v.Truthy()
	}
	if holds {
		return n.Then.Resolve(flags)
	}
	return n.Else.Resolve(flags)
}

// ResolveIn returns the name in env, evaluating every condition there
// (with `layer` bound by env for a per-layer name).
func (n Name) ResolveIn(env Env) (string, error) {
	switch {
	case n.Computed != nil:
		v, err := n.Computed.Eval(env)
		if err != nil {
			return "", err
		}
		if v.Kind != String {
			return "", &EvalError{Span: n.Computed.Span, Msg: "a weight name must be a str, got " + v.Kind.KindName()}
		}
		return v.Text, nil
	case n.Cond == nil:
		return n.Value, nil
	}
	v, err := n.Cond.Eval(env)
	if err != nil {
		return "", err
	}
	if v.Truthy() {
		return n.Then.ResolveIn(env)
	}
	return n.Else.ResolveIn(env)
}

// Flags returns the build flags n depends on (in its static conditions
// and computed parts; not its per-layer conditions).
func (n Name) Flags() []string {
	var out []string
	add := func(fs []string) {
		for _, f := range fs {
			if !slicesContains(out, f) {
				out = append(out, f)
			}
		}
	}
	if n.Computed != nil {
		add(n.Computed.Refs())
	}
	if n.Cond == nil {
		return out
	}
	if n.Cond.IsStatic() {
		add(n.Cond.Refs())
	}
	add(n.Then.Flags())
	add(n.Else.Flags())
	return out
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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
	rollname.KeyPreProcess, rollname.KeyPostProcess, rollname.KeyDuplicated, rollname.KeyColumn,
	rollname.KeyRow, rollname.KeySwiglu, rollname.KeyGDN,
}

// ParallelMaps lists the map-valued parallel classes in ROLL's order.
var ParallelMaps = []string{
	rollname.KeyGroupedDuplicated, rollname.KeyGroupedColumn, rollname.KeyGroupedRow, rollname.KeyTEToLocal,
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
