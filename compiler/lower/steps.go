package lower

// Composable tensor ops (spec §7): an op's HF operands may be calls of
// primitive tensor steps over weight names,
//
//	qkv split(".self_attn.qkv_proj.weight", [q, kv, kv], dim = 0) -> ".self_attention.linear_qkv.weight"
//
// lowered into ir.Op.Inputs (one ir.TensorExpr per operand; leaves index
// ir.Op.HF, which lists the weight names in order). Lowering binds the
// arguments, lowers the size expressions and fills in what the MCA -> HF
// direction needs when the operands tell it: the sizes a cat splits back
// into and the shape a reshape returns to. Whether every step can then be
// inverted is the checker's question (compiler/check, not-invertible).

import (
	"fmt"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

// stepSig is the signature of a tensor step: its leading tensor operands
// (-1: every positional argument is one, as for cat) and its other
// parameters, positional in this order or named.
type stepSig struct {
	tensors  int
	params   []string
	required []string
	usage    string
}

// stepSigs are the tensor steps by name.
var stepSigs = map[string]stepSig{
	"split":     {1, []string{"sizes", "dim"}, []string{"sizes"}, "split(X, [SIZE, ...], dim = 0)"},
	"chunk":     {1, []string{"parts", "dim"}, []string{"parts"}, "chunk(X, PARTS, dim = 0)"},
	"cat":       {-1, []string{"dim", "sizes"}, nil, "cat(X, Y, ..., dim = 0, sizes = [SIZE, ...])"},
	"reshape":   {1, []string{"shape", "from"}, []string{"shape"}, "reshape(X, [SIZE, ...], from = [SIZE, ...])"},
	"transpose": {1, []string{"dim0", "dim1"}, []string{"dim0", "dim1"}, "transpose(X, DIM0, DIM1)"},
	"slice":     {1, []string{"start", "stop", "dim"}, []string{"start", "stop"}, "slice(X, START, STOP, dim = 0)"},
}

// StepNames returns the tensor step names, sorted.
func StepNames() []string { return keys(stepSigs) }

// paramKind says what a step parameter takes.
func paramKind(name string) string {
	switch name {
	case "dim", "dim0", "dim1":
		return "dim"
	case "parts":
		return "count"
	case "sizes", "shape", "from":
		return "list"
	}
	return "size"
}

// stepCall returns the step name, its span and the arguments when e is a
// call `NAME(...)` and nothing else.
func stepCall(e *ast.Expr) (string, token.Span, *ast.CallArgs, bool) {
	pf := postfixOf(e)
	if pf == nil || pf.X.Ident == nil || len(pf.Ops) != 1 || pf.Ops[0].Call == nil {
		return "", token.Span{}, nil, false
	}
	return *pf.X.Ident, pf.X.Span(), pf.Ops[0].Call, true
}

// postfixOf returns the postfix expression e is made of, or nil.
func postfixOf(e *ast.Expr) *ast.Postfix {
	if e == nil || e.Cond != nil || e.Value == nil || len(e.Value.Right) > 0 {
		return nil
	}
	a := e.Value.Left
	if len(a.Right) > 0 || a.Left.Op != "" {
		return nil
	}
	m := a.Left.Left
	if len(m.Rest) > 0 || len(m.Left.Rest) > 0 {
		return nil
	}
	return m.Left.Left.Value
}

// hasSteps reports whether some HF operand of o is a step call.
func hasSteps(o *ast.Op) bool {
	for _, e := range o.HF {
		if _, _, _, ok := stepCall(e); ok {
			return true
		}
	}
	return false
}

// stepOperands lowers the HF operands of o into out.Inputs and out.HF and
// returns the number of tensors they yield (the op's HF arity), or -1
// after reporting an error.
func (l *lowerer) stepOperands(o *ast.Op, out *ir.Op) (int, bool) {
	ok := true
	for _, e := range o.HF {
		t, good := l.tensorExpr(e, out)
		ok = ok && good
		if good {
			inferShape(t)
			out.Inputs = append(out.Inputs, t)
		}
	}
	if !ok {
		return -1, false
	}
	return ir.InputParts(out.Inputs), true
}

// tensorExpr lowers one operand: a weight name (a leaf) or a step call.
func (l *lowerer) tensorExpr(e *ast.Expr, out *ir.Op) (*ir.TensorExpr, bool) {
	name, nameSpan, call, isCall := stepCall(e)
	if !isCall {
		n, ok := l.name(e)
		if !ok {
			return nil, false
		}
		out.HF = append(out.HF, n)
		return &ir.TensorExpr{HF: len(out.HF) - 1, Span: e.Span()}, true
	}
	sig, known := stepSigs[name]
	if !known {
		l.unknown(&ast.Ident{Range: ast.Range{Pos: nameSpan.Start, EndPos: nameSpan.End}, Name: name},
			diag.UnknownStep, "tensor step", "Unknown tensor step", StepNames())
		return nil, false
	}
	t := &ir.TensorExpr{HF: -1, Step: name, Args: map[string]*ir.Expr{}, Span: e.Span()}
	ok := true
	bound := map[string]token.Span{}
	bind := func(param string, val *ast.Expr, at token.Span) {
		if prev, dup := bound[param]; dup {
			l.errorf(at, diag.StepArg, "Step argument given twice", "%s of %s is already given at %s.", param, name, prev.Start)
			ok = false
			return
		}
		bound[param] = at
		v, good := l.stepArg(name, param, val)
		if !good {
			ok = false
			return
		}
		t.Args[param] = v
	}
	pos := call.Args
	nt := sig.tensors
	if nt < 0 {
		nt = len(pos)
	}
	if len(pos) < nt || nt == 0 {
		l.errorf(e.Span(), diag.StepArg, "Missing tensor operand", "%s takes a tensor first: %s.", name, sig.usage)
		return nil, false
	}
	for _, a := range pos[:nt] {
		x, good := l.tensorExpr(a, out)
		if !good {
			ok = false
			continue
		}
		if name != "cat" && x.Parts() != 1 {
			l.errorf(a.Span(), diag.StepArg, "Operand yields several tensors",
				"%s takes one tensor; this operand yields %d. Join them first with cat(...).", name, x.Parts())
			ok = false
		}
		t.Operands = append(t.Operands, x)
	}
	rest := pos[nt:]
	if len(rest) > len(sig.params) || (sig.tensors < 0 && len(rest) > 0) {
		l.errorf(rest[0].Span(), diag.StepArg, "Too many arguments", "%s takes %s.", name, sig.usage)
		return nil, false
	}
	for i, a := range rest {
		bind(sig.params[i], a, a.Span())
	}
	for _, na := range call.Named {
		if !contains(sig.params, na.Name.Name) {
			l.unknown(na.Name, diag.StepArg, "argument of "+name, "Unknown step argument", sig.params)
			ok = false
			continue
		}
		bind(na.Name.Name, na.Value, na.Span())
	}
	for _, r := range sig.required {
		if _, set := bound[r]; !set {
			l.errorf(e.Span(), diag.StepArg, "Missing step argument", "%s needs %s: %s.", name, r, sig.usage)
			ok = false
		}
	}
	if !ok {
		return nil, false
	}
	if _, set := t.Args["dim"]; !set && contains(sig.params, "dim") {
		t.Args["dim"] = intLit(0, e.Span())
	}
	if name == "transpose" {
		t.Args["dims"] = &ir.Expr{Kind: ir.ExprList, Args: []*ir.Expr{t.Args["dim0"], t.Args["dim1"]}, Span: e.Span()}
		delete(t.Args, "dim0")
		delete(t.Args, "dim1")
	}
	return t, true
}

// stepArg lowers one size argument of a step.
func (l *lowerer) stepArg(step, param string, e *ast.Expr) (*ir.Expr, bool) {
	switch paramKind(param) {
	case "dim", "count":
		v, ok := literal(e)
		n, isInt := (&ir.Expr{Kind: ir.ExprLit, Lit: v}).IntLit()
		if !ok || !isInt || (paramKind(param) == "count" && n < 1) {
			what := "an integer literal (a dimension index, may be negative)"
			if paramKind(param) == "count" {
				what = "a positive integer literal (the number of parts is part of the op's arity)"
			}
			l.errorf(e.Span(), diag.StepArg, "Constant expected", "%s of %s must be %s.", param, step, what)
			return nil, false
		}
		return intLit(n, e.Span()), true
	case "list":
		p := primaryExpr(e)
		if p == nil || p.List == nil {
			l.errorf(e.Span(), diag.StepArg, "List expected",
				"%s of %s is a list literal of sizes, e.g. [mca.num_attention_heads * mca.kv_channels, ...]: its length must be known when compiling.", param, step)
			return nil, false
		}
		out := &ir.Expr{Kind: ir.ExprList, Span: e.Span()}
		ok := true
		for _, el := range p.List.Elems {
			x, good := l.sizeExpr(el)
			ok = ok && good
			out.Args = append(out.Args, x)
		}
		if len(out.Args) == 0 {
			l.errorf(e.Span(), diag.StepArg, "Empty list", "%s of %s needs at least one size.", param, step)
			return nil, false
		}
		return out, ok
	}
	return l.sizeExpr(e)
}

// primaryExpr returns the primary e is, unparenthesized, or nil.
func primaryExpr(e *ast.Expr) *ast.Primary {
	p := e.Primary()
	for p != nil && p.Paren != nil {
		p = p.Paren.Primary()
	}
	return p
}

func intLit(n int, span token.Span) *ir.Expr {
	if n < 0 {
		return &ir.Expr{Kind: ir.ExprUnary, Op: "-", Args: []*ir.Expr{intLit(-n, span)}, Span: span}
	}
	return &ir.Expr{Kind: ir.ExprLit, Lit: ir.Value{Kind: ir.Int, Text: fmt.Sprint(n)}, Span: span}
}

// sizeExpr lowers a size: an integer expression (lower.Expr) over the
// MCA config, the only config ROLL's ConverOps see. Its type is checked
// against the MCA schema by the checker.
func (l *lowerer) sizeExpr(e *ast.Expr) (*ir.Expr, bool) {
	x, diags := Expr(e)
	if len(diags) > 0 {
		l.diags = append(l.diags, diags...)
		return nil, false
	}
	ok := true
	var walk func(x *ir.Expr)
	walk = func(x *ir.Expr) {
		switch {
		case x.Kind == ir.ExprRef && x.Name != "mca":
			l.sizeError(x.Span, fmt.Sprintf("ROLL's ConverOps see only the MCA config, not %s: map the HF key to an MCA key in the config section and use mca.KEY", x.Name))
			ok = false
		case x.Kind == ir.ExprBinary && x.Op == "/":
			l.sizeError(x.Span, "`/` divides to a float in Python: use `//`")
			ok = false
		}
		for _, a := range x.Args {
			walk(a)
		}
	}
	walk(x)
	return x, ok
}

func (l *lowerer) sizeError(span token.Span, what string) {
	l.errorf(span, diag.StepArg, "Not a size expression",
		"A step size is an integer expression over the MCA config (mca.KEY); %s.", what)
}

// shape is what lowering knows of a tensor's shape: with rank >= 0 the
// sizes of dims 0..rank-1; with rank < 0 (a weight read from the
// checkpoint) only sizes along dims as written (possibly negative). A nil
// size is unknown.
type shape struct {
	rank int
	dims map[int]*ir.Expr
}

func (s shape) size(dim int) *ir.Expr {
	if s.rank >= 0 && dim < 0 {
		dim += s.rank
	}
	return s.dims[dim]
}

func (s shape) with(dim int, size *ir.Expr) shape {
	out := shape{rank: s.rank, dims: map[int]*ir.Expr{}}
	for k, v := range s.dims {
		out.dims[k] = v
	}
	if s.rank >= 0 && dim < 0 {
		dim += s.rank
	}
	out.dims[dim] = size
	return out
}

// list returns the shape as a list expression with -1 for at most one
// unknown size, or nil when it has more unknowns or an unknown rank.
func (s shape) list(span token.Span) *ir.Expr {
	if s.rank < 0 {
		return nil
	}
	out := &ir.Expr{Kind: ir.ExprList, Span: span}
	unknown := 0
	for d := 0; d < s.rank; d++ {
		v := s.dims[d]
		if v == nil {
			unknown++
			v = intLit(-1, span)
		}
		out.Args = append(out.Args, v)
	}
	if unknown > 1 {
		return nil
	}
	return out
}

// inferShape fills in the inverse arguments t's steps can take from their
// operands (cat's sizes, reshape's from) and returns the shapes of the
// tensors t yields.
func inferShape(t *ir.TensorExpr) []shape {
	if t.Leaf() {
		return []shape{{rank: -1, dims: map[int]*ir.Expr{}}}
	}
	var in []shape
	for _, o := range t.Operands {
		in = append(in, inferShape(o)...)
	}
	dim, _ := t.Args["dim"].IntLit()
	switch t.Step {
	case "split":
		var out []shape
		for _, s := range t.Args["sizes"].Args {
			out = append(out, in[0].with(dim, s))
		}
		return out
	case "chunk":
		n, _ := t.Args["parts"].IntLit()
		var part *ir.Expr
		if s := in[0].size(dim); s != nil {
			part = binary("//", s, t.Args["parts"])
		}
		out := make([]shape, n)
		for i := range out {
			out[i] = in[0].with(dim, part)
		}
		return out
	case "cat":
		var sizes []*ir.Expr
		for _, s := range in {
			sizes = append(sizes, s.size(dim))
		}
		if _, given := t.Args["sizes"]; !given && !containsNil(sizes) {
			t.Args["sizes"] = &ir.Expr{Kind: ir.ExprList, Args: sizes, Span: t.Span}
		}
		var total *ir.Expr
		if given := t.Args["sizes"]; given != nil {
			for _, s := range given.Args {
				if total == nil {
					total = s
				} else {
					total = binary("+", total, s)
				}
			}
		}
		return []shape{in[0].with(dim, total)}
	case "reshape":
		if _, given := t.Args["from"]; !given {
			if from := in[0].list(t.Span); from != nil {
				t.Args["from"] = from
			}
		}
		out := shape{rank: len(t.Args["shape"].Args), dims: map[int]*ir.Expr{}}
		for i, s := range t.Args["shape"].Args {
			if n, ok := s.IntLit(); ok && n < 0 {
				continue
			}
			out.dims[i] = s
		}
		return []shape{out}
	case "transpose":
		a, _ := t.Args["dims"].Args[0].IntLit()
		b, _ := t.Args["dims"].Args[1].IntLit()
		sa, sb := in[0].size(a), in[0].size(b)
		return []shape{in[0].with(a, sb).with(b, sa)}
	case "slice":
		return []shape{in[0].with(dim, binary("-", t.Args["stop"], t.Args["start"]))}
	}
	return in
}

func binary(op string, a, b *ir.Expr) *ir.Expr {
	return &ir.Expr{Kind: ir.ExprBinary, Op: op, Args: []*ir.Expr{a, b}, Span: a.Span}
}

func containsNil(xs []*ir.Expr) bool {
	for _, x := range xs {
		if x == nil {
			return true
		}
	}
	return len(xs) == 0
}
