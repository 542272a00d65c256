package exec

import (
	"fmt"
	"math"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/ops"
)

// Composed ops: an op whose HF operands are built from tensor steps
// (ir.Op.Inputs) runs as an [ops.Composite]. Its step sizes are
// expressions over the config, evaluated once per conversion (per plan)
// against the MCA config; HF -> MCA the steps run before the catalog op,
// MCA -> HF after its inverse (ops.Composite).

// ComposeOp returns the runtime form of a composed op o (one with Inputs)
// with its step sizes evaluated against the MCA config mc (and the HF
// config it records, for hf.*): the [ops.Composite] whose Apply converts
// in both directions.
func ComposeOp(o *ir.Op, mc *MCAConfig) (*ops.Composite, error) {
	if len(o.Inputs) == 0 {
		return nil, fmt.Errorf("%s: %s has no tensor steps", o.Span.Start, o.Kind)
	}
	env := &sizeEnv{env: exprEnv{mca: mc.Object(), hf: recordedHF(mc)}}
	c := &ops.Composite{NumHF: len(o.HF)}
	for _, in := range o.Inputs {
		n, err := env.node(in, len(o.HF))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %v", in.Span.Start, o.Kind, err)
		}
		c.Inputs = append(c.Inputs, n)
	}
	parts := 0
	for _, n := range c.Inputs {
		parts += yields(n)
	}
	op, err := catalogOp(o, parts, len(o.MCA))
	if err != nil {
		return nil, err
	}
	c.Op = op
	if err := c.Check(); err != nil {
		return nil, fmt.Errorf("%s: %v", o.Span.Start, err)
	}
	return c, nil
}

// yields is the number of parts an evaluated node yields.
func yields(n *ops.Node) int {
	switch {
	case n.Leaf >= 0:
		return 1
	case n.Step == ops.StepSplit:
		return len(n.Sizes)
	case n.Step == ops.StepChunk:
		return n.Parts
	}
	return 1
}

// compose sets info.comp for an op with tensor steps.
func (m *Model) compose(info *opInfo, mc *MCAConfig) error {
	if len(info.ir.Inputs) == 0 || info.comp != nil {
		return nil
	}
	c, err := ComposeOp(info.ir, mc)
	if err != nil {
		return err
	}
	c.Names = info.hf
	info.comp = c
	return nil
}

// apply runs the op (composed or not) on real data.
func (oi *opInfo) apply(dir ops.Direction, cfg ops.Config, in []ops.Value) ([]ops.Value, error) {
	if oi.comp != nil {
		return oi.comp.Apply(dir, cfg, in)
	}
	return oi.op.Apply(dir, cfg, in)
}

// sizeEnv evaluates step sizes in the runtime's expression environment.
type sizeEnv struct {
	env exprEnv
}

// maxList bounds the length of a list a size expression builds.
const maxList = 1 << 16

// node converts one tensor expression to an evaluated node.
func (e *sizeEnv) node(x *ir.TensorExpr, numHF int) (*ops.Node, error) {
	if x == nil {
		return nil, fmt.Errorf("missing tensor operand")
	}
	if x.Step == "" {
		if x.HF < 0 || x.HF >= numHF {
			return nil, fmt.Errorf("an operand reads HF weight %d of %d", x.HF, numHF)
		}
		return ops.Leaf(x.HF), nil
	}
	n := &ops.Node{Leaf: -1, Step: x.Step, Pos: x.Span.Start.String()}
	for _, o := range x.Operands {
		c, err := e.node(o, numHF)
		if err != nil {
			return nil, err
		}
		n.Operands = append(n.Operands, c)
	}
	for name := range x.Args {
		switch name {
		case "dim", "sizes", "parts", "shape", "dims", "start", "stop", "from":
		default:
			return nil, fmt.Errorf("%s: unknown argument %q", x.Step, name)
		}
	}
	var err error
	intArg := func(name string, def int64) int64 {
		if err != nil {
			return 0
		}
		a, ok := x.Args[name]
		if !ok {
			return def
		}
		var v int64
		v, err = e.int(a)
		if err != nil {
			err = fmt.Errorf("%s %s: %v", x.Step, name, err)
		}
		return v
	}
	listArg := func(name string) []int64 {
		if err != nil {
			return nil
		}
		a, ok := x.Args[name]
		if !ok {
			return nil
		}
		var v []int64
		v, err = e.ints(a)
		if err != nil {
			err = fmt.Errorf("%s %s: %v", x.Step, name, err)
		}
		return v
	}
	need := func(names ...string) {
		for _, name := range names {
			if _, ok := x.Args[name]; !ok && err == nil {
				err = fmt.Errorf("%s needs the argument %q", x.Step, name)
			}
		}
	}
	dim := intArg("dim", 0)
	if dim < math.MinInt32 || dim > math.MaxInt32 {
		return nil, fmt.Errorf("%s: dim %d out of range", x.Step, dim)
	}
	n.Dim = int(dim)
	switch x.Step {
	case ops.StepSplit:
		need("sizes")
		n.Sizes = listArg("sizes")
	case ops.StepChunk:
		need("parts")
		p := intArg("parts", 0)
		if err == nil && (p <= 0 || p > maxList) {
			err = fmt.Errorf("chunk parts %d: want 1 to %d", p, maxList)
		}
		n.Parts = int(p)
	case ops.StepCat:
		n.Sizes = listArg("sizes")
	case ops.StepReshape:
		need("shape")
		n.Shape = listArg("shape")
		n.From = listArg("from")
	case ops.StepTranspose:
		need("dims")
		d := listArg("dims")
		if err == nil && len(d) != 2 {
			err = fmt.Errorf("transpose dims %v: want two dimensions", d)
		}
		if err == nil {
			for i := range 2 {
				if d[i] < -64 || d[i] > 64 {
					err = fmt.Errorf("transpose dims %v out of range", d)
					break
				}
				n.Dims[i] = int(d[i])
			}
		}
	case ops.StepSlice:
		need("start", "stop")
		n.Start = intArg("start", 0)
		n.Stop = intArg("stop", 0)
	default:
		return nil, fmt.Errorf("unknown tensor step %q", x.Step)
	}
	if err != nil {
		return nil, err
	}
	return n, nil
}

// int evaluates a to an integer.
func (e *sizeEnv) int(a *ir.Expr) (int64, error) {
	v, err := a.Eval(e.env)
	if err != nil {
		return 0, err
	}
	n, ok := v.Int64()
	if !ok {
		if v.Kind == ir.Null && a.Kind == ir.ExprField && len(a.Args) == 1 && a.Args[0].Kind == ir.ExprRef {
			return 0, fmt.Errorf("%s: %s.%s is null: the %s config has no %s", a.Span.Start, a.Args[0].Name, a.Name, a.Args[0].Name, a.Name)
		}
		return 0, fmt.Errorf("%s: %s is %s, not an integer", a.Span.Start, v.Repr(), v.Kind.KindName())
	}
	return n, nil
}

// ints evaluates a to a list of integers; a list literal element by
// element, so that an error points at the element.
func (e *sizeEnv) ints(a *ir.Expr) ([]int64, error) {
	if a != nil && a.Kind == ir.ExprList {
		if len(a.Args) > maxList {
			return nil, fmt.Errorf("%s: a list of %d sizes; at most %d", a.Span.Start, len(a.Args), maxList)
		}
		out := make([]int64, len(a.Args))
		for i, x := range a.Args {
			n, err := e.int(x)
			if err != nil {
				return nil, fmt.Errorf("element %d: %v", i, err)
			}
			out[i] = n
		}
		return out, nil
	}
	v, err := a.Eval(e.env)
	if err != nil {
		return nil, err
	}
	if v.Kind != ir.List {
		return nil, fmt.Errorf("%s: %s is %s, not a list of integers", a.Span.Start, v.Repr(), v.Kind.KindName())
	}
	if len(v.Elems) > maxList {
		return nil, fmt.Errorf("%s: a list of %d sizes; at most %d", a.Span.Start, len(v.Elems), maxList)
	}
	out := make([]int64, len(v.Elems))
	for i, x := range v.Elems {
		n, ok := x.Int64()
		if !ok {
			return nil, fmt.Errorf("%s: element %d is %s, not an integer", a.Span.Start, i, x.Kind.KindName())
		}
		out[i] = n
	}
	return out, nil
}
