package check

import (
	"fmt"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/lang/diag"
)

// typeEnv is the [ir.TypeEnv] of a template's expressions: the types its
// HF and MCA config schemas give, when the build has them (without a
// schema every key is known and of any type).
type typeEnv struct {
	c     *checker
	hf    *schema.Schema
	mca   *schema.Schema
	layer bool
}

func (e typeEnv) fieldType(s *schema.Schema, key string) (ir.Type, bool) {
	if e.c.set == nil || s == nil {
		return ir.AnyType, true
	}
	f := s.Field(key)
	if f == nil {
		if s == e.hf && e.c.knownElsewhere(key) {
			return ir.AnyType, true // absent for this model type: reads null
		}
		return 0, false
	}
	ct := &ir.ConfigType{Nullable: f.Type.Nullable, Default: f.Default != ""}
	for _, a := range f.Type.Alts {
		k := a.Name
		if !schema.BasicTypes[k] {
			k = "object"
		}
		ct.Kinds = append(ct.Kinds, k)
	}
	return ir.TypeFromConfig(ct), true
}

// HFType implements [ir.TypeEnv].
func (e typeEnv) HFType(key string) (ir.Type, bool) { return e.fieldType(e.hf, key) }

// MCAType implements [ir.TypeEnv]. A key the MCA schema lacks is an
// error only with a schema.
func (e typeEnv) MCAType(key string) (ir.Type, bool) { return e.fieldType(e.mca, key) }

// LayerBound implements [ir.TypeEnv].
func (e typeEnv) LayerBound() bool { return e.layer }

// IsFlag implements [ir.TypeEnv].
func (e typeEnv) IsFlag(name string) bool { _, ok := vocab.BuildFlags[name]; return ok }

// exprs checks every expression of t: the conditions and computed parts
// of weight names and the `set` statements, reporting type errors and
// unknown names, functions and config keys as diagnostics at their ranges.
// It returns the ops whose names have errors.
func (c *checker) exprs(t *ir.Template) map[*ir.Op]bool {
	bad := map[*ir.Op]bool{}
	env := typeEnv{c: c}
	if c.set != nil {
		env.hf, env.mca = c.set.Schema(t.Name), c.set.Schema(MCASchema)
	}
	for _, op := range t.Ops {
		for _, names := range [2][]ir.Name{op.HF, op.MCA} {
			for _, n := range names {
				before := len(c.diags)
				c.nameExprs(env, n)
				if len(c.diags) > before {
					bad[op] = true
				}
			}
		}
	}
	for _, s := range t.Sets {
		if s.Side == "mca" && env.mca != nil && env.mca.Field(s.Key) == nil {
			detail := fmt.Sprintf("%s is not a field of the MCA config.", s.Key)
			if sug := vocab.Suggest(s.Key, env.mca.Order); sug != "" {
				detail += fmt.Sprintf(" Did you mean %q?", sug)
			}
			c.add(diag.Errorf(s.KeySpan, diag.UnknownMCAKey, "Unknown MCA config key", "%s", detail))
		}
		vt := c.expr(env, s.Value)
		if s.When != nil {
			c.expr(env, s.When)
		}
		if s.Side == "mca" && env.mca != nil && env.mca.Field(s.Key) != nil && vt != 0 {
			if ft, _ := env.MCAType(s.Key); ft&^ir.TypeOf(ir.Null)&vt == 0 {
				c.add(diag.Errorf(s.Value.Span, diag.TypeMismatch, "Computed value of the wrong type",
					"MCA %s is %s; this expression is %s.", s.Key, env.mca.Field(s.Key).Type, vt))
			}
		}
	}
	return bad
}

// nameExprs checks a weight name's conditions (per layer: `layer` is
// bound) and computed parts (build flags only, of type str).
func (c *checker) nameExprs(env typeEnv, n ir.Name) {
	switch {
	case n.Computed != nil:
		if !n.Computed.IsStatic() {
			c.add(diag.Errorf(n.Span, diag.TypeMismatch, "Computed name reads the config",
				"A computed weight name reads literals and build flags only; choose per layer with `\"a\" if COND else \"b\"`."))
			return
		}
		env.layer = false
		if t := c.expr(env, n.Computed); t != 0 && !t.Has(ir.String) {
			c.add(diag.Errorf(n.Span, diag.TypeMismatch, "Weight name expected",
				"A weight name is a str; this expression is %s.", t))
		}
	case n.Cond != nil:
		env.layer = true
		c.expr(env, n.Cond)
		c.nameExprs(env, *n.Then)
		c.nameExprs(env, *n.Else)
	}
}

// expr reports e's static errors and returns its type (0 after errors).
func (c *checker) expr(env typeEnv, e *ir.Expr) ir.Type {
	t, errs := e.Check(env)
	for _, te := range errs {
		summary := map[string]string{
			diag.UnknownHFKey: "Unknown HF config key", diag.UnknownMCAKey: "Unknown MCA config key",
			diag.UnknownName: "Unknown name", diag.UnknownFunction: "Unknown function",
		}[te.Code]
		if summary == "" {
			summary = "Type error in expression"
		}
		detail := te.Msg + "."
		var cands []string
		switch te.Code {
		case diag.UnknownHFKey:
			cands = env.hf.Order
		case diag.UnknownMCAKey:
			cands = env.mca.Order
		case diag.UnknownName:
			cands = []string{"hf", "mca", "layer"}
			for f := range vocab.BuildFlags {
				cands = append(cands, f)
			}
		case diag.UnknownFunction:
			for f := range ir.Funcs {
				cands = append(cands, f)
			}
		}
		if sug := vocab.Suggest(te.Key, cands); te.Key != "" && sug != "" {
			detail += fmt.Sprintf(" Did you mean %q?", sug)
		}
		c.add(diag.Errorf(te.Span, te.Code, summary, "%s", detail))
	}
	if len(errs) > 0 {
		return 0
	}
	return t
}
