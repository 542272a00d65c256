package ir

import "github.com/rolltpl/rolltpl/lang/token"

// TensorExpr is one HF-side operand of an op built from primitive tensor
// steps (spec §7, composable tensor ops): a leaf reads the HF weight
// Op.HF[HF]; a step applies Step to its Operands. An operand yields one or
// more tensors (a split yields its parts); the parts of all operands, in
// order, are the op's HF inputs in the HF -> MCA direction. The MCA -> HF
// direction runs the inverse steps, derived by the compiler.
type TensorExpr struct {
	// HF is the index in Op.HF of the weight a leaf reads; -1 for a step.
	HF int
	// Step is the primitive of a step node: "split", "chunk", "cat",
	// "reshape", "transpose" or "slice".
	Step string
	// Operands are a step's tensor operands.
	Operands []*TensorExpr
	// Args are a step's size arguments by name ("dim", "sizes", "parts",
	// "shape", "dims", "start", "stop", ...): expressions over the MCA
	// config, evaluated once per conversion.
	Args map[string]*Expr
	Span token.Span
}
