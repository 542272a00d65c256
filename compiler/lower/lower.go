// Package lower turns resolved syntax trees into the IR (compiler/ir).
//
// Lowering expands reuse: a template that `extends` another starts from the
// parent's fields and sections, and each section the child writes replaces
// the parent's; `use NAME` inside a section splices the named block's items
// at that point, so the order of ops (which decides ROLL's first-match
// lookup) is exactly the order of the source after splicing.
//
// Lowering also checks what the IR cannot represent: unknown op kinds and
// parameters, the wrong number of names for an op, non-constant values where
// constants are needed, keys set twice, and reuse cycles.
package lower

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

type lowerer struct {
	info   *resolve.Info
	diags  diag.List
	tmpls  map[*ast.Template]*tmplState
	sets   map[*ast.ParallelBlock]*ir.ParallelSet
	order  []*ir.ParallelSet
	active map[ast.Node]bool // for cycle detection
	// ops memoizes the lowering of each op, which depends on the op
	// alone: the templates that use one weights block share its ops (25 000
	// templates using the stdlib blocks kept 25 000 copies). opsHere holds
	// the ops the current template has taken, so an op a template reaches
	// twice is a second, distinct *ir.Op there, as check expects.
	ops     map[*ast.Op]*ir.Op
	opsHere map[*ast.Op]bool
	// defaults are the rules of the library's default quant section.
	defaults []ir.ScaleRule
}

// tmplState is a template's fields and sections after inheritance.
type tmplState struct {
	done     bool
	fields   map[string]*ast.Field
	config   *ast.ConfigBlock
	mca      *ast.McaBlock
	weights  *ast.WeightsBlock
	parallel *ast.ParallelBlock
	quant    *ast.QuantBlock
}

// Lower compiles the templates declared in info's root files.
func Lower(info *resolve.Info) (*ir.Program, diag.List) {
	l := &lowerer{info: info, tmpls: map[*ast.Template]*tmplState{},
		sets: map[*ast.ParallelBlock]*ir.ParallelSet{}, active: map[ast.Node]bool{},
		ops: map[*ast.Op]*ir.Op{}}
	prog := &ir.Program{}
	if d := info.DefaultQuant; d != nil {
		if b, ok := d.Decl.(*ast.QuantBlock); ok {
			l.defaults, _ = l.quant(nil, nil, b, d.Name, nil)
			l.defaults = exact(l.defaults)
			prog.DefaultScales = l.defaults
		}
	}
	seen := map[string]*ast.Template{}
	for _, f := range info.Roots {
		for _, d := range f.AST.Decls {
			if d.Template == nil {
				continue
			}
			if prev := seen[d.Template.Name.Name]; prev != nil {
				if prev != d.Template {
					dg := diag.Errorf(d.Template.Name.Span(), diag.DuplicateDeclaration, "Duplicate template",
						"Template %q is declared twice in the build; a model type has one template.", d.Template.Name.Name)
					dg.Related = []diag.Related{{Span: prev.Name.Span(), Message: "first declared here"}}
					l.diags.Add(dg)
				}
				continue
			}
			seen[d.Template.Name.Name] = d.Template
			if t := l.template(f, d.Template); t != nil {
				prog.Templates = append(prog.Templates, t)
			}
		}
	}
	// Every named parallel set of the loaded files is part of the program,
	// used or not (the converter merges some, e.g. te_moe, on its own).
	for _, f := range info.Files {
		for _, d := range f.AST.Decls {
			if d.Parallel != nil && d.Parallel.Name != nil {
				l.namedSet(d.Parallel)
			}
		}
	}
	// The named quant sections of the files compiled are checked whether
	// or not a template uses them.
	for _, f := range info.Roots {
		for _, d := range f.AST.Decls {
			if d.Quant != nil && d.Quant.Name != nil {
				l.checkRules(l.quant(nil, nil, d.Quant, d.Quant.Name.Name, nil))
			}
		}
	}
	prog.ParallelSets = l.order
	return prog, l.diags
}

func (l *lowerer) errorf(span token.Span, code, summary, format string, args ...any) {
	l.diags.Add(diag.Errorf(span, code, summary, format, args...))
}

// state computes a template's inherited fields and sections.
func (l *lowerer) state(t *ast.Template) *tmplState {
	if s, ok := l.tmpls[t]; ok {
		if !s.done {
			l.errorf(t.Name.Span(), diag.ReuseCycle, "Template extends itself",
				"Template %q extends itself through a chain of `extends`.", t.Name.Name)
			return &tmplState{fields: map[string]*ast.Field{}, done: true}
		}
		return s
	}
	s := &tmplState{fields: map[string]*ast.Field{}}
	l.tmpls[t] = s
	if t.Extends != nil {
		if sym := l.info.Uses[t.Extends]; sym != nil {
			p := l.state(sym.Decl.(*ast.Template))
			for k, v := range p.fields {
				s.fields[k] = v
			}
			s.config, s.mca, s.weights, s.parallel, s.quant = p.config, p.mca, p.weights, p.parallel, p.quant
		}
	}
	own := map[string]token.Span{}
	once := func(what string, sp token.Span) {
		if prev, ok := own[what]; ok {
			dg := diag.Errorf(sp, diag.DuplicateSection, "Section written twice",
				"A template has at most one %s; merge the two.", what)
			dg.Related = []diag.Related{{Span: prev, Message: "first written here"}}
			l.diags.Add(dg)
		}
		own[what] = sp
	}
	for _, it := range t.Items {
		switch {
		case it.Config != nil:
			once("config section", it.Config.Span())
			s.config = it.Config
		case it.Mca != nil:
			once("mca section", it.Mca.Span())
			s.mca = it.Mca
		case it.Weights != nil:
			once("weights section", it.Weights.Span())
			s.weights = it.Weights
		case it.Parallel != nil:
			once("parallel section", it.Parallel.Span())
			s.parallel = it.Parallel
		case it.Quant != nil:
			once("quant section", it.Quant.Span())
			s.quant = it.Quant
		case it.Field != nil:
			name := it.Field.Key.Name
			if l.retiredField(it.Field) {
				continue
			}
			if _, ok := vocab.TemplateFields[name]; !ok {
				l.unknown(it.Field.Key, diag.UnknownField, "template field", "Unknown template field", keys(vocab.TemplateFields))
				continue
			}
			once("field "+name, it.Field.Span())
			s.fields[name] = it.Field
		}
		for _, blk := range []*ast.Ident{blockName(it)} {
			if blk != nil {
				l.errorf(blk.Span(), diag.NamedSection, "Named section inside a template",
					"Sections inside a template have no name; declare a named block at top level and `use` it.")
			}
		}
	}
	s.done = true
	return s
}

func blockName(it *ast.TemplateItem) *ast.Ident {
	switch {
	case it.Config != nil:
		return it.Config.Name
	case it.Mca != nil:
		return it.Mca.Name
	case it.Weights != nil:
		return it.Weights.Name
	case it.Parallel != nil:
		return it.Parallel.Name
	case it.Quant != nil:
		return it.Quant.Name
	}
	return nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (l *lowerer) unknown(id *ast.Ident, code, what, summary string, candidates []string) {
	detail := fmt.Sprintf("%q is not a known %s.", id.Name, what)
	if s := vocab.Suggest(id.Name, candidates); s != "" {
		detail += fmt.Sprintf(" Did you mean %q?", s)
	} else if len(candidates) > 0 && len(candidates) <= 16 {
		detail += " Valid: " + strings.Join(candidates, ", ") + "."
	}
	l.errorf(id.Span(), code, summary, "%s", detail)
}

func (l *lowerer) template(f *resolve.File, t *ast.Template) *ir.Template {
	s := l.state(t)
	out := &ir.Template{Name: t.Name.Name, Span: t.Span(), NameSpan: t.Name.Span(), File: f.Path}
	if fl := s.fields["layer_prefix"]; fl != nil {
		out.LayerPrefix = l.stringField(fl)
	} else {
		l.errorf(t.Name.Span(), diag.MissingField, "Missing layer_prefix",
			"Template %q must set layer_prefix, the HF prefix of decoder layers (e.g. \"model.layers.\").", t.Name.Name)
	}
	if fl := s.fields["expert_prefix"]; fl != nil {
		out.ExpertPrefix = l.stringField(fl)
	}
	l.mtp(out, s)
	if s.config != nil {
		l.config(out, s.config, map[string]token.Span{})
		out.Config = exact(out.Config)
	}
	if s.mca != nil {
		l.mca(out, s.mca, map[string]token.Span{})
		out.Constants = exact(out.Constants)
	}
	if s.weights != nil {
		l.opsHere = map[*ast.Op]bool{}
		l.weights(out, s.weights)
	}
	if s.parallel != nil {
		out.Parallel = &ir.ParallelSet{Span: s.parallel.Span(), Parts: l.parallelParts(s.parallel)}
	}
	if s.quant != nil {
		rules, where := l.quant(nil, nil, s.quant, "", nil)
		out.Scales = exact(rules)
		l.checkRules(rules, where)
	} else if l.defaults != nil {
		out.Scales, out.QuantDefault = l.defaults, true
	}
	return out
}

// quant appends the scale rules of a quant block to rules, `use`s
// spliced in place; section names the block (empty for a template's own
// section). where gets, per rule, the span its problems are reported at:
// the rule itself, or for a rule spliced in by `use` the outermost such
// `use` of the section lowered (at, once set), so that a conflict between
// a template's rules and a library block's is reported in the template.
func (l *lowerer) quant(rules []ir.ScaleRule, where []token.Span, b *ast.QuantBlock, section string, at *token.Span) ([]ir.ScaleRule, []token.Span) {
	for _, it := range b.Items {
		switch {
		case it.Use != nil:
			if n, ok := l.used(it.Use.Name).(*ast.QuantBlock); ok && l.enter(n, it.Use.Name) {
				inner := at
				if inner == nil {
					sp := it.Use.Span()
					inner = &sp
				}
				rules, where = l.quant(rules, where, n, it.Use.Name.Name, inner)
				delete(l.active, n)
			}
		case it.Scale != nil:
			rules = append(rules, ir.ScaleRule{Weight: it.Scale.Weight.Value, Scale: it.Scale.Scale.Value, Section: section, Span: it.Scale.Span()})
			if at != nil {
				where = append(where, *at)
			} else {
				where = append(where, it.Scale.Span())
			}
		}
	}
	return rules, where
}

// exact returns s without spare capacity: the lists of a template are
// built by appending (which leaves up to half the backing array unused)
// and kept for the whole compilation, for every template of the input.
func exact[S ~[]E, E any](s S) S {
	if cap(s) == len(s) {
		return s
	}
	return append(S(nil), s...)
}

func (l *lowerer) stringField(fl *ast.Field) string {
	if v, ok := fl.Value.StringLit(); ok {
		return v
	}
	l.errorf(fl.Value.Span(), diag.TypeMismatch, "String expected", "%s must be a string literal.", fl.Key.Name)
	return ""
}

// enter guards against `use` cycles; it returns false if n is being lowered.
func (l *lowerer) enter(n ast.Node, id *ast.Ident) bool {
	if l.active[n] {
		l.errorf(id.Span(), diag.ReuseCycle, "Block uses itself", "%q is used inside itself (directly or through other blocks).", id.Name)
		return false
	}
	l.active[n] = true
	return true
}

func (l *lowerer) used(id *ast.Ident) ast.Node {
	if sym := l.info.Uses[id]; sym != nil {
		return sym.Decl
	}
	return nil
}

func (l *lowerer) config(t *ir.Template, b *ast.ConfigBlock, seen map[string]token.Span) {
	for _, it := range b.Items {
		switch {
		case it.Use != nil:
			if n, ok := l.used(it.Use.Name).(*ast.ConfigBlock); ok && l.enter(n, it.Use.Name) {
				l.config(t, n, seen)
				delete(l.active, n)
			}
		case it.Map != nil:
			hf := pathString(it.Map.HF)
			if prev, ok := seen[hf]; ok {
				dg := diag.Errorf(it.Map.HF.Span(), diag.DuplicateKey, "HF key mapped twice",
					"%q is already mapped; a config map has one entry per HF key.", hf)
				dg.Related = []diag.Related{{Span: prev, Message: "first mapped here"}}
				l.diags.Add(dg)
				continue
			}
			seen[hf] = it.Map.HF.Span()
			t.Config = append(t.Config, ir.ConfigEntry{HF: hf, MCA: it.Map.MCA.Name, Span: it.Map.Span()})
		case it.Prefix != nil:
			r := ir.PrefixRule{Prefix: it.Prefix.Prefix.Value, Span: it.Prefix.Span()}
			for _, u := range it.Prefix.Unless {
				r.Unless = append(r.Unless, u.Value)
			}
			t.KeyPrefixes = append(t.KeyPrefixes, r)
		case it.Set != nil:
			l.set(t, it.Set)
		}
	}
}

// set lowers `set SIDE.KEY = VALUE [when COND]`: SIDE is mca or hf, an
// HF key is top-level (it becomes a keyword argument of the rebuilt
// config), VALUE and COND are expressions.
func (l *lowerer) set(t *ir.Template, s *ast.ConfigSet) {
	side := s.Side.Name
	if side != "mca" && side != "hf" {
		l.errorf(s.Side.Span(), diag.TypeMismatch, "Unknown config side",
			"`set` computes an MCA key (`set mca.KEY = ...`) or an HF key (`set hf.KEY = ...`), not %q.", side)
		return
	}
	key := pathString(s.Key)
	if side == "mca" && len(s.Key.Parts) > 1 || side == "hf" && len(s.Key.Parts) > 1 {
		l.errorf(s.Key.Span(), diag.TypeMismatch, "Nested key in set",
			"`set %s.%s`: a computed key is a top-level key of the %s config.", side, key, strings.ToUpper(side))
		return
	}
	cs := ir.ConfigSet{Side: side, Key: key, Span: s.Span(),
		KeySpan: token.Span{Start: s.Side.Pos, End: s.Key.EndPos}}
	var diags diag.List
	cs.Value, diags = Expr(s.Value)
	l.diags.Extend(diags)
	if s.When != nil {
		var wd diag.List
		cs.When, wd = Expr(s.When)
		l.diags.Extend(wd)
		diags.Extend(wd)
	}
	if !diags.HasErrors() {
		t.Sets = append(t.Sets, cs)
	}
}

func pathString(p *ast.Path) string {
	parts := make([]string, len(p.Parts))
	for i, id := range p.Parts {
		parts[i] = id.Name
	}
	return strings.Join(parts, ".")
}

func (l *lowerer) mca(t *ir.Template, b *ast.McaBlock, seen map[string]token.Span) {
	for _, it := range b.Items {
		switch {
		case it.Use != nil:
			if n, ok := l.used(it.Use.Name).(*ast.McaBlock); ok && l.enter(n, it.Use.Name) {
				l.mca(t, n, seen)
				delete(l.active, n)
			}
		case it.Const != nil:
			key := it.Const.Key.Name
			if prev, ok := seen[key]; ok {
				dg := diag.Errorf(it.Const.Key.Span(), diag.DuplicateKey, "MCA constant set twice",
					"%q already has a constant value.", key)
				dg.Related = []diag.Related{{Span: prev, Message: "first set here"}}
				l.diags.Add(dg)
				continue
			}
			seen[key] = it.Const.Key.Span()
			v, ok := l.constant(it.Const.Value)
			if ok {
				t.Constants = append(t.Constants, ir.Constant{Key: key, Value: v, Span: it.Const.Span()})
			}
		}
	}
}

// constant evaluates a literal expression: null, true/false, numbers
// (optionally negated), strings and lists of those.
func (l *lowerer) constant(e *ast.Expr) (ir.Value, bool) {
	if v, ok := literal(e); ok {
		return v, true
	}
	l.errorf(e.Span(), diag.NotConstant, "Constant expected",
		"MCA constants are literals: true, false, null, numbers, strings, or lists of those.")
	return ir.Value{}, false
}

func literal(e *ast.Expr) (ir.Value, bool) {
	if e == nil || e.Cond != nil || e.Value == nil || len(e.Value.Right) > 0 {
		return ir.Value{}, false
	}
	a := e.Value.Left
	if len(a.Right) > 0 || a.Left.Op != "" || len(a.Left.Left.Rest) > 0 || len(a.Left.Left.Left.Rest) > 0 {
		return ir.Value{}, false
	}
	u := a.Left.Left.Left.Left
	neg := false
	if u.Op == "-" {
		neg, u = true, u.Operand
	}
	if u == nil || u.Value == nil || len(u.Value.Ops) > 0 {
		return ir.Value{}, false
	}
	p := u.Value.X
	switch {
	case p.Int != nil:
		return ir.Value{Kind: ir.Int, Text: sign(neg) + *p.Int}, true
	case p.Float != nil:
		return ir.Value{Kind: ir.Float, Text: sign(neg) + *p.Float}, true
	case neg:
		return ir.Value{}, false
	case p.String != nil:
		return ir.Value{Kind: ir.String, Text: *p.String}, true
	case p.Bool != nil:
		return ir.Value{Kind: ir.Bool, Bool: *p.Bool == "true"}, true
	case p.Null:
		return ir.Value{Kind: ir.Null}, true
	case p.List != nil:
		v := ir.Value{Kind: ir.List}
		for _, el := range p.List.Elems {
			ev, ok := literal(el)
			if !ok {
				return ir.Value{}, false
			}
			v.Elems = append(v.Elems, ev)
		}
		return v, true
	case p.Paren != nil:
		return literal(p.Paren)
	}
	return ir.Value{}, false
}

func sign(neg bool) string {
	if neg {
		return "-"
	}
	return ""
}

func (l *lowerer) weights(t *ir.Template, b *ast.WeightsBlock) {
	for _, it := range b.Items {
		switch {
		case it.Use != nil:
			if n, ok := l.used(it.Use.Name).(*ast.WeightsBlock); ok && l.enter(n, it.Use.Name) {
				l.weights(t, n)
				delete(l.active, n)
			}
		case it.Ignore != nil:
			for _, s := range it.Ignore.Names {
				t.Invalid = append(t.Invalid, ir.Located{Value: s.Value, Span: s.Span()})
			}
		case it.Drop != nil:
			op := &ir.Op{Kind: "drop", Params: map[string]ir.Value{}, Span: it.Drop.Span()}
			ok := true
			for _, e := range it.Drop.Names {
				n, good := l.name(e)
				ok = ok && good
				op.HF = append(op.HF, n)
			}
			if ok {
				t.Ops = append(t.Ops, op)
			}
		case it.Op != nil:
			if op := l.sharedOp(it.Op); op != nil {
				t.Ops = append(t.Ops, op)
			}
		}
	}
}

// sharedOp returns the lowering of o, the one shared by every template
// unless this template already has it (see lowerer.ops). A failed
// lowering is memoized too: its diagnostics are the same each time.
func (l *lowerer) sharedOp(o *ast.Op) *ir.Op {
	op, done := l.ops[o]
	if !done {
		op = l.op(o)
		l.ops[o] = op
	} else if l.opsHere[o] && op != nil {
		op = l.op(o)
	}
	l.opsHere[o] = true
	return op
}

func (l *lowerer) op(o *ast.Op) *ir.Op {
	spec := vocab.Op(o.Kind.Name)
	if spec == nil {
		l.unknown(o.Kind, diag.UnknownOpKind, "op kind", "Unknown op kind", vocab.OpKinds())
		return nil
	}
	out := &ir.Op{Kind: spec.Kind, Params: map[string]ir.Value{}, Span: o.Span()}
	ok := true
	nh := len(o.HF)
	if hasSteps(o) {
		nh, ok = l.stepOperands(o, out)
	} else {
		for _, e := range o.HF {
			n, good := l.name(e)
			ok = ok && good
			out.HF = append(out.HF, n)
		}
	}
	for _, e := range o.MCA {
		n, good := l.name(e)
		ok = ok && good
		out.MCA = append(out.MCA, n)
	}
	if nh >= 0 && !l.arity(spec, o, nh) { // nh < 0: steps already reported
		ok = false
	}
	for _, p := range o.Params {
		ps := spec.Param(p.Name.Name)
		if ps == nil {
			var names []string
			for _, q := range spec.Params {
				names = append(names, q.Name)
			}
			if len(names) == 0 {
				l.errorf(p.Name.Span(), diag.UnknownParam, "Unknown op parameter", "Op %s takes no parameters.", spec.Kind)
			} else {
				l.unknown(p.Name, diag.UnknownParam, "parameter of "+spec.Kind, "Unknown op parameter", names)
			}
			ok = false
			continue
		}
		if _, dup := out.Params[ps.Name]; dup {
			l.errorf(p.Name.Span(), diag.DuplicateKey, "Parameter set twice", "%s is already set for this op.", ps.Name)
			ok = false
			continue
		}
		v, good := literal(p.Value)
		if !good || !paramTypeOK(ps.Type, v) {
			l.errorf(p.Value.Span(), diag.TypeMismatch, "Wrong parameter type", "Parameter %s of %s must be %s.", ps.Name, spec.Kind, typeWords(ps.Type))
			ok = false
			continue
		}
		out.Params[ps.Name] = v
	}
	for _, ps := range spec.Params {
		if _, set := out.Params[ps.Name]; !set && ps.Required {
			l.errorf(o.Kind.Span(), diag.MissingParam, "Missing op parameter",
				"Op %s needs the parameter %s (%s): write %s(%s = ...).", spec.Kind, ps.Name, ps.Doc, spec.Kind, ps.Name)
			ok = false
		}
	}
	if spec.Kind == "stack" || spec.Kind == "concat" {
		if _, set := out.Params["dim"]; !set {
			out.Params["dim"] = ir.Value{Kind: ir.Int, Text: "0"}
		}
	}
	if !ok {
		return nil
	}
	return out
}

func paramTypeOK(typ string, v ir.Value) bool {
	switch typ {
	case "int":
		return v.Kind == ir.Int
	case "int?":
		return v.Kind == ir.Int || v.Kind == ir.Null
	case "bool":
		return v.Kind == ir.Bool
	}
	return false
}

func typeWords(typ string) string {
	switch typ {
	case "int":
		return "an integer"
	case "int?":
		return "an integer or null"
	case "bool":
		return "true or false"
	}
	return typ
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// arity checks the number of names against the op's rule; nh is the
// number of HF inputs (the parts tensor steps yield, or the names).
func (l *lowerer) arity(spec *vocab.OpSpec, o *ast.Op, nh int) bool {
	nm := len(o.MCA)
	span := o.Span()
	switch spec.Arity {
	case vocab.Fixed:
		if nh != spec.HF || nm != spec.MCA {
			l.errorf(span, diag.OpArity, "Wrong number of names",
				"Op %s takes %s -> %s; this one has %d -> %d.", spec.Kind,
				plural(spec.HF, "HF name"), plural(spec.MCA, "MCA name"), nh, nm)
			return false
		}
	case vocab.OneSide:
		if (nh == 1) == (nm == 1) || nh == 0 || nm == 0 {
			l.errorf(span, diag.OpArity, "Wrong number of names",
				"Op %s takes one name on exactly one side: N HF names -> 1 MCA name, or 1 HF name -> N MCA names; this one has %d -> %d.",
				spec.Kind, nh, nm)
			return false
		}
	case vocab.DropArity:
		l.errorf(span, diag.OpArity, "Wrong number of names",
			"Op drop takes HF names only (`drop \"mtp.*\"`); remove the -> and the MCA names.")
		return false
	}
	return true
}

// name lowers a weight name: a string, `A if COND else B` (COND any
// expression over build flags, hf, mca and layer; A and B names), or a
// computed name (any other expression; the checker requires a str from
// literals and build flags).
func (l *lowerer) name(e *ast.Expr) (ir.Name, bool) {
	if s, ok := e.StringLit(); ok {
		return ir.Name{Value: s, Span: e.Span()}, true
	}
	if e.Cond != nil && e.Else != nil {
		then, ok1 := l.name(&ast.Expr{Range: e.Value.Range, Value: e.Value})
		els, ok2 := l.name(e.Else)
		cond, diags := Expr(&ast.Expr{Range: e.Cond.Range, Value: e.Cond})
		l.diags.Extend(diags)
		if !ok1 || !ok2 || diags.HasErrors() {
			return ir.Name{}, false
		}
		return ir.Name{Cond: cond, Then: &then, Else: &els, Span: e.Span()}, true
	}
	x, diags := Expr(e)
	l.diags.Extend(diags)
	if diags.HasErrors() {
		return ir.Name{}, false
	}
	return ir.Name{Computed: x, Span: e.Span()}, true
}

func (l *lowerer) parallelParts(b *ast.ParallelBlock) []ir.ParallelPart {
	var parts []ir.ParallelPart
	var inline *ir.ParallelPart
	flush := func() {
		if inline != nil {
			parts = append(parts, *inline)
			inline = nil
		}
	}
	for _, it := range b.Items {
		if it.Use != nil {
			flush()
			if n, ok := l.used(it.Use.Name).(*ast.ParallelBlock); ok {
				l.namedSet(n)
				parts = append(parts, ir.ParallelPart{Use: n.Name.Name, Span: it.Use.Span()})
			}
			continue
		}
		c := it.Class
		kind := c.Kind.Name
		isList, isMap := contains(ir.ParallelClasses, kind), contains(ir.ParallelMaps, kind)
		if !isList && !isMap {
			l.unknown(c.Kind, diag.UnknownParallelClass, "parallel class", "Unknown parallel class", append(append([]string{}, ir.ParallelClasses...), ir.ParallelMaps...))
			continue
		}
		if inline == nil {
			inline = &ir.ParallelPart{Lists: map[string][]ir.Located{}, Maps: map[string][]ir.MapEntry{}, Span: c.Span()}
		}
		for _, e := range c.Entries {
			switch {
			case isList && e.To != nil:
				l.errorf(e.Span(), diag.ParallelEntry, "Unexpected ->", "%s lists name patterns; only the grouped_* and te_to_local classes map names.", kind)
			case isMap && e.To == nil:
				l.errorf(e.Span(), diag.ParallelEntry, "Missing ->", "%s maps names: write \"from\" -> \"to\".", kind)
			case isList:
				inline.Lists[kind] = append(inline.Lists[kind], ir.Located{Value: e.From.Value, Span: e.From.Span()})
			default:
				inline.Maps[kind] = append(inline.Maps[kind], ir.MapEntry{From: e.From.Value, To: e.To.Value, Span: e.Span()})
			}
		}
	}
	flush()
	return parts
}

// namedSet lowers a named parallel set once, after the sets it uses.
func (l *lowerer) namedSet(b *ast.ParallelBlock) *ir.ParallelSet {
	if s, ok := l.sets[b]; ok {
		return s
	}
	if !l.enter(b, b.Name) {
		return nil
	}
	s := &ir.ParallelSet{Name: b.Name.Name, Span: b.Span()}
	s.Parts = l.parallelParts(b)
	delete(l.active, b)
	l.sets[b] = s
	l.order = append(l.order, s)
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkRules reports scale rules that cannot pair names (quant-rule: a
// side without exactly one "{}", both sides the same pattern) and pairs
// of rules that claim one name (quant-overlap: two weight patterns, two
// scale patterns, or one rule's weight pattern and another's scale
// pattern matching a common name), so that every name has at most one
// role and one partner. where[i] is the span rule i is reported at.
func (l *lowerer) checkRules(rules []ir.ScaleRule, where []token.Span) {
	ok := make([]bool, len(rules))
	from := func(r ir.ScaleRule) string {
		if r.Section == "" {
			return ""
		}
		return fmt.Sprintf(" (a rule of quant %s)", r.Section)
	}
	for i, r := range rules {
		ok[i] = true
		for _, side := range []string{r.Weight, r.Scale} {
			if _, _, one := rollname.SplitWildcard(side); !one {
				l.errorf(where[i], diag.QuantRule, "Scale rule without one {}",
					"%q%s has %d {}; each side of a scale rule has exactly one, standing for the same part of the name on both sides (\"{}.weight\" -> \"{}.weight_scale_inv\").",
					side, from(r), strings.Count(side, rollname.Wildcard))
				ok[i] = false
			}
		}
		if ok[i] && r.Weight == r.Scale {
			l.errorf(where[i], diag.QuantRule, "Scale rule pairs a name with itself",
				"Both sides are %q%s: a weight's scale is another tensor.", r.Weight, from(r))
			ok[i] = false
		}
	}
	for i, r := range rules {
		for j := range rules[:i+1] {
			q := rules[j]
			if !ok[i] || !ok[j] {
				continue
			}
			var mine, theirs string
			switch {
			case j < i && rollname.WildcardsOverlap(r.Weight, q.Weight):
				mine, theirs = "weight pattern "+strconv.Quote(r.Weight), "weight pattern "+strconv.Quote(q.Weight)
			case j < i && rollname.WildcardsOverlap(r.Scale, q.Scale):
				mine, theirs = "scale pattern "+strconv.Quote(r.Scale), "scale pattern "+strconv.Quote(q.Scale)
			case rollname.WildcardsOverlap(r.Weight, q.Scale):
				mine, theirs = "weight pattern "+strconv.Quote(r.Weight), "scale pattern "+strconv.Quote(q.Scale)
			case j < i && rollname.WildcardsOverlap(r.Scale, q.Weight):
				mine, theirs = "scale pattern "+strconv.Quote(r.Scale), "weight pattern "+strconv.Quote(q.Weight)
			default:
				continue
			}
			if i == j {
				l.errorf(where[i], diag.QuantOverlap, "Scale rule claims its own scale as a weight",
					"Its %s and %s%s match a common name, which would be both a weight and its own scale.", mine, theirs, from(r))
				continue
			}
			dg := diag.Errorf(where[i], diag.QuantOverlap, "Two scale rules claim one name",
				"The %s of this rule%s and the %s of an earlier rule%s match a common name: a name has one role and one partner. Narrow one of the patterns.",
				mine, from(r), theirs, from(q))
			dg.Related = []diag.Related{{Span: where[j], Message: "the earlier rule" + from(q)}}
			l.diags.Add(dg)
		}
	}
}
