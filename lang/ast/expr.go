package ast

// Expr is an expression: a name, a config value, a condition. The grammar
// has Python's conditional form `a if cond else b` at the top, then the
// usual precedence levels: ||, &&, comparisons, + -, * / // %, unary ! -,
// then postfix indexing, field access and calls.
type Expr struct {
	Range
	Value *OrExpr `parser:"@@"`
	Cond  *OrExpr `parser:"( \"if\" @@"`
	Else  *Expr   `parser:"\"else\" @@ )?"`
}

// OrExpr is `a || b || ...`.
type OrExpr struct {
	Range
	Left  *AndExpr   `parser:"@@"`
	Right []*AndExpr `parser:"( \"||\" @@ )*"`
}

// AndExpr is `a && b && ...`.
type AndExpr struct {
	Range
	Left  *CmpExpr   `parser:"@@"`
	Right []*CmpExpr `parser:"( \"&&\" @@ )*"`
}

// CmpExpr is `a` or `a op b` with a comparison operator.
type CmpExpr struct {
	Range
	Left  *AddExpr `parser:"@@"`
	Op    string   `parser:"( @( \"==\" | \"!=\" | \"<=\" | \">=\" | \"<\" | \">\" )"`
	Right *AddExpr `parser:"@@ )?"`
}

// AddExpr is `a + b - c ...`.
type AddExpr struct {
	Range
	Left *MulExpr   `parser:"@@"`
	Rest []*AddTerm `parser:"@@*"`
}

// AddTerm is one `+ b` or `- b`.
type AddTerm struct {
	Range
	Op    string   `parser:"@( \"+\" | \"-\" )"`
	Right *MulExpr `parser:"@@"`
}

// MulExpr is `a * b / c // d % e ...`.
type MulExpr struct {
	Range
	Left *Unary     `parser:"@@"`
	Rest []*MulTerm `parser:"@@*"`
}

// MulTerm is one `* b`, `/ b`, `// b` or `% b`.
type MulTerm struct {
	Range
	Op    string `parser:"@( \"*\" | \"//\" | \"/\" | \"%\" )"`
	Right *Unary `parser:"@@"`
}

// Unary is `!x`, `-x` or a postfix expression.
type Unary struct {
	Range
	Op      string   `parser:"( @( \"!\" | \"-\" )"`
	Operand *Unary   `parser:"@@ )"`
	Value   *Postfix `parser:"| @@"`
}

// Postfix is a primary followed by `[index]`, `.field` or `(args)`.
type Postfix struct {
	Range
	X   *Primary  `parser:"@@"`
	Ops []*Suffix `parser:"@@*"`
}

// Suffix is one postfix operation; exactly one field is set.
type Suffix struct {
	Range
	Index *Expr     `parser:"\"[\" @@ \"]\""`
	Field *Ident    `parser:"| \".\" @@"`
	Call  *CallArgs `parser:"| @@"`
}

// CallArgs is the argument list of a call `(a, b, name = c)`: positional
// arguments, then named ones (as in Python, a positional argument after a
// named one is a syntax error).
type CallArgs struct {
	Range
	Args  []*Expr     `parser:"\"(\" ( ( (?! Ident \"=\" ) @@ ( \",\" (?! Ident \"=\" ) @@ )*"`
	Named []*NamedArg `parser:"    ( \",\" @@ )* | @@ ( \",\" @@ )* ) \",\"? )? \")\""`
}

// NamedArg is one named call argument `name = value`.
type NamedArg struct {
	Range
	Name  *Ident `parser:"@@ \"=\""`
	Value *Expr  `parser:"@@"`
}

// Primary is a literal, a name, a list, or a parenthesized expression.
type Primary struct {
	Range
	Float  *string  `parser:"@Float"`
	Int    *string  `parser:"| @Int"`
	String *string  `parser:"| @String"`
	Bool   *string  `parser:"| @( \"true\" | \"false\" )"`
	Null   bool     `parser:"| @\"null\""`
	List   *ListLit `parser:"| @@"`
	Paren  *Expr    `parser:"| \"(\" @@ \")\""`
	Ident  *string  `parser:"| @Ident"`
}

// ListLit is `[a, b, ...]`.
type ListLit struct {
	Range
	Elems []*Expr `parser:"\"[\" ( @@ ( \",\" @@ )* \",\"? )? \"]\""`
}

// StringLit returns the value of e if e is a bare string literal.
func (e *Expr) StringLit() (string, bool) {
	p := e.Primary()
	if p == nil || p.String == nil {
		return "", false
	}
	return *p.String, true
}

// Primary returns the primary of e when e is nothing but a primary.
func (e *Expr) Primary() *Primary {
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
	u := m.Left.Left
	if u.Value == nil || len(u.Value.Ops) > 0 {
		return nil
	}
	return u.Value.X
}

// Ident returns the name if e is a bare identifier.
func (e *Expr) Ident() (string, bool) {
	p := e.Primary()
	if p == nil || p.Ident == nil {
		return "", false
	}
	return *p.Ident, true
}
