// Package check finds the mistakes in compiled templates that ROLL would
// only show hours into a GPU job, or never.
//
// # What is checked
//
// Config maps and constants are checked against the config schemas
// (compiler/schema): every HF key must exist in the schema of the template's
// model type after the key-prefix rules are applied, every MCA key in the MCA
// schema, the two ends of a map must have compatible types, a constant's
// value must fit its field, and no MCA key may be set twice. An HF key that
// the model type's schema lacks but another model type has is a warning
// (ROLL skips it at run time; several of ROLL's own templates map such
// keys); a key no schema knows is an error with a "did you mean".
//
// Ops are checked for the config they read at run time (qkv needs the head
// counts, ...), for the scope of their names (layer-relative vs global, equal
// `{}` counts), for names registered twice (ROLL keeps only the later op,
// and two ops producing one MCA name make the reverse direction ambiguous),
// for ops that can never be reached because an earlier wildcard pattern
// always matches first (ROLL's lookup is first match wins, prefix-anchored),
// and for MCA names no parallel class covers (tensor-parallel conversion of
// such a name fails). Known mistakes in ROLL's own registrations — an
// attention-bias mapping with no bias op — are warnings.
//
// Every check runs in each build-flag mode (megatron_llama off and on).
package check

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

// MCASchema is the name of the MCA config schema.
const MCASchema = "mca"

type checker struct {
	prog *ir.Program
	// all are the schemas of the program; set are those the template
	// being checked sees (all.For(its file)).
	all, set *schema.Set
	diags    diag.List
	conv     *converted // see convertedNames
	// modeSets caches each template's build-flag modes and its ops' names
	// resolved in each (see resolved).
	modeSets map[*ir.Template]*modeSet
}

// modeSet is a template's build-flag modes (templateModes) and, by op,
// the op's names resolved in each mode, filled in on first use.
type modeSet struct {
	modes    []map[string]bool
	resolved map[*ir.Op][]resolvedNames
}

// resolvedNames are an op's HF and MCA names in one mode.
type resolvedNames struct{ hf, mca []string }

// modeSetOf returns t's cached modeSet, computing it on first use.
func (c *checker) modeSetOf(t *ir.Template) *modeSet {
	if ms := c.modeSets[t]; ms != nil {
		return ms
	}
	if c.modeSets == nil {
		c.modeSets = map[*ir.Template]*modeSet{}
	}
	ms := &modeSet{modes: templateModes(t), resolved: map[*ir.Op][]resolvedNames{}}
	c.modeSets[t] = ms
	return ms
}

// modes returns the build-flag modes every check of t runs in
// (templateModes, computed once per template).
func (c *checker) modes(t *ir.Template) []map[string]bool { return c.modeSetOf(t).modes }

// resolved returns op's HF and MCA names in t's mode number mi (an index
// into c.modes(t)), resolving each op once per template and mode rather
// than once per check family. The slices are shared: callers must not
// modify them.
func (c *checker) resolved(t *ir.Template, op *ir.Op, mi int) (hf, mca []string) {
	ms := c.modeSetOf(t)
	r, ok := ms.resolved[op]
	if !ok {
		r = make([]resolvedNames, len(ms.modes))
		for i, m := range ms.modes {
			r[i].hf, r[i].mca = op.Resolved(m)
		}
		ms.resolved[op] = r
	}
	return r[mi].hf, r[mi].mca
}

// Check checks every template of p against the schemas its file sees
// (set.For(t.File)). With a nil set the schema checks are skipped.
func Check(p *ir.Program, set *schema.Set) diag.List {
	c := &checker{prog: p, all: set}
	for _, t := range p.Templates {
		c.template(t)
	}
	return c.diags
}

func (c *checker) add(d *diag.Diagnostic) { c.diags.Add(d) }

// modes are the build-flag settings every check runs in.
var modes = []map[string]bool{{}, {"megatron_llama": true}}

// templateModes are modes with, in addition, each setting of the per-layer
// name conditions of t (a layer either meets a condition or not), so that
// the names of every layer kind are checked.
func templateModes(t *ir.Template) []map[string]bool {
	seen := map[string]bool{}
	out := modes
	for _, op := range t.Ops {
		for _, names := range [2][]ir.Name{op.HF, op.MCA} {
			for _, n := range names {
				if n.Cond == nil {
					continue // no condition (most names): nothing to add
				}
				for _, lc := range n.LayerConds() {
					f := ir.CondKey(lc)
					if seen[f] {
						continue
					}
					seen[f] = true
					var more []map[string]bool
					for _, m := range out {
						on := maps.Clone(m)
						on[f] = true
						more = append(more, m, on)
					}
					out = more
				}
			}
		}
	}
	return out
}

func (c *checker) template(t *ir.Template) {
	c.set = c.all.For(t.File)
	if c.set != nil {
		c.config(t)
	}
	if bad := c.exprs(t); len(bad) > 0 {
		// The ops whose names did not check have no names to check
		// further; the others are checked as usual.
		tt := *t
		tt.Ops = slices.DeleteFunc(slices.Clone(t.Ops), func(o *ir.Op) bool { return bad[o] })
		t = &tt
	}
	c.ops(t)
	c.parallel(t)
	c.layout(t)
	c.dropped(t)
	c.knownMistakes(t)
	c.scaleOps(t)
	c.mtp(t)
}

// scaleOps warns at each op whose HF names are all FP8 scale names under
// the template's quant rules ([ir.Template.ScaleOp]): ROLL's deepseek_v3
// registers 14 such renames, which its DistConverter raises on (the MCA
// names are in no parallel class; lora-fp8.md §2.2). rolltpl keeps them
// so that the emitted module registers what ROLL registers; its runtime
// never runs them (the FP8 pre-pass consumes the scales first), so they
// need no parallel class.
func (c *checker) scaleOps(t *ir.Template) {
	var cls *rollname.Classifier
	for _, op := range t.Ops {
		if !t.ScaleOp(op) {
			continue
		}
		hf, mca := op.Resolved(nil)
		if cls == nil {
			cls = rollname.NewClassifier(c.effective(t, nil).ClassLists())
		}
		var unclassified []string
		for _, n := range mca {
			if t.Parallel == nil || !classified(cls, n) {
				unclassified = append(unclassified, n)
			}
		}
		roll := "ROLL would convert the scale grid as a plain tensor, apart from its FP8 weight"
		if len(unclassified) > 0 {
			roll = fmt.Sprintf("ROLL's DistConverter raises on this op (%s: in no parallel class)", strings.Join(unclassified, ", "))
		}
		c.add(diag.Warningf(op.Span, diag.ScaleOp, "Op converts FP8 scales",
			"%s: an FP8 block scale under the template's quant rules; %s. "+
				"rolltplc never runs it: its FP8 pre-pass consumes the scales before any op runs. The op is kept so that the emitted module registers what ROLL registers.",
			strings.Join(hf, ", "), roll))
	}
}

// AnnotateConfigTypes fills in [ir.ConfigEntry.Type] of every template
// with a config schema in set: the type and default of the HF key each
// entry maps, for [ir.Template.CheckHFConfig]. A key below a dict or any
// field takes any value; a key the schema lacks takes any value and has
// no default only when the MCA key it maps needs a value (see skippable).
// Templates without a schema keep nil types.
func AnnotateConfigTypes(p *ir.Program, set *schema.Set) {
	if p == nil || set == nil {
		return
	}
	for _, t := range p.Templates {
		root := set.For(t.File).Schema(t.Name)
		if root == nil {
			continue
		}
		for i, e := range t.Config {
			parts := strings.Split(EffectiveKey(t, e.HF), ".")
			f, holder, _ := set.For(t.File).Resolve(root, parts)
			if f == nil {
				// Unknown to the schema (check warns or errs): any value.
				// Missing from a config.json it is skipped by ROLL, which
				// is fine unless the MCA key cannot do without it.
				t.Config[i].Type = &ir.ConfigType{Kinds: []string{"any"}, Default: skippable(e)}
				continue
			}
			ct := &ir.ConfigType{Nullable: f.Type.Nullable, Default: f.Default != ""}
			if holder.Field(parts[len(parts)-1]) != f {
				ct.Kinds = []string{"any"} // below a dict or any field
			} else {
				for _, a := range f.Type.Alts {
					k := a.Name
					if !schema.BasicTypes[k] {
						k = "object"
					}
					ct.Kinds = append(ct.Kinds, k)
				}
			}
			t.Config[i].Type = ct
		}
	}
}

// EffectiveKey applies the template's key-prefix rules to an HF key.
func EffectiveKey(t *ir.Template, key string) string { return t.EffectiveKey(key) }

func (c *checker) config(t *ir.Template) {
	hf := c.set.Schema(t.Name)
	mca := c.set.Schema(MCASchema)
	if hf == nil && len(t.Config) > 0 {
		c.add(diag.Warningf(t.NameSpan, diag.NoSchema, "No config schema for this model type",
			"No schema %q is declared in this file, the files it imports or the stdlib, so its config keys are not checked. Generate one with `rolltplc schema infer config.json > %s_schema.rolltpl` and import it.", t.Name, t.Name))
	}
	mapped := map[string]ir.ConfigEntry{}
	for _, e := range t.Config {
		var hfField *schema.Field
		if hf != nil {
			hfField = c.hfKey(t, hf, e)
		}
		var mcaField *schema.Field
		if mca != nil {
			mcaField = c.mcaKey(mca, e.MCA, e.Span)
		}
		if prev, ok := mapped[e.MCA]; ok {
			d := diag.Errorf(e.Span, diag.DuplicateMCAKey, "MCA key mapped twice",
				"%s is already mapped from %s; one MCA key takes its value from one HF key.", e.MCA, prev.HF)
			d.Related = []diag.Related{{Span: prev.Span, Message: "first mapped here"}}
			c.add(d)
		} else {
			mapped[e.MCA] = e
		}
		if hfField != nil && mcaField != nil && !mcaField.Type.Is("ignored") && !compatible(hfField.Type, mcaField.Type) {
			c.add(diag.Errorf(e.Span, diag.TypeMismatch, "Incompatible config types",
				"HF %s is %s but MCA %s is %s.", e.HF, hfField.Type, e.MCA, mcaField.Type))
		}
	}
	for _, k := range t.Constants {
		if prev, ok := mapped[k.Key]; ok {
			d := diag.Errorf(k.Span, diag.DuplicateMCAKey, "MCA key both mapped and constant",
				"%s is mapped from %s and also set here; the constant is merged last and silently wins. Keep one.", k.Key, prev.HF)
			d.Related = []diag.Related{{Span: prev.Span, Message: "mapped here"}}
			c.add(d)
		}
		if mca == nil {
			continue
		}
		f := c.mcaKey(mca, k.Key, k.Span)
		if f != nil && !f.Type.Is("ignored") && !valueFits(k.Value, f.Type) {
			c.add(diag.Errorf(k.Span, diag.TypeMismatch, "Constant of the wrong type",
				"MCA %s is %s; %s is not.", k.Key, f.Type, k.Value))
		}
	}
}

func (c *checker) hfKey(t *ir.Template, hf *schema.Schema, e ir.ConfigEntry) *schema.Field {
	key := EffectiveKey(t, e.HF)
	parts := strings.Split(key, ".")
	f, at, n := c.set.Resolve(hf, parts)
	if f != nil {
		return f
	}
	shown := e.HF
	if key != e.HF {
		shown = fmt.Sprintf("%s (read as %s after the prefix rule)", e.HF, key)
	}
	missing := parts[min(n, len(parts)-1)]
	if c.knownElsewhere(missing) {
		c.add(diag.Warningf(e.Span, diag.HFKeyAbsent, "HF key absent for this model type",
			"%s configs have no %s; ROLL skips the mapping and the MCA default applies.", t.Name, shown))
		return nil
	}
	detail := fmt.Sprintf("%s is not a key of the %s config (schema %s).", shown, t.Name, at.Name)
	if s := vocab.Suggest(missing, at.Order); s != "" {
		detail += fmt.Sprintf(" Did you mean %q?", s)
	}
	c.add(diag.Errorf(e.Span, diag.UnknownHFKey, "Unknown HF config key", "%s", detail))
	return nil
}

// knownElsewhere reports whether some schema other than the MCA one has a
// field of that name.
func (c *checker) knownElsewhere(key string) bool {
	for name, s := range c.set.Schemas {
		if name != MCASchema && s.Field(key) != nil {
			return true
		}
	}
	return false
}

func (c *checker) mcaKey(mca *schema.Schema, key string, span token.Span) *schema.Field {
	f := mca.Field(key)
	if f == nil {
		detail := fmt.Sprintf("%s is not a field of the MCA config.", key)
		if s := vocab.Suggest(key, mca.Order); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		}
		c.add(diag.Errorf(span, diag.UnknownMCAKey, "Unknown MCA config key", "%s", detail))
		return nil
	}
	if f.Type.Is("ignored") {
		doc := f.Doc
		if doc == "" {
			doc = "it is not a field of the config class"
		}
		c.add(diag.Warningf(span, diag.MCAKeyIgnored, "MCA key is dropped",
			"MCA key %s: %s", key, doc))
	}
	return f
}

// compatible reports whether a value of type a can be stored where b is
// expected.
func compatible(a, b *schema.Type) bool {
	if a == nil || b == nil {
		return true
	}
	for _, x := range a.Alts {
		for _, y := range b.Alts {
			if atomCompatible(x, y) {
				return true
			}
		}
	}
	return false
}

func atomCompatible(x, y schema.Atom) bool {
	switch {
	case x.Name == "any" || y.Name == "any":
		return true
	case x.Name == y.Name:
		if x.Elem != nil && y.Elem != nil {
			return compatible(x.Elem, y.Elem)
		}
		return true
	case x.Name == "int" && y.Name == "float":
		return true
	case x.Name == "dict" && !schema.BasicTypes[y.Name], y.Name == "dict" && !schema.BasicTypes[x.Name]:
		return true
	case !schema.BasicTypes[x.Name] && !schema.BasicTypes[y.Name]:
		return true
	}
	return false
}

func valueFits(v ir.Value, t *schema.Type) bool {
	if v.Kind == ir.Null {
		return t.Nullable || t.Is("any")
	}
	for _, a := range t.Alts {
		switch {
		case a.Name == "any":
			return true
		case a.Name == "int" && v.Kind == ir.Int,
			a.Name == "float" && (v.Kind == ir.Float || v.Kind == ir.Int),
			a.Name == "bool" && v.Kind == ir.Bool,
			a.Name == "str" && v.Kind == ir.String:
			return true
		case a.Name == "list" && v.Kind == ir.List:
			ok := true
			for _, e := range v.Elems {
				if a.Elem != nil && !valueFits(e, a.Elem) {
					ok = false
				}
			}
			if ok {
				return true
			}
		}
	}
	return false
}

// derived says which MCA keys the config class fills in from others when
// the template leaves them unset (Megatron's __post_init__).
var derived = map[string][]string{
	"kv_channels":         {"hidden_size", "num_attention_heads"},
	"num_query_groups":    {"num_attention_heads"},
	"moe_ffn_hidden_size": {"ffn_hidden_size"},
}

// provides reports whether t sets MCA key k (mapped, constant, or derived).
func provides(t *ir.Template, k string, depth int) bool {
	for _, e := range t.Config {
		if e.MCA == k {
			return true
		}
	}
	for _, c := range t.Constants {
		if c.Key == k {
			return true
		}
	}
	if from, ok := derived[k]; ok && depth < 4 {
		for _, f := range from {
			if !provides(t, f, depth+1) {
				return false
			}
		}
		return true
	}
	return false
}

// hint says how a template usually provides an MCA key.
var hint = map[string]string{
	"num_attention_heads": "num_attention_heads -> num_attention_heads",
	"num_query_groups":    "num_key_value_heads -> num_query_groups",
	"hidden_size":         "hidden_size -> hidden_size",
	"kv_channels":         "head_dim -> kv_channels",
	"num_moe_experts":     "num_experts -> num_moe_experts",
}

func (c *checker) ops(t *ir.Template) {
	missing := map[string]bool{}
	for _, op := range t.Ops {
		c.steps(t, op)
		spec := vocab.Op(op.Kind)
		if spec == nil {
			continue
		}
		for _, k := range spec.Reads {
			if _, set := op.Params[k]; set {
				continue // e.g. qkv(hidden_size = 128)
			}
			if !provides(t, k, 0) && !missing[op.Kind+k] {
				missing[op.Kind+k] = true
				detail := fmt.Sprintf("Op %s reads the MCA config key %s at run time, but the template never sets it.", op.Kind, k)
				if h, ok := hint[k]; ok {
					detail += fmt.Sprintf(" Map it in the config section, e.g. `%s`.", h)
				}
				c.add(diag.Errorf(op.Span, diag.MissingConfig, "Config the op needs is never set", "%s", detail))
			}
		}
		c.names(t, op)
		c.nameRegexps(t, op)
		if d, ok := op.Params["dim"]; ok && (d.Text != "0" && d.Text != "1" && d.Text != "-1" && d.Text != "-2") {
			c.add(diag.Errorf(op.Span, diag.ParamRange, "dim out of range",
				"Weights are matrices or vectors: dim must be 0, 1, -1 or -2, not %s.", d.Text))
		}
	}
	for mi, mode := range c.modes(t) {
		c.duplicates(t, mi, mode)
		c.reachability(t, mi, mode)
	}
}

func relative(n string) bool { return strings.HasPrefix(n, ".") }

func (c *checker) names(t *ir.Template, op *ir.Op) {
	for mi := range c.modes(t) {
		hf, mca := c.resolved(t, op, mi)
		scope := func(names []string) (rel, glob int, wild int) {
			for _, n := range names {
				if relative(n) {
					rel++
				} else {
					glob++
				}
				wild += strings.Count(n, "{}")
			}
			return
		}
		hr, hg, hw := scope(hf)
		if op.Kind == "split_experts" || op.Kind == "split_stack_experts" {
			// Fused expert tensors have bare names right after the expert
			// prefix (".mlp.experts." + "gate_up_proj").
			hr, hg = hr+hg, 0
		}
		mr, mg, mw := scope(mca)
		switch {
		case hr > 0 && hg > 0:
			c.add(diag.Errorf(op.Span, diag.NameScope, "Op mixes layer and global names",
				"The HF names of one op are all layer-relative (starting with \".\") or all global."))
		case mr > 0 && mg > 0:
			c.add(diag.Errorf(op.Span, diag.NameScope, "Op mixes layer and global names",
				"The MCA names of one op are all layer-relative (starting with \".\") or all global."))
		case len(mca) > 0 && (hr > 0) != (mr > 0):
			c.add(diag.Errorf(op.Span, diag.NameScope, "Layer name converted to a global name",
				"An op maps layer-relative names to layer-relative names and global names to global names; this one mixes the two sides."))
		case maxWildcards(hf) > 1 || maxWildcards(mca) > 1:
			c.add(diag.Errorf(op.Span, diag.WildcardCount, "Several {} in one name",
				"A name has at most one {}: ROLL's converter finds the captured parts with re.findall, which returns tuples for several groups, and its name formatting then fails. Write one {} for the whole varying part."))
		case len(mca) > 0 && hw != mw:
			c.add(diag.Errorf(op.Span, diag.WildcardCount, "Wildcard counts differ",
				"The HF side has %d {} and the MCA side %d; each {} carries one captured part across.", hw, mw))
		default:
			continue
		}
		return // one scope diagnostic per op
	}
}

func flagNote(mode map[string]bool) string {
	if mode["megatron_llama"] {
		return " (with megatron_llama)"
	}
	return ""
}

// duplicates reports names registered by two ops on the same side.
func (c *checker) duplicates(t *ir.Template, mi int, mode map[string]bool) {
	seen := [2]map[string]*ir.Op{{}, {}}
	for _, op := range t.Ops {
		hf, mca := c.resolved(t, op, mi)
		for side, names := range [][]string{hf, mca} {
			for _, n := range names {
				key := n
				if side == 1 && isSplit(op) {
					// A fused-expert split op and a per-expert op may share
					// MCA names: the two HF layouts of the same experts.
					// HF -> MCA takes either; MCA -> HF the Go runtime writes
					// the fused layout, ROLL the later op's (spec §11).
					key = "\x00split\x00" + n
				}
				prev := seen[side][key]
				if prev != nil && prev != op {
					if side == 0 {
						d := diag.Errorf(op.Span, diag.DuplicateName, "HF name registered twice",
							"%s is also a name of an earlier op%s; ROLL keeps only this later op for it, so the earlier one never converts it.", n, flagNote(mode))
						d.Related = []diag.Related{{Span: prev.Span, Message: "earlier op"}}
						c.add(d)
					} else {
						d := diag.Errorf(op.Span, diag.DuplicateName, "Two ops produce one MCA name",
							"%s is also produced by an earlier op%s; converting back to HF would be ambiguous.", n, flagNote(mode))
						d.Related = []diag.Related{{Span: prev.Span, Message: "earlier op"}}
						c.add(d)
					}
					if mode["megatron_llama"] {
						return
					}
					continue
				}
				seen[side][key] = op
			}
		}
	}
}

// isSplit reports whether op expands fused expert tensors.
func isSplit(op *ir.Op) bool { return op.Kind == "split_experts" || op.Kind == "split_stack_experts" }

// reachability reports wildcard ops whose names an earlier table key always
// takes (ROLL tries exact keys first, then every key in insertion order).
func (c *checker) reachability(t *ir.Template, mi int, mode map[string]bool) {
	for side := 0; side < 2; side++ {
		type key struct {
			name string
			op   *ir.Op
		}
		var keys []key
		index := map[string]int{}
		for _, op := range t.Ops {
			hf, mca := c.resolved(t, op, mi)
			names := hf
			if side == 1 {
				names = mca
			}
			for _, n := range names {
				if i, ok := index[n]; ok {
					keys[i].op = op // a later registration overwrites in place
					continue
				}
				index[n] = len(keys)
				keys = append(keys, key{n, op})
			}
		}
		for i, k := range keys {
			if !strings.Contains(k.name, "{}") {
				continue
			}
			sample := strings.ReplaceAll(k.name, "{}", "x")
			for _, earlier := range keys[:i] {
				if earlier.op == k.op {
					continue
				}
				if rollname.KeyMatches(earlier.name, sample) && covers(earlier.name, k.name) {
					sideName := "HF"
					if side == 1 {
						sideName = "MCA"
					}
					d := diag.Errorf(k.op.Span, diag.UnreachableOp, "Op can never be reached",
						"Every %s name matching %q is taken first by the earlier pattern %q%s (ROLL's lookup is first match wins, anchored at the start). Move this op before it or narrow the earlier name.",
						sideName, k.name, earlier.name, flagNote(mode))
					d.Related = []diag.Related{{Span: earlier.op.Span, Message: "the earlier op"}}
					c.add(d)
					break
				}
			}
		}
	}
}

// covers reports whether the earlier key matches every name the wildcard
// pattern later can: the earlier key's literal part (up to its first {})
// must be a prefix of the later pattern's literal part.
func covers(earlier, later string) bool {
	lit := later
	if i := strings.Index(lit, "{}"); i >= 0 {
		lit = lit[:i]
	}
	e := earlier
	if i := strings.Index(e, "{}"); i >= 0 {
		e = e[:i]
	} else if !strings.Contains(earlier, "{}") {
		// A plain earlier key matches names that start with it.
		return strings.HasPrefix(lit, earlier) || rollname.KeyMatches(earlier, lit)
	}
	return rollname.KeyMatches(e, lit)
}

// parallel reports MCA names no parallel class covers.
func (c *checker) parallel(t *ir.Template) {
	if t.Parallel == nil {
		if len(t.Ops) > 0 {
			c.add(diag.Errorf(t.NameSpan, diag.ParallelCoverage, "No parallel classification",
				"Template %q has no parallel section, so no weight can be split across tensor-parallel ranks; add `parallel { use default }`.", t.Name))
		}
		return
	}
	reported := map[string]bool{}
	var classes [2]*rollname.Classifier // without and with megatron_llama
	for mi, mode := range c.modes(t) {
		i := 0
		if mode["megatron_llama"] {
			i = 1
		}
		if classes[i] == nil {
			classes[i] = rollname.NewClassifier(c.effective(t, mode).ClassLists())
		}
		eff := classes[i]
		for _, op := range t.Ops {
			if t.ScaleOp(op) {
				continue // scaleOps warns: no runtime converts it
			}
			_, mca := c.resolved(t, op, mi)
			for _, n := range mca {
				if reported[n] || classified(eff, n) {
					continue
				}
				reported[n] = true
				c.add(diag.Errorf(op.Span, diag.ParallelCoverage, "MCA name in no parallel class",
					"%s%s matches no pattern of the template's parallel classification, so converting it to a tensor-parallel layout fails. Add it to a class, e.g. `duplicated %q` for a norm or `column %q` for a weight split by rows.",
					n, flagNote(mode), pure(n), pure(n)))
			}
		}
	}
}

// effective returns the parallel classification of t in a build-flag
// mode: with megatron_llama, the named set of that name is merged in.
func (c *checker) effective(t *ir.Template, mode map[string]bool) ir.Effective {
	eff := c.prog.Effective(t.Parallel)
	if s := c.prog.ParallelSet("megatron_llama"); s != nil && mode["megatron_llama"] {
		eff = merge(eff, c.prog.Effective(s))
	}
	return eff
}

// pure is the name ROLL classifies n under, its {} written as a glob.
// maxWildcards returns the largest number of {} in one of names.
func maxWildcards(names []string) int {
	m := 0
	for _, n := range names {
		m = max(m, strings.Count(n, "{}"))
	}
	return m
}

func pure(n string) string {
	return strings.ReplaceAll(rollname.PureName(n), "{}", "*")
}

func merge(a, b ir.Effective) ir.Effective {
	out := ir.Effective{Lists: map[string][]string{}, Maps: map[string][]ir.MapEntry{}}
	for k, v := range a.Lists {
		out.Lists[k] = append(out.Lists[k], v...)
	}
	for k, v := range b.Lists {
		out.Lists[k] = append(out.Lists[k], v...)
	}
	return out
}

// classified applies ROLL's classification (rollname) to an MCA pure
// name, a {} read as one sample name component: it is in a plain class
// (swiglu, gdn, duplicated, column, row).
func classified(c *rollname.Classifier, name string) bool {
	return c.Classify(strings.ReplaceAll(name, "{}", "x"), false, true) != rollname.Unclassified
}

func (c *checker) knownMistakes(t *ir.Template) {
	bias := false
	var where token.Span
	for _, e := range t.Config {
		if e.MCA == "add_qkv_bias" {
			bias, where = true, e.Span
		}
	}
	for _, k := range t.Constants {
		if k.Key == "add_qkv_bias" && k.Value.Kind == ir.Bool && k.Value.Bool {
			bias, where = true, k.Span
		}
	}
	if !bias {
		return
	}
	for _, op := range t.Ops {
		if op.Kind == "qkv_bias" {
			return
		}
	}
	c.add(diag.Warningf(where, diag.MissingBiasOp, "Bias mapped but never converted",
		"The template sets add_qkv_bias, but no qkv_bias op converts the q/k/v biases: a checkpoint with attention biases will have bias tensors no op consumes. Add `use qkv_and_bias` or a qkv_bias op."))
}

// SortedKeys returns m's keys sorted (used by tests and tools).
func SortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
