package ir

import (
	"sort"
	"strconv"

	"github.com/rolltpl/rolltpl/lang/token"
)

// TensorExpr is one HF-side operand of an op built from primitive tensor
// steps (spec §7, composable tensor ops): a leaf reads the HF weight
// Op.HF[HF]; a step applies Step to its Operands. An operand yields one or
// more tensors (a split yields its parts); the parts of all operands, in
// order, are the op's HF inputs in the HF -> MCA direction. The MCA -> HF
// direction runs the inverse steps, derived by the compiler.
//
// The steps and their Args (every dim is an ExprLit int, possibly
// negative; every other argument an int expression over `mca`, or a list
// of them as an ExprList):
//
//	split     1 operand, "sizes" (list), "dim"; yields len(sizes) parts.
//	          Inverse: cat of the parts along dim.
//	chunk     1 operand, "parts" (ExprLit int), "dim"; yields parts equal
//	          parts (the size along dim must divide). Inverse: cat.
//	cat       1 or more operands (all their parts), "dim", and "sizes"
//	          (the parts' sizes along dim) when the compiler knows them;
//	          yields 1. Inverse: split by sizes; without sizes the step
//	          cannot be inverted.
//	reshape   1 operand, "shape" (list, at most one -1), and "from" (the
//	          input's shape, at most one -1) when known; yields 1.
//	          Inverse: reshape to from; without from it cannot be inverted.
//	transpose 1 operand, "dims" (a list of two dim literals); yields 1
//	          (contiguous). Inverse: the same transpose.
//	slice     1 operand, "start", "stop", "dim"; yields rows [start, stop)
//	          along dim. It drops data: it has no inverse.
//
// Every operand of a step but cat's yields exactly one tensor.
type TensorExpr struct {
	// HF is the index in Op.HF of the weight a leaf reads; -1 for a step.
	HF int
	// Step is the primitive of a step node: "split", "chunk", "cat",
	// "reshape", "transpose" or "slice".
	Step string
	// Operands are a step's tensor operands.
	Operands []*TensorExpr
	// Args are a step's size arguments by name ("dim", "sizes", "parts",
	// "shape", "from", "dims", "start", "stop"): expressions over
	// the MCA config, evaluated once per conversion.
	Args map[string]*Expr
	Span token.Span
}

// ArgNames returns the names of t's Args, sorted.
func (t *TensorExpr) ArgNames() []string {
	names := make([]string, 0, len(t.Args))
	for k := range t.Args {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Leaf reports whether t reads an HF weight.
func (t *TensorExpr) Leaf() bool { return t.Step == "" }

// Parts returns how many tensors t yields.
func (t *TensorExpr) Parts() int {
	switch t.Step {
	case "":
		return 1
	case "split":
		if s := t.Args["sizes"]; s != nil {
			return len(s.Args)
		}
	case "chunk":
		if n, ok := t.Args["parts"].IntLit(); ok {
			return n
		}
	default:
		return 1
	}
	return 0
}

// InputParts returns how many tensors the operands of ops together yield:
// the number of HF inputs the op's base kind receives.
func InputParts(in []*TensorExpr) int {
	n := 0
	for _, t := range in {
		n += t.Parts()
	}
	return n
}

// IntLit returns the value of an ExprLit int (or a negated one).
func (e *Expr) IntLit() (int, bool) {
	if e == nil {
		return 0, false
	}
	if e.Kind == ExprUnary && e.Op == "-" && len(e.Args) == 1 {
		n, ok := e.Args[0].IntLit()
		return -n, ok
	}
	if e.Kind != ExprLit || e.Lit.Kind != Int {
		return 0, false
	}
	n, err := strconv.Atoi(e.Lit.Text)
	return n, err == nil
}
