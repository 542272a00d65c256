package ir

import (
	"fmt"
	"math"
	"math/bits"
	"strings"

	"github.com/rolltpl/rolltpl/lang/token"
)

// Env is what an expression reads: the HF config, the MCA config, the
// layer index and the build flags.
type Env interface {
	// HF returns the HF config's top-level key; false when absent (the
	// expression then sees null).
	HF(key string) (Value, bool)
	// MCA returns the MCA config's key; false when absent (null).
	MCA(key string) (Value, bool)
	// Layer returns the global layer index; false when no layer is bound
	// (outside per-layer names).
	Layer() (int64, bool)
	// Flag returns a build flag's value; false when the flag is unknown.
	Flag(name string) (bool, bool)
}

// MapEnv is an [Env] over plain maps, for callers that hold the configs
// as values (tests, the checker's enumeration of conditions).
type MapEnv struct {
	HFConfig, MCAConfig map[string]Value
	// LayerIndex is the bound layer when HasLayer is set.
	LayerIndex int64
	HasLayer   bool
	Flags      map[string]bool
}

// HF implements [Env].
func (m MapEnv) HF(key string) (Value, bool) { v, ok := m.HFConfig[key]; return v, ok }

// MCA implements [Env].
func (m MapEnv) MCA(key string) (Value, bool) { v, ok := m.MCAConfig[key]; return v, ok }

// Layer implements [Env].
func (m MapEnv) Layer() (int64, bool) { return m.LayerIndex, m.HasLayer }

// Flag implements [Env].
func (m MapEnv) Flag(name string) (bool, bool) { v, ok := m.Flags[name]; return v, ok }

// MaxElems (= [MaxCount], the bound on layer and expert counts, so that
// any per-layer list fits) bounds the values an expression builds (repetition,
// concatenation, list literals, range): a result whose [Weight] is larger
// is an error, not an allocation. Weights count nested elements, so a list
// repeating a large list cannot stand for more than MaxElems elements
// either (its repr, comparison and count stay bounded).
const MaxElems = MaxCount

// Weight returns the size of v for the bounds: 1 per value, plus the
// bytes of a string and the weights of a list's or dict's elements. It
// stops counting past limit.
func Weight(v Value, limit int) int {
	w := 1
	if v.Kind == String {
		w += len(v.Text)
	}
	for _, e := range v.Elems {
		if w > limit {
			return w
		}
		w += Weight(e, limit-w)
	}
	return w
}

// EvalError is an expression that cannot be evaluated: a type error, a
// division by zero, an int overflow, an index out of range, a result
// larger than [MaxElems]. Span is the part of the expression at fault.
type EvalError struct {
	Span token.Span
	Msg  string
}

func (e *EvalError) Error() string {
	if e.Span.Start.Filename != "" || e.Span.Start.Line > 0 {
		return fmt.Sprintf("%s: %s", e.Span.Start, e.Msg)
	}
	return e.Msg
}

func errAt(e *Expr, format string, args ...any) *EvalError {
	return &EvalError{Span: e.Span, Msg: fmt.Sprintf(format, args...)}
}

// maxEvalDepth bounds the recursion of Eval on a hostile IR (the parser
// already bounds nesting; this guards IR built elsewhere).
const maxEvalDepth = 1000

// Eval evaluates e in env with Python's semantics (lang/spec.md §9): it
// never panics; every failure is an *EvalError with the span of the
// offending sub-expression.
func (e *Expr) Eval(env Env) (Value, error) {
	v, err := e.eval(env, 0)
	if err != nil {
		return Value{}, err
	}
	return v, nil
}

func (e *Expr) eval(env Env, depth int) (Value, *EvalError) {
	if e == nil {
		return Value{}, &EvalError{Msg: "missing expression"}
	}
	if depth > maxEvalDepth {
		return Value{}, errAt(e, "expression nested too deeply")
	}
	depth++
	arg := func(i int) (Value, *EvalError) {
		if i >= len(e.Args) {
			return Value{}, errAt(e, "missing operand")
		}
		return e.Args[i].eval(env, depth)
	}
	switch e.Kind {
	case ExprLit:
		return e.Lit, nil
	case ExprRef:
		switch e.Name {
		case "hf", "mca":
			return Value{}, errAt(e, "%s is the %s config; write %s.KEY", e.Name, strings.ToUpper(e.Name), e.Name)
		case "layer":
			l, ok := env.Layer()
			if !ok {
				return Value{}, errAt(e, "layer is only bound in per-layer weight names")
			}
			return IntValue(l), nil
		}
		b, ok := env.Flag(e.Name)
		if !ok {
			return Value{}, errAt(e, "unknown name %s", e.Name)
		}
		return BoolValue(b), nil
	case ExprField:
		if len(e.Args) == 1 && e.Args[0].Kind == ExprRef && (e.Args[0].Name == "hf" || e.Args[0].Name == "mca") {
			get := env.HF
			if e.Args[0].Name == "mca" {
				get = env.MCA
			}
			if v, ok := get(e.Name); ok {
				return v, nil
			}
			return NullValue(), nil
		}
		x, err := arg(0)
		if err != nil {
			return Value{}, err
		}
		switch x.Kind {
		case Null:
			return NullValue(), nil
		case Dict:
			if v, ok := x.Field(e.Name); ok {
				return v, nil
			}
			return NullValue(), nil
		}
		return Value{}, errAt(e, "%s has no fields (.%s)", x.Kind.KindName(), e.Name)
	case ExprIndex:
		x, err := arg(0)
		if err != nil {
			return Value{}, err
		}
		i, err := arg(1)
		if err != nil {
			return Value{}, err
		}
		return index(e, x, i)
	case ExprUnary:
		x, err := arg(0)
		if err != nil {
			return Value{}, err
		}
		switch e.Op {
		case "!":
			return BoolValue(!x.Truthy()), nil
		case "-":
			switch x.Kind {
			case Int:
				i, ok := x.Int64()
				if !ok || i == math.MinInt64 {
					return Value{}, errAt(e, "integer overflow")
				}
				return IntValue(-i), nil
			case Float:
				return FloatValue(-x.Float64()), nil
			}
			return Value{}, errAt(e, "cannot negate %s", x.Kind.KindName())
		}
		return Value{}, errAt(e, "unknown operator %s", e.Op)
	case ExprBinary:
		a, err := arg(0)
		if err != nil {
			return Value{}, err
		}
		switch e.Op {
		case "||":
			if a.Truthy() {
				return a, nil
			}
			return arg(1)
		case "&&":
			if !a.Truthy() {
				return a, nil
			}
			return arg(1)
		}
		b, err := arg(1)
		if err != nil {
			return Value{}, err
		}
		return binary(e, e.Op, a, b)
	case ExprCond:
		c, err := arg(1)
		if err != nil {
			return Value{}, err
		}
		if c.Truthy() {
			return arg(0)
		}
		return arg(2)
	case ExprList:
		out := make([]Value, 0, len(e.Args))
		w := 1
		for i := range e.Args {
			v, err := arg(i)
			if err != nil {
				return Value{}, err
			}
			if w += Weight(v, MaxElems); w > MaxElems {
				return Value{}, errAt(e, "list of more than %d elements in all", MaxElems)
			}
			out = append(out, v)
		}
		return ListValue(out...), nil
	case ExprCall:
		args := make([]Value, 0, len(e.Args))
		for i := range e.Args {
			v, err := arg(i)
			if err != nil {
				return Value{}, err
			}
			args = append(args, v)
		}
		return call(e, args)
	}
	return Value{}, errAt(e, "unknown expression kind %d", e.Kind)
}

// isNum reports whether v is an int or float (Python's bool is an int too,
// but the language keeps bools out of arithmetic).
func isNum(v Value) bool { return v.Kind == Int || v.Kind == Float }

func index(e *Expr, x, i Value) (Value, *EvalError) {
	switch x.Kind {
	case List, String:
		n, ok := i.Int64()
		if !ok {
			return Value{}, errAt(e, "%s index must be int, got %s", x.Kind.KindName(), i.Kind.KindName())
		}
		if x.Kind == String {
			rs := []rune(x.Text)
			if n < 0 {
				n += int64(len(rs))
			}
			if n < 0 || n >= int64(len(rs)) {
				return Value{}, errAt(e, "string index %s out of range (length %d)", i.Text, len(rs))
			}
			return StringValue(string(rs[n])), nil
		}
		if n < 0 {
			n += int64(len(x.Elems))
		}
		if n < 0 || n >= int64(len(x.Elems)) {
			return Value{}, errAt(e, "list index %s out of range (length %d)", i.Text, len(x.Elems))
		}
		return x.Elems[n], nil
	case Dict:
		if i.Kind != String {
			return Value{}, errAt(e, "dict key must be str, got %s", i.Kind.KindName())
		}
		if v, ok := x.Field(i.Text); ok {
			return v, nil
		}
		return Value{}, errAt(e, "dict has no key %s", pyStringRepr(i.Text))
	}
	return Value{}, errAt(e, "cannot index %s", x.Kind.KindName())
}

func typeErr(e *Expr, op string, a, b Value) *EvalError {
	return errAt(e, "unsupported operand types for %s: %s and %s", op, a.Kind.KindName(), b.Kind.KindName())
}

func binary(e *Expr, op string, a, b Value) (Value, *EvalError) {
	switch op {
	case "==":
		return BoolValue(Equal(a, b)), nil
	case "!=":
		return BoolValue(!Equal(a, b)), nil
	case "<", "<=", ">", ">=":
		c, ok := compare(a, b)
		if !ok {
			return Value{}, typeErr(e, op, a, b)
		}
		if c == unordered {
			return BoolValue(false), nil
		}
		switch op {
		case "<":
			return BoolValue(c < 0), nil
		case "<=":
			return BoolValue(c <= 0), nil
		case ">":
			return BoolValue(c > 0), nil
		}
		return BoolValue(c >= 0), nil
	}
	if a.Kind == Int && b.Kind == Int {
		x, ok1 := a.Int64()
		y, ok2 := b.Int64()
		if !ok1 || !ok2 {
			return Value{}, errAt(e, "integer overflow")
		}
		return intOp(e, op, x, y)
	}
	if isNum(a) && isNum(b) {
		return floatOp(e, op, a.Float64(), b.Float64())
	}
	switch {
	case op == "+" && a.Kind == b.Kind && (a.Kind == List || a.Kind == String):
		if a.Kind == String {
			if len(a.Text)+len(b.Text) > MaxElems {
				return Value{}, errAt(e, "string longer than %d bytes", MaxElems)
			}
			return StringValue(a.Text + b.Text), nil
		}
		if Weight(a, MaxElems)+Weight(b, MaxElems) > MaxElems {
			return Value{}, errAt(e, "list of more than %d elements in all", MaxElems)
		}
		return ListValue(append(append(make([]Value, 0, len(a.Elems)+len(b.Elems)), a.Elems...), b.Elems...)...), nil
	case op == "*" && (a.Kind == List || a.Kind == String) && b.Kind == Int:
		return repeat(e, a, b)
	case op == "*" && a.Kind == Int && (b.Kind == List || b.Kind == String):
		return repeat(e, b, a)
	}
	return Value{}, typeErr(e, op, a, b)
}

// repeat is Python's seq * n: n <= 0 gives an empty sequence.
func repeat(e *Expr, seq, n Value) (Value, *EvalError) {
	k, ok := n.Int64()
	if !ok {
		return Value{}, errAt(e, "repetition count %s too large", n.Text)
	}
	if k < 0 {
		k = 0
	}
	size := len(seq.Elems)
	if seq.Kind == String {
		size = len(seq.Text)
	}
	if w := Weight(seq, MaxElems); k > 0 && int64(w-1) > int64(MaxElems)/k {
		return Value{}, errAt(e, "repetition of %d × %d elements exceeds the limit of %d", w-1, k, MaxElems)
	}
	if seq.Kind == String {
		return StringValue(strings.Repeat(seq.Text, int(k))), nil
	}
	out := make([]Value, 0, size*int(k))
	for j := int64(0); j < k; j++ {
		out = append(out, seq.Elems...)
	}
	return ListValue(out...), nil
}

func intOp(e *Expr, op string, x, y int64) (Value, *EvalError) {
	overflow := func() (Value, *EvalError) { return Value{}, errAt(e, "integer overflow in %d %s %d", x, op, y) }
	switch op {
	case "+":
		s := x + y
		if (s > x) != (y > 0) {
			return overflow()
		}
		return IntValue(s), nil
	case "-":
		s := x - y
		if (s < x) != (y > 0) {
			return overflow()
		}
		return IntValue(s), nil
	case "*":
		if x == 0 || y == 0 {
			return IntValue(0), nil
		}
		hi, lo := bits.Mul64(uint64(abs64(x)), uint64(abs64(y)))
		neg := (x < 0) != (y < 0)
		if hi != 0 || x == math.MinInt64 || y == math.MinInt64 || lo > math.MaxInt64 && !(neg && lo == 1<<63) {
			return overflow()
		}
		if neg {
			return IntValue(-int64(lo)), nil
		}
		return IntValue(int64(lo)), nil
	case "/":
		if y == 0 {
			return Value{}, errAt(e, "division by zero")
		}
		return FloatValue(float64(x) / float64(y)), nil
	case "//", "%":
		if y == 0 {
			return Value{}, errAt(e, "integer division or modulo by zero")
		}
		if x == math.MinInt64 && y == -1 {
			return overflow()
		}
		q, r := x/y, x%y
		if r != 0 && (r < 0) != (y < 0) {
			q--
			r += y
		}
		if op == "//" {
			return IntValue(q), nil
		}
		return IntValue(r), nil
	}
	return Value{}, errAt(e, "unsupported operand types for %s: int and int", op)
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// floatOp is Python's float arithmetic, including its floor division and
// modulo (float_floor_div and float_rem of CPython's floatobject.c).
func floatOp(e *Expr, op string, x, y float64) (Value, *EvalError) {
	switch op {
	case "+":
		return FloatValue(x + y), nil
	case "-":
		return FloatValue(x - y), nil
	case "*":
		return FloatValue(x * y), nil
	case "/":
		if y == 0 {
			return Value{}, errAt(e, "float division by zero")
		}
		return FloatValue(x / y), nil
	case "//", "%":
		if y == 0 {
			return Value{}, errAt(e, "float modulo or floor division by zero")
		}
		mod := math.Mod(x, y)
		div := (x - mod) / y
		if mod != 0 {
			if (y < 0) != (mod < 0) {
				mod += y
				div -= 1
			}
		} else {
			mod = math.Copysign(0, y)
		}
		if op == "%" {
			return FloatValue(mod), nil
		}
		var fl float64
		if div != 0 {
			fl = math.Floor(div)
			if div-fl > 0.5 {
				fl++
			}
		} else {
			fl = math.Copysign(0, x/y)
		}
		return FloatValue(fl), nil
	}
	return Value{}, errAt(e, "unsupported operand types for %s: float and float", op)
}

// Equal is Python's ==: numbers compare by value (1 == 1.0, True == 1),
// lists and dicts element-wise, other kinds only with themselves.
func Equal(a, b Value) bool {
	num := func(v Value) bool { return isNum(v) || v.Kind == Bool }
	switch {
	case a.Kind == Int && b.Kind == Int:
		return a.Text == b.Text || normInt(a.Text) == normInt(b.Text)
	case num(a) && num(b):
		return a.Float64() == b.Float64()
	case a.Kind != b.Kind:
		return false
	}
	switch a.Kind {
	case Null:
		return true
	case String:
		return a.Text == b.Text
	case List:
		if len(a.Elems) != len(b.Elems) {
			return false
		}
		for i := range a.Elems {
			if !Equal(a.Elems[i], b.Elems[i]) {
				return false
			}
		}
		return true
	case Dict:
		if len(a.Elems) != len(b.Elems) {
			return false
		}
		for i, k := range a.Keys {
			w, ok := b.Field(k)
			if !ok || !Equal(a.Elems[i], w) {
				return false
			}
		}
		return true
	}
	return false
}

func normInt(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimLeft(strings.TrimPrefix(s, "-"), "0")
	if s == "" {
		return "0"
	}
	if neg {
		return "-" + s
	}
	return s
}

// compare orders a and b as Python's < does: numbers by value, strings by
// code point, lists lexicographically; ok is false for other pairs.
func compare(a, b Value) (int, bool) {
	switch {
	case a.Kind == Int && b.Kind == Int:
		x, ok1 := a.Int64()
		y, ok2 := b.Int64()
		if ok1 && ok2 {
			return cmp3(x < y, x > y), true
		}
		fallthrough
	case (isNum(a) || a.Kind == Bool) && (isNum(b) || b.Kind == Bool):
		x, y := a.Float64(), b.Float64()
		if math.IsNaN(x) || math.IsNaN(y) {
			return unordered, true // every ordering is false, like Python's nan
		}
		return cmp3(x < y, x > y), true
	case a.Kind == String && b.Kind == String:
		return strings.Compare(a.Text, b.Text), true
	case a.Kind == List && b.Kind == List:
		for i := 0; i < len(a.Elems) && i < len(b.Elems); i++ {
			if Equal(a.Elems[i], b.Elems[i]) {
				continue
			}
			return compare(a.Elems[i], b.Elems[i])
		}
		return cmp3(len(a.Elems) < len(b.Elems), len(a.Elems) > len(b.Elems)), true
	}
	return 0, false
}

// unordered is compare's result for a NaN operand.
const unordered = 2

func cmp3(less, greater bool) int {
	switch {
	case less:
		return -1
	case greater:
		return 1
	}
	return 0
}
