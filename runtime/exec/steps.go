package exec

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
)

// Composed ops: an op whose HF operands are built from tensor steps
// (ir.Op.Inputs) runs as an [ops.Composite]. Its step sizes are
// expressions over the config, evaluated once per conversion (per plan)
// against the MCA config; HF -> MCA the steps run before the catalog op,
// MCA -> HF after its inverse (ops.Composite).

// ComposeOp returns the runtime form of a composed op o (one with Inputs)
// with its step sizes evaluated against the MCA config mc: the
// [ops.Composite] whose Apply converts in both directions. hfKeys maps HF
// config keys to the MCA keys the template maps them to, for sizes
// written over hf.* (nil: only mca.* is known).
func ComposeOp(o *ir.Op, mc *MCAConfig, hfKeys map[string]string) (*ops.Composite, error) {
	if len(o.Inputs) == 0 {
		return nil, fmt.Errorf("%s: %s has no tensor steps", o.Span.Start, o.Kind)
	}
	env := &sizeEnv{mc: mc, hfKeys: hfKeys}
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

// hfKeyMap maps each HF config key of t to its MCA key.
func hfKeyMap(t *ir.Template) map[string]string {
	m := map[string]string{}
	for _, e := range t.Config {
		m[e.HF] = e.MCA
	}
	return m
}

// compose sets info.comp for an op with tensor steps.
func (m *Model) compose(info *opInfo, mc *MCAConfig) error {
	if len(info.ir.Inputs) == 0 {
		return nil
	}
	c, err := ComposeOp(info.ir, mc, hfKeyMap(m.Template))
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

// sizeEnv evaluates step sizes against the MCA config.
type sizeEnv struct {
	mc     *MCAConfig
	hfKeys map[string]string
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
	v, err := e.eval(a)
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("%s is %s, not an integer", a.Span.Start, kindOf(v))
	}
	return n, nil
}

// ints evaluates a to a list of integers.
func (e *sizeEnv) ints(a *ir.Expr) ([]int64, error) {
	v, err := e.eval(a)
	if err != nil {
		return nil, err
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s is %s, not a list of integers", a.Span.Start, kindOf(v))
	}
	out := make([]int64, len(l))
	for i, x := range l {
		n, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("%s: element %d is %s, not an integer", a.Span.Start, i, kindOf(x))
		}
		out[i] = n
	}
	return out, nil
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a bool"
	case int64:
		return "an int"
	case float64:
		return "a float"
	case string:
		return "a string"
	case []any:
		return "a list"
	}
	return "a dict"
}

// eval evaluates a size expression to nil, bool, int64, float64, string or
// []any. It covers what step sizes need (literals, hf.* and mca.* config
// keys, integer arithmetic, list concatenation and repetition,
// comparisons, conditionals, len/min/max); it stands in for ir.Expr's own
// evaluator until that is merged.
func (e *sizeEnv) eval(a *ir.Expr) (any, error) {
	if a == nil {
		return nil, fmt.Errorf("missing expression")
	}
	fail := func(format string, args ...any) (any, error) {
		return nil, fmt.Errorf("%s: %s", a.Span.Start, fmt.Sprintf(format, args...))
	}
	switch a.Kind {
	case ir.ExprLit:
		return litValue(a.Lit)
	case ir.ExprRef:
		return fail("%s is not a value", a.Name)
	case ir.ExprField:
		path := []string{a.Name}
		x := a.Args[0]
		for x.Kind == ir.ExprField {
			path = append([]string{x.Name}, path...)
			x = x.Args[0]
		}
		if x.Kind != ir.ExprRef || (x.Name != "mca" && x.Name != "hf") {
			return fail("only fields of hf and mca are known to step sizes")
		}
		key := strings.Join(path, ".")
		mcaKey := key
		if x.Name == "hf" {
			k, ok := e.hfKeys[key]
			if !ok {
				return fail("hf.%s: the template maps no MCA key from it, so the conversion does not know it", key)
			}
			mcaKey = k
		}
		v, ok := e.mc.Get(mcaKey)
		if !ok {
			return fail("%s.%s: mca_config has no %s", x.Name, key, mcaKey)
		}
		return jsonValue(v)
	case ir.ExprList:
		if len(a.Args) > maxList {
			return fail("list longer than %d", maxList)
		}
		out := make([]any, 0, len(a.Args))
		for _, x := range a.Args {
			v, err := e.eval(x)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case ir.ExprIndex:
		l, err := e.eval(a.Args[0])
		if err != nil {
			return nil, err
		}
		i, err := e.eval(a.Args[1])
		if err != nil {
			return nil, err
		}
		list, ok1 := l.([]any)
		k, ok2 := i.(int64)
		if !ok1 || !ok2 {
			return fail("cannot index %s with %s", kindOf(l), kindOf(i))
		}
		if k < 0 {
			k += int64(len(list))
		}
		if k < 0 || k >= int64(len(list)) {
			return fail("index %d out of range for a list of %d", k, len(list))
		}
		return list[k], nil
	case ir.ExprUnary:
		v, err := e.eval(a.Args[0])
		if err != nil {
			return nil, err
		}
		switch a.Op {
		case "-":
			if n, ok := v.(int64); ok && n != math.MinInt64 {
				return -n, nil
			}
			if f, ok := v.(float64); ok {
				return -f, nil
			}
		case "!":
			return !truthy(v), nil
		}
		return fail("cannot apply %s to %s", a.Op, kindOf(v))
	case ir.ExprCond:
		c, err := e.eval(a.Args[1])
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return e.eval(a.Args[0])
		}
		return e.eval(a.Args[2])
	case ir.ExprCall:
		args := make([]any, len(a.Args))
		for i, x := range a.Args {
			v, err := e.eval(x)
			if err != nil {
				return nil, err
			}
			args[i] = v
		}
		switch a.Name {
		case "len":
			if len(args) == 1 {
				if l, ok := args[0].([]any); ok {
					return int64(len(l)), nil
				}
			}
		case "min", "max":
			if len(args) == 1 {
				if l, ok := args[0].([]any); ok {
					args = l
				}
			}
			var best int64
			for i, x := range args {
				n, ok := x.(int64)
				if !ok {
					return fail("%s of %s", a.Name, kindOf(x))
				}
				if i == 0 || (a.Name == "min" && n < best) || (a.Name == "max" && n > best) {
					best = n
				}
			}
			if len(args) > 0 {
				return best, nil
			}
		}
		return fail("%s is not a function step sizes can call with these arguments", a.Name)
	case ir.ExprBinary:
		l, err := e.eval(a.Args[0])
		if err != nil {
			return nil, err
		}
		if a.Op == "||" || a.Op == "&&" {
			if truthy(l) == (a.Op == "||") {
				return l, nil
			}
			return e.eval(a.Args[1])
		}
		r, err := e.eval(a.Args[1])
		if err != nil {
			return nil, err
		}
		return evalBinary(a, l, r)
	}
	return fail("unsupported expression")
}

// evalBinary evaluates l op r for the integer and list operators.
func evalBinary(a *ir.Expr, l, r any) (any, error) {
	fail := func() (any, error) {
		return nil, fmt.Errorf("%s: cannot compute %s %s %s", a.Span.Start, kindOf(l), a.Op, kindOf(r))
	}
	switch a.Op {
	case "==":
		return fmt.Sprint(l) == fmt.Sprint(r), nil
	case "!=":
		return fmt.Sprint(l) != fmt.Sprint(r), nil
	}
	if ll, ok := l.([]any); ok {
		switch rv := r.(type) {
		case []any:
			if a.Op == "+" && len(ll)+len(rv) <= maxList {
				return append(append([]any{}, ll...), rv...), nil
			}
		case int64:
			if a.Op == "*" && rv >= 0 && (len(ll) == 0 || rv <= int64(maxList/len(ll))) {
				out := make([]any, 0, int(rv)*len(ll))
				for range rv {
					out = append(out, ll...)
				}
				return out, nil
			}
		}
		return fail()
	}
	x, ok1 := l.(int64)
	y, ok2 := r.(int64)
	if !ok1 || !ok2 {
		return fail()
	}
	const lim = 1 << 62
	switch a.Op {
	case "+":
		if (y > 0 && x > lim-y) || (y < 0 && x < -lim-y) {
			return nil, fmt.Errorf("%s: integer overflow", a.Span.Start)
		}
		return x + y, nil
	case "-":
		if (y < 0 && x > lim+y) || (y > 0 && x < -lim+y) {
			return nil, fmt.Errorf("%s: integer overflow", a.Span.Start)
		}
		return x - y, nil
	case "*":
		if x != 0 && (y > lim/abs(x) || y < -lim/abs(x)) {
			return nil, fmt.Errorf("%s: integer overflow", a.Span.Start)
		}
		return x * y, nil
	case "//", "/", "%":
		if y == 0 {
			return nil, fmt.Errorf("%s: division by zero", a.Span.Start)
		}
		q, m := x/y, x%y
		if m != 0 && (m < 0) != (y < 0) { // Python floors
			q, m = q-1, m+y
		}
		switch a.Op {
		case "%":
			return m, nil
		case "/":
			if m != 0 {
				return nil, fmt.Errorf("%s: %d / %d is not a whole size (use //)", a.Span.Start, x, y)
			}
		}
		return q, nil
	case "<":
		return x < y, nil
	case "<=":
		return x <= y, nil
	case ">":
		return x > y, nil
	case ">=":
		return x >= y, nil
	}
	return fail()
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	}
	return true
}

// litValue converts an IR literal.
func litValue(v ir.Value) (any, error) {
	switch v.Kind {
	case ir.Null:
		return nil, nil
	case ir.Bool:
		return v.Bool, nil
	case ir.Int:
		return strconv.ParseInt(v.Text, 10, 64)
	case ir.Float:
		return strconv.ParseFloat(v.Text, 64)
	case ir.String:
		return v.Text, nil
	case ir.List:
		if len(v.Elems) > maxList {
			return nil, fmt.Errorf("list longer than %d", maxList)
		}
		out := make([]any, len(v.Elems))
		for i, x := range v.Elems {
			y, err := litValue(x)
			if err != nil {
				return nil, err
			}
			out[i] = y
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown literal")
}

// jsonValue converts an mca_config value.
func jsonValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, string:
		return x, nil
	case pyjson.Number:
		if n, ok := x.Int(); ok && !x.Float {
			return n, nil
		}
		f, _ := x.Float64()
		return f, nil
	case []any:
		if len(x) > maxList {
			return nil, fmt.Errorf("list longer than %d", maxList)
		}
		out := make([]any, len(x))
		for i, y := range x {
			z, err := jsonValue(y)
			if err != nil {
				return nil, err
			}
			out[i] = z
		}
		return out, nil
	}
	return v, nil
}
