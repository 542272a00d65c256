package check

// Checks of composable tensor ops (spec §7): ops whose HF operands are
// built from tensor steps (ir.Op.Inputs). The compiler derives the
// MCA -> HF direction by inverting each step (see ir.TensorExpr); a step
// that cannot be inverted is an error naming it. Size expressions are
// integers over the MCA config, checked against the MCA schema.

import (
	"fmt"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/lang/diag"
)

// steps checks the tensor steps of op.
func (c *checker) steps(t *ir.Template, op *ir.Op) {
	if len(op.Inputs) == 0 {
		return
	}
	c.leavesOnce(t, op)
	seen := map[string]bool{}
	for _, in := range op.Inputs {
		c.stepTree(t, in, seen)
	}
}

// leavesOnce reports an HF weight an op's steps read twice: the inverse
// direction would have to write it twice.
func (c *checker) leavesOnce(t *ir.Template, op *ir.Op) {
	for _, mode := range templateModes(t) {
		hf, _ := op.Resolved(mode)
		seen := map[string]int{}
		for i, n := range hf {
			if j, dup := seen[n]; dup {
				d := diag.Errorf(op.HF[i].Span, diag.DuplicateName, "HF weight read twice",
					"%s%s is already read by this op; each HF weight is one operand, so that converting back writes it once. Split it once and use the parts.", n, flagNote(mode))
				d.Related = []diag.Related{{Span: op.HF[j].Span, Message: "first read here"}}
				c.add(d)
				return
			}
			seen[n] = i
		}
	}
}

// stepTree checks one operand: each step can be inverted, each size is
// an integer over the MCA config.
func (c *checker) stepTree(t *ir.Template, x *ir.TensorExpr, seen map[string]bool) {
	if x.Leaf() {
		return
	}
	for _, o := range x.Operands {
		c.stepTree(t, o, seen)
	}
	for _, name := range x.ArgNames() {
		c.sizeArg(t, x, name, x.Args[name], seen)
		c.sizeType(x, name, x.Args[name])
	}
	for _, name := range []string{"shape", "from"} {
		if l := x.Args[name]; l != nil && countNegOne(l) > 1 {
			c.add(diag.Errorf(l.Span, diag.StepArg, "Two unknown sizes",
				"%s of %s has more than one -1; at most one size can be left for torch to infer.", name, x.Step))
		}
	}
	switch x.Step {
	case "cat":
		if x.Args["sizes"] == nil {
			c.add(diag.Errorf(x.Span, diag.NotInvertible, "cat cannot be inverted",
				"Converting back to HF splits this cat along dim %s, but the sizes of its inputs there are not known from the steps (a weight's shape is known only from the checkpoint): give them, e.g. cat(..., sizes = [mca.hidden_size, mca.hidden_size]).",
				exprText(x.Args["dim"])))
		} else if n := len(x.Args["sizes"].Args); n != partsOf(x.Operands) {
			c.add(diag.Errorf(x.Args["sizes"].Span, diag.StepArg, "Wrong number of sizes",
				"cat joins %d tensors but sizes lists %d.", partsOf(x.Operands), n))
		}
	case "reshape":
		if x.Args["from"] == nil {
			c.add(diag.Errorf(x.Span, diag.NotInvertible, "reshape cannot be inverted",
				"Converting back to HF reshapes to this step's input shape, which is not known from the steps (a weight's shape is known only from the checkpoint): give it, e.g. reshape(X, [...], from = [-1, mca.hidden_size])."))
		}
	case "slice":
		c.add(diag.Errorf(x.Span, diag.NotInvertible, "slice cannot be inverted",
			"slice keeps the rows [%s, %s) along dim %s and drops the others, so converting back to HF cannot restore the weight. Use split and keep every part.",
			exprText(x.Args["start"]), exprText(x.Args["stop"]), exprText(x.Args["dim"])))
	}
}

func partsOf(in []*ir.TensorExpr) int { return ir.InputParts(in) }

func countNegOne(l *ir.Expr) int {
	n := 0
	for _, e := range l.Args {
		if v, ok := e.IntLit(); ok && v == -1 {
			n++
		}
	}
	return n
}

// sizeArg type-checks the MCA keys a size reads: each is an int field of
// the MCA config that the template sets. seen holds the keys already
// reported for the op.
func (c *checker) sizeArg(t *ir.Template, x *ir.TensorExpr, arg string, e *ir.Expr, seen map[string]bool) {
	if e == nil {
		return
	}
	if e.Kind == ir.ExprField && len(e.Args) == 1 && e.Args[0].Kind == ir.ExprRef && e.Args[0].Name == "mca" {
		key := e.Name
		if seen[key] {
			return
		}
		seen[key] = true
		if c.set != nil {
			if mca := c.set.Schema(MCASchema); mca != nil {
				f := c.mcaKey(mca, key, e.Span)
				if f != nil && !intField(f.Type) {
					c.add(diag.Errorf(e.Span, diag.TypeMismatch, "Size is not an integer",
						"%s of %s reads mca.%s, which is %s; sizes are integers.", arg, x.Step, key, f.Type))
				}
				if f == nil {
					return
				}
			}
		}
		if !provides(t, key, 0) {
			detail := fmt.Sprintf("%s of %s reads the MCA config key %s at run time, but the template never sets it.", arg, x.Step, key)
			if h, ok := hint[key]; ok {
				detail += fmt.Sprintf(" Map it in the config section, e.g. `%s`.", h)
			}
			c.add(diag.Errorf(e.Span, diag.MissingConfig, "Config the step needs is never set", "%s", detail))
		}
		return
	}
	for _, a := range e.Args {
		c.sizeArg(t, x, arg, a, seen)
	}
}

// intField reports whether a schema type holds an integer.
func intField(t *schema.Type) bool {
	if t == nil {
		return true
	}
	for _, a := range t.Alts {
		if a.Name == "int" || a.Name == "any" {
			return true
		}
	}
	return false
}

// exprText renders a small size expression for messages.
func exprText(e *ir.Expr) string {
	if e == nil {
		return "?"
	}
	switch e.Kind {
	case ir.ExprLit:
		return e.Lit.String()
	case ir.ExprRef:
		return e.Name
	case ir.ExprField:
		return exprText(e.Args[0]) + "." + e.Name
	case ir.ExprUnary:
		return e.Op + exprText(e.Args[0])
	case ir.ExprBinary:
		return exprText(e.Args[0]) + " " + e.Op + " " + exprText(e.Args[1])
	case ir.ExprList:
		s := "["
		for i, a := range e.Args {
			if i > 0 {
				s += ", "
			}
			s += exprText(a)
		}
		return s + "]"
	}
	return "?"
}

// sizeType checks that a size (or each size of a list) is an integer by
// the expression checker (ir.Expr.Check); the MCA keys it reads are
// checked by sizeArg.
func (c *checker) sizeType(x *ir.TensorExpr, arg string, e *ir.Expr) {
	if e == nil {
		return
	}
	elems := []*ir.Expr{e}
	if e.Kind == ir.ExprList {
		elems = e.Args
	}
	for _, el := range elems {
		typ, errs := el.Check(mcaSizeEnv{})
		for _, te := range errs {
			c.add(diag.Errorf(te.Span, te.Code, "Bad size expression", "%s of %s: %s", arg, x.Step, te.Msg))
		}
		if len(errs) == 0 && !typ.Has(ir.Int) {
			c.add(diag.Errorf(el.Span, diag.TypeMismatch, "Size is not an integer",
				"%s of %s is %s; sizes are integers (use // to divide).", arg, x.Step, typ))
		}
	}
}

// mcaSizeEnv is the expression checker's view of a size: only the MCA
// config is readable (its keys are checked by sizeArg).
type mcaSizeEnv struct{}

func (mcaSizeEnv) HFType(string) (ir.Type, bool)  { return 0, false }
func (mcaSizeEnv) MCAType(string) (ir.Type, bool) { return ir.AnyType, true }
func (mcaSizeEnv) LayerBound() bool               { return false }
func (mcaSizeEnv) IsFlag(string) bool             { return false }
