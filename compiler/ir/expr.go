package ir

import "github.com/rolltpl/rolltpl/lang/token"

// ExprKind is the kind of an [Expr] node.
type ExprKind uint8

// The expression node kinds.
const (
	// ExprLit is a literal: Lit holds the value.
	ExprLit ExprKind = iota
	// ExprRef is a predeclared name: Name is "hf", "mca", "layer" or a
	// build flag such as "megatron_llama".
	ExprRef
	// ExprField is Args[0].Name (e.g. hf.rope_scaling).
	ExprField
	// ExprIndex is Args[0][Args[1]].
	ExprIndex
	// ExprCall calls the predeclared function Name with Args.
	ExprCall
	// ExprUnary is Op Args[0], Op one of "!", "-".
	ExprUnary
	// ExprBinary is Args[0] Op Args[1], Op one of "||", "&&", "==", "!=",
	// "<", "<=", ">", ">=", "+", "-", "*", "/", "//", "%".
	ExprBinary
	// ExprCond is Python's `Args[0] if Args[1] else Args[2]`.
	ExprCond
	// ExprList is the list literal [Args...].
	ExprList
)

// Expr is a lowered expression over the HF config (`hf`), the MCA config
// (`mca`), the layer index (`layer`) and build flags: the one expression
// type every consumer of the IR (checker, runtime, language server, Python
// backend) evaluates or prints. It is pure data; its span points at the
// source text it was lowered from.
type Expr struct {
	Kind ExprKind
	// Op is the operator of ExprUnary and ExprBinary.
	Op string
	// Name is the name of ExprRef, ExprField and ExprCall.
	Name string
	// Lit is the value of ExprLit.
	Lit Value
	// Args are the operands, in source order.
	Args []*Expr
	Span token.Span
}

// String formats e as a fully parenthesized S-expression, for tests and
// debugging: (+ (. (ref hf) hidden_size) 1).
func (e *Expr) String() string {
	if e == nil {
		return "nil"
	}
	var head string
	switch e.Kind {
	case ExprLit:
		return e.Lit.Repr()
	case ExprRef:
		return e.Name
	case ExprField:
		head = ". " + e.Name
	case ExprIndex:
		head = "[]"
	case ExprCall:
		head = "call " + e.Name
	case ExprUnary, ExprBinary:
		head = e.Op
	case ExprCond:
		head = "if"
	case ExprList:
		head = "list"
	default:
		head = "?"
	}
	s := "(" + head
	for _, a := range e.Args {
		s += " " + a.String()
	}
	return s + ")"
}
