package lower

import (
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

// Expr lowers a syntax tree expression to the IR's one expression type:
// precedence levels become a tree of binary nodes (left-associative),
// `x.f` on hf/mca a config read, `f(args)` a call of a predeclared
// function, a negated number literal one literal. What cannot be lowered
// (a call of something that is not a function name) is an error
// diagnostic; names, functions and types are checked later by
// [ir.Expr.Check], where the schemas are known.
func Expr(e *ast.Expr) (*ir.Expr, diag.List) {
	var l exprLowerer
	out := l.expr(e)
	if len(l.diags) > 0 {
		return nil, l.diags
	}
	return out, nil
}

type exprLowerer struct {
	diags diag.List
}

func (l *exprLowerer) errorf(span token.Span, format string, args ...any) *ir.Expr {
	l.diags.Add(diag.Errorf(span, diag.TypeMismatch, "Not an expression", format, args...))
	return &ir.Expr{Kind: ir.ExprLit, Lit: ir.NullValue(), Span: span}
}

func bin(op string, a, b *ir.Expr, start, end token.Pos) *ir.Expr {
	return &ir.Expr{Kind: ir.ExprBinary, Op: op, Args: []*ir.Expr{a, b}, Span: token.Span{Start: start, End: end}}
}

func (l *exprLowerer) expr(e *ast.Expr) *ir.Expr {
	if e == nil || e.Value == nil {
		return l.errorf(token.Span{}, "missing expression")
	}
	v := l.or(e.Value)
	if e.Cond == nil {
		return v
	}
	c := l.or(e.Cond)
	var els *ir.Expr
	if e.Else != nil {
		els = l.expr(e.Else)
	} else {
		els = l.errorf(e.Span(), "`a if c` needs `else b`")
	}
	return &ir.Expr{Kind: ir.ExprCond, Args: []*ir.Expr{v, c, els}, Span: e.Span()}
}

func (l *exprLowerer) or(o *ast.OrExpr) *ir.Expr {
	x := l.and(o.Left)
	for _, r := range o.Right {
		x = bin("||", x, l.and(r), o.Pos, r.EndPos)
	}
	return x
}

func (l *exprLowerer) and(a *ast.AndExpr) *ir.Expr {
	x := l.cmp(a.Left)
	for _, r := range a.Right {
		x = bin("&&", x, l.cmp(r), a.Pos, r.EndPos)
	}
	return x
}

func (l *exprLowerer) cmp(c *ast.CmpExpr) *ir.Expr {
	x := l.add(c.Left)
	if c.Op == "" || c.Right == nil {
		return x
	}
	return bin(c.Op, x, l.add(c.Right), c.Pos, c.EndPos)
}

func (l *exprLowerer) add(a *ast.AddExpr) *ir.Expr {
	x := l.mul(a.Left)
	for _, r := range a.Rest {
		x = bin(r.Op, x, l.mul(r.Right), a.Pos, r.EndPos)
	}
	return x
}

func (l *exprLowerer) mul(m *ast.MulExpr) *ir.Expr {
	x := l.unary(m.Left)
	for _, r := range m.Rest {
		x = bin(r.Op, x, l.unary(r.Right), m.Pos, r.EndPos)
	}
	return x
}

func (l *exprLowerer) unary(u *ast.Unary) *ir.Expr {
	if u.Op == "" {
		if u.Value == nil {
			return l.errorf(u.Span(), "missing operand")
		}
		return l.postfix(u.Value)
	}
	if u.Operand == nil {
		return l.errorf(u.Span(), "missing operand of %s", u.Op)
	}
	x := l.unary(u.Operand)
	if u.Op == "-" && x.Kind == ir.ExprLit && (x.Lit.Kind == ir.Int || x.Lit.Kind == ir.Float) && x.Lit.Text != "" && x.Lit.Text[0] != '-' {
		lit := x.Lit
		lit.Text = "-" + lit.Text
		return &ir.Expr{Kind: ir.ExprLit, Lit: lit, Span: u.Span()}
	}
	return &ir.Expr{Kind: ir.ExprUnary, Op: u.Op, Args: []*ir.Expr{x}, Span: u.Span()}
}

func (l *exprLowerer) postfix(p *ast.Postfix) *ir.Expr {
	var x *ir.Expr
	ops := p.Ops
	if p.X.Ident != nil && len(ops) > 0 && ops[0].Call != nil {
		x = l.call(*p.X.Ident, ops[0].Call, token.Span{Start: p.Pos, End: ops[0].EndPos})
		ops = ops[1:]
	} else {
		x = l.primary(p.X)
	}
	for _, s := range ops {
		sp := token.Span{Start: p.Pos, End: s.EndPos}
		switch {
		case s.Index != nil:
			x = &ir.Expr{Kind: ir.ExprIndex, Args: []*ir.Expr{x, l.expr(s.Index)}, Span: sp}
		case s.Field != nil:
			x = &ir.Expr{Kind: ir.ExprField, Name: s.Field.Name, Args: []*ir.Expr{x}, Span: sp}
		case s.Call != nil:
			return l.errorf(s.Span(), "only the predeclared functions can be called (len, count, range, is_list, str, int, float, min, max)")
		}
	}
	return x
}

func (l *exprLowerer) call(name string, c *ast.CallArgs, sp token.Span) *ir.Expr {
	out := &ir.Expr{Kind: ir.ExprCall, Name: name, Span: sp}
	for _, a := range c.Args {
		out.Args = append(out.Args, l.expr(a))
	}
	for _, n := range c.Named {
		l.errorf(n.Span(), "%s takes no named argument %s: named arguments are for tensor steps (lang/spec.md §7)", name, n.Name.Name)
	}
	return out
}

func (l *exprLowerer) primary(p *ast.Primary) *ir.Expr {
	lit := func(v ir.Value) *ir.Expr { return &ir.Expr{Kind: ir.ExprLit, Lit: v, Span: p.Span()} }
	switch {
	case p.Int != nil:
		return lit(ir.Value{Kind: ir.Int, Text: *p.Int})
	case p.Float != nil:
		return lit(ir.Value{Kind: ir.Float, Text: *p.Float})
	case p.String != nil:
		return lit(ir.StringValue(*p.String))
	case p.Bool != nil:
		return lit(ir.BoolValue(*p.Bool == "true"))
	case p.Null:
		return lit(ir.NullValue())
	case p.List != nil:
		out := &ir.Expr{Kind: ir.ExprList, Span: p.Span()}
		for _, el := range p.List.Elems {
			out.Args = append(out.Args, l.expr(el))
		}
		return out
	case p.Paren != nil:
		return l.expr(p.Paren)
	case p.Ident != nil:
		return &ir.Expr{Kind: ir.ExprRef, Name: *p.Ident, Span: p.Span()}
	}
	return l.errorf(p.Span(), "empty expression")
}
