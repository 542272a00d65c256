package ir

import "strings"

// PyNames are the Python expressions [Expr.Python] prints the predeclared
// names as.
type PyNames struct {
	// HF and MCA are the config objects, e.g. "hf_config", "mca_config".
	HF, MCA string
	// Layer is the layer index, e.g. "layer_idx".
	Layer string
	// Flag returns the Python for a build flag; nil prints the name
	// followed by "()" (megatron_llama -> is_megatron_llama()).
	Flag func(name string) string
}

// DefaultPyNames are the names the generated templates use: ROLL's
// hf_config and mca_config objects, the layer index `layer_idx` and
// is_<flag>() for build flags.
var DefaultPyNames = PyNames{HF: "hf_config", MCA: "mca_config", Layer: "layer_idx"}

// PythonPrelude defines the helpers the printed expressions call; the
// generated module includes it once. _rt_field reads a field of a nested
// config (an object or a dict) with None for a missing key, as [Expr.Eval]
// does.
const PythonPrelude = `def _rt_field(obj, key):
    if isinstance(obj, dict):
        return obj.get(key)
    if isinstance(obj, (bool, int, float, str, list)):
        raise TypeError("%s has no fields (.%s)" % (type(obj).__name__, key))
    return getattr(obj, key, None)
`

// Python precedence levels, lowest first.
const (
	pyCond = iota + 1
	pyOr
	pyAnd
	pyNot
	pyCmp
	pyAdd
	pyMul
	pyNeg
	pyAtom
)

var pyBinary = map[string]struct {
	text string
	prec int
}{
	"||": {"or", pyOr}, "&&": {"and", pyAnd},
	"==": {"==", pyCmp}, "!=": {"!=", pyCmp}, "<": {"<", pyCmp}, "<=": {"<=", pyCmp}, ">": {">", pyCmp}, ">=": {">=", pyCmp},
	"+": {"+", pyAdd}, "-": {"-", pyAdd},
	"*": {"*", pyMul}, "/": {"/", pyMul}, "//": {"//", pyMul}, "%": {"%", pyMul},
}

// Python prints e as a Python expression over ROLL's objects with the same
// value as [Expr.Eval] (for expressions the checker accepts): `||` and
// `&&` are `or` and `and`, `!` is `not`, a missing HF or MCA key reads
// None (getattr with a default), `count(l, v)` is `l.count(v)`,
// `range(...)` a list, `is_list(x)` an isinstance test. Parentheses are
// added exactly where Python's precedence differs from the tree (Python's
// `not` binds looser than comparisons and its comparisons chain).
func (e *Expr) Python(n PyNames) string {
	s, _ := e.py(n)
	return s
}

func (e *Expr) py(n PyNames) (string, int) {
	if e == nil {
		return "None", pyAtom
	}
	at := func(i, min int) string {
		if i >= len(e.Args) {
			return "None"
		}
		s, p := e.Args[i].py(n)
		if p < min {
			return "(" + s + ")"
		}
		return s
	}
	switch e.Kind {
	case ExprLit:
		s := e.Lit.Python()
		if (e.Lit.Kind == Int || e.Lit.Kind == Float) && strings.HasPrefix(s, "-") {
			return s, pyNeg
		}
		return s, pyAtom
	case ExprRef:
		switch e.Name {
		case "hf":
			return n.HF, pyAtom
		case "mca":
			return n.MCA, pyAtom
		case "layer":
			return n.Layer, pyAtom
		}
		if n.Flag != nil {
			return n.Flag(e.Name), pyAtom
		}
		return "is_" + e.Name + "()", pyAtom
	case ExprField:
		if len(e.Args) == 1 && e.Args[0].Kind == ExprRef && (e.Args[0].Name == "hf" || e.Args[0].Name == "mca") {
			return "getattr(" + at(0, pyCond) + ", " + pyStringRepr(e.Name) + ", None)", pyAtom
		}
		return "_rt_field(" + at(0, pyCond) + ", " + pyStringRepr(e.Name) + ")", pyAtom
	case ExprIndex:
		return at(0, pyAtom) + "[" + at(1, pyCond) + "]", pyAtom
	case ExprUnary:
		if e.Op == "!" {
			return "not " + at(0, pyNot), pyNot
		}
		s := at(0, pyNeg)
		if strings.HasPrefix(s, "-") {
			s = " " + s
		}
		return "-" + s, pyNeg
	case ExprBinary:
		b := pyBinary[e.Op]
		right := b.prec + 1
		left := b.prec
		if b.prec == pyCmp {
			left = pyCmp + 1
		}
		return at(0, left) + " " + b.text + " " + at(1, right), b.prec
	case ExprCond:
		return at(0, pyOr) + " if " + at(1, pyOr) + " else " + at(2, pyCond), pyCond
	case ExprList:
		parts := make([]string, len(e.Args))
		for i := range e.Args {
			parts[i] = at(i, pyCond)
		}
		return "[" + strings.Join(parts, ", ") + "]", pyAtom
	case ExprCall:
		parts := make([]string, len(e.Args))
		for i := range e.Args {
			parts[i] = at(i, pyCond)
		}
		switch e.Name {
		case "count":
			if len(e.Args) == 2 {
				return at(0, pyAtom) + ".count(" + parts[1] + ")", pyAtom
			}
		case "range":
			return "list(range(" + strings.Join(parts, ", ") + "))", pyAtom
		case "is_list":
			return "isinstance(" + strings.Join(parts, ", ") + ", list)", pyAtom
		}
		return e.Name + "(" + strings.Join(parts, ", ") + ")", pyAtom
	}
	return "None", pyAtom
}

// Python formats v as a Python literal (repr, with a float's text kept as
// written: 1e-06 stays a valid Python float literal).
func (v Value) Python() string {
	switch v.Kind {
	case Float:
		switch f := v.Float64(); {
		case f != f:
			return `float("nan")`
		case f > 1.7976931348623157e308:
			return `float("inf")`
		case f < -1.7976931348623157e308:
			return `float("-inf")`
		}
		return v.Text
	case List:
		parts := make([]string, len(v.Elems))
		for i, x := range v.Elems {
			parts[i] = x.Python()
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case Dict:
		parts := make([]string, len(v.Elems))
		for i, x := range v.Elems {
			parts[i] = pyStringRepr(v.Keys[i]) + ": " + x.Python()
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return v.Repr()
}
