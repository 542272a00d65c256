package ir

import (
	"fmt"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

// Type is the static type of an expression: the set of value kinds it
// may have (bit 1<<kind). A config key of unknown type is [AnyType].
type Type uint16

// TypeOf returns the type holding only kinds.
func TypeOf(kinds ...ValueKind) Type {
	var t Type
	for _, k := range kinds {
		t |= 1 << k
	}
	return t
}

// AnyType is every kind.
const AnyType = Type(1<<(Dict+1) - 1)

// Has reports whether t allows kind k.
func (t Type) Has(k ValueKind) bool { return t&(1<<k) != 0 }

func (t Type) String() string {
	if t == AnyType {
		return "any"
	}
	var parts []string
	for k := Null; k <= Dict; k++ {
		if t.Has(k) {
			parts = append(parts, k.KindName())
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, " | ")
}

// TypeFromConfig returns the expression type of a config schema type: the
// schema's kinds, plus null when it is nullable or has no default (a
// missing key reads null).
func TypeFromConfig(ct *ConfigType) Type {
	if ct == nil {
		return AnyType
	}
	var t Type
	for _, k := range ct.Kinds {
		switch k {
		case "int":
			t |= TypeOf(Int)
		case "float":
			t |= TypeOf(Int, Float)
		case "bool":
			t |= TypeOf(Bool)
		case "str", "string":
			t |= TypeOf(String)
		case "list":
			t |= TypeOf(List)
		case "dict", "object":
			t |= TypeOf(Dict)
		default:
			return AnyType
		}
	}
	if ct.Nullable || !ct.Default {
		t |= TypeOf(Null)
	}
	return t
}

// TypeEnv is what the static check knows about the names an expression
// reads.
type TypeEnv interface {
	// HFType returns the type of a top-level HF config key; false when
	// the key is unknown to the schema (an unknown-hf-key error).
	HFType(key string) (Type, bool)
	// MCAType is HFType for the MCA config.
	MCAType(key string) (Type, bool)
	// LayerBound reports whether `layer` may be used here.
	LayerBound() bool
	// IsFlag reports whether name is a build flag.
	IsFlag(name string) bool
}

// TypeError is a static error in an expression, with the diagnostic code
// the checker reports it under.
type TypeError struct {
	Span token.Span
	// Code is type-mismatch, unknown-hf-key, unknown-mca-key,
	// unknown-name or unknown-function.
	Code string
	Msg  string
	// Key is the unknown config key, name or function (for
	// did-you-mean), if any.
	Key string
}

// Check infers e's type and reports the static errors in it: unknown
// names, functions and config keys, wrong argument counts, and operators
// no combination of the operand types accepts ("a" - 1, len(3)). It is
// permissive where the kinds may vary (a nullable key in arithmetic is
// fine statically; Eval reports it if it is null at run time).
func (e *Expr) Check(env TypeEnv) (Type, []TypeError) {
	c := &checker{env: env}
	t := c.check(e, 0)
	return t, c.errs
}

type checker struct {
	env  TypeEnv
	errs []TypeError
}

func (c *checker) errorf(e *Expr, code, format string, args ...any) Type {
	c.errs = append(c.errs, TypeError{Span: e.Span, Code: code, Msg: fmt.Sprintf(format, args...)})
	return AnyType
}

// possible reports whether some pair of kinds of a and b makes ok true.
func possible(a, b Type, ok func(x, y ValueKind) bool) bool {
	for x := Null; x <= Dict; x++ {
		for y := Null; y <= Dict; y++ {
			if a.Has(x) && b.Has(y) && ok(x, y) {
				return true
			}
		}
	}
	return false
}

func (c *checker) check(e *Expr, depth int) Type {
	if e == nil || depth > maxEvalDepth {
		return AnyType
	}
	depth++
	sub := func(i int) Type {
		if i >= len(e.Args) {
			return AnyType
		}
		return c.check(e.Args[i], depth)
	}
	num := TypeOf(Int, Float)
	switch e.Kind {
	case ExprLit:
		if _, ok := e.Lit.Int64(); e.Lit.Kind == Int && !ok {
			return c.errorf(e, diag.TypeMismatch, "integer %s does not fit in 64 bits", e.Lit.Text)
		}
		return TypeOf(e.Lit.Kind)
	case ExprRef:
		switch e.Name {
		case "hf", "mca":
			return c.errorf(e, diag.TypeMismatch, "%s is the %s config, not a value; write %s.KEY", e.Name, strings.ToUpper(e.Name), e.Name)
		case "layer":
			if !c.env.LayerBound() {
				return c.errorf(e, diag.TypeMismatch, "layer is only bound in per-layer weight names")
			}
			return TypeOf(Int)
		}
		if !c.env.IsFlag(e.Name) {
			c.errorf(e, diag.UnknownName, "unknown name %s: the names are hf, mca, layer and the build flags", e.Name)
			c.errs[len(c.errs)-1].Key = e.Name
			return AnyType
		}
		return TypeOf(Bool)
	case ExprField:
		if len(e.Args) == 1 && e.Args[0].Kind == ExprRef && (e.Args[0].Name == "hf" || e.Args[0].Name == "mca") {
			get, code := c.env.HFType, diag.UnknownHFKey
			if e.Args[0].Name == "mca" {
				get, code = c.env.MCAType, diag.UnknownMCAKey
			}
			t, ok := get(e.Name)
			if !ok {
				c.errs = append(c.errs, TypeError{Span: e.Span, Code: code, Key: e.Name,
					Msg: fmt.Sprintf("%s.%s: the %s config schema has no key %s", e.Args[0].Name, e.Name, strings.ToUpper(e.Args[0].Name), e.Name)})
				return AnyType
			}
			return t
		}
		x := sub(0)
		if !x.Has(Dict) && !x.Has(Null) {
			return c.errorf(e, diag.TypeMismatch, "%s has no fields (.%s)", x, e.Name)
		}
		return AnyType
	case ExprIndex:
		x, i := sub(0), sub(1)
		if !possible(x, i, func(a, b ValueKind) bool {
			return (a == List || a == String) && b == Int || a == Dict && b == String
		}) {
			return c.errorf(e, diag.TypeMismatch, "cannot index %s with %s", x, i)
		}
		if x == TypeOf(String) {
			return x
		}
		return AnyType
	case ExprUnary:
		x := sub(0)
		if e.Op == "!" {
			return TypeOf(Bool)
		}
		if x&num == 0 {
			return c.errorf(e, diag.TypeMismatch, "cannot negate %s", x)
		}
		return x & num
	case ExprBinary:
		a, b := sub(0), sub(1)
		switch e.Op {
		case "||", "&&":
			return a | b
		case "==", "!=":
			return TypeOf(Bool)
		case "<", "<=", ">", ">=":
			if !possible(a, b, func(x, y ValueKind) bool {
				n := func(k ValueKind) bool { return k == Int || k == Float || k == Bool }
				return n(x) && n(y) || x == y && (x == String || x == List)
			}) {
				return c.errorf(e, diag.TypeMismatch, "cannot compare %s %s %s", a, e.Op, b)
			}
			return TypeOf(Bool)
		}
		var out Type
		for x := Null; x <= Dict; x++ {
			for y := Null; y <= Dict; y++ {
				if a.Has(x) && b.Has(y) {
					out |= arithType(e.Op, x, y)
				}
			}
		}
		if out == 0 {
			return c.errorf(e, diag.TypeMismatch, "unsupported operand types for %s: %s and %s", e.Op, a, b)
		}
		return out
	case ExprCond:
		sub(1)
		return sub(0) | sub(2)
	case ExprList:
		for i := range e.Args {
			sub(i)
		}
		return TypeOf(List)
	case ExprCall:
		ts := make([]Type, len(e.Args))
		for i := range e.Args {
			ts[i] = sub(i)
		}
		arity, ok := Funcs[e.Name]
		if !ok {
			c.errorf(e, diag.UnknownFunction, "unknown function %s: the functions are %s", e.Name, funcNames())
			c.errs[len(c.errs)-1].Key = e.Name
			return AnyType
		}
		if len(ts) < arity[0] || arity[1] >= 0 && len(ts) > arity[1] {
			return c.errorf(e, diag.TypeMismatch, "%s takes %s, got %d", e.Name, argWords(arity), len(ts))
		}
		need := func(i int, want Type, what string) {
			if ts[i]&want == 0 {
				c.errorf(e.Args[i], diag.TypeMismatch, "%s needs %s, got %s", e.Name, what, ts[i])
			}
		}
		switch e.Name {
		case "len":
			need(0, TypeOf(List, String, Dict), "a list, str or dict")
			return TypeOf(Int)
		case "count":
			need(0, TypeOf(List), "a list")
			return TypeOf(Int)
		case "range":
			for i := range ts {
				need(i, TypeOf(Int), "ints")
			}
			return TypeOf(List)
		case "is_list":
			return TypeOf(Bool)
		case "str":
			return TypeOf(String)
		case "int":
			need(0, TypeOf(Bool, Int, Float, String), "a number or str")
			return TypeOf(Int)
		case "float":
			need(0, TypeOf(Bool, Int, Float, String), "a number or str")
			return TypeOf(Float)
		case "min", "max":
			if len(ts) == 1 {
				need(0, TypeOf(List), "a list (or two or more arguments)")
				return AnyType
			}
			var out Type
			for _, t := range ts {
				out |= t
			}
			return out
		}
	}
	return AnyType
}

// arithType is the result kind of x op y for + - * / // %, 0 when Eval
// refuses the pair.
func arithType(op string, x, y ValueKind) Type {
	isNum := func(k ValueKind) bool { return k == Int || k == Float }
	switch {
	case isNum(x) && isNum(y):
		if op == "/" || x == Float || y == Float {
			return TypeOf(Float)
		}
		return TypeOf(Int)
	case op == "+" && x == y && (x == List || x == String):
		return TypeOf(x)
	case op == "*" && (x == List || x == String) && y == Int:
		return TypeOf(x)
	case op == "*" && x == Int && (y == List || y == String):
		return TypeOf(y)
	}
	return 0
}

func funcNames() string {
	names := make([]string, 0, len(Funcs))
	for n := range Funcs {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
