package ast

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/lang/token"
)

var (
	rangeType = reflect.TypeOf(Range{})
	posType   = reflect.TypeOf(token.Pos{})
	spanType  = reflect.TypeOf(token.Span{})
)

// Dump returns a compact, position-free S-expression of n, for tests that
// compare syntax trees: a node prints as `(Type Field=value ...)` with only
// its non-zero exported fields, a list as `[a b]`, a string quoted. Ranges
// and positions are left out, so two trees that differ only in layout dump
// the same.
//
// The precedence chain of an expression is collapsed: a level that only
// wraps the next one (an [OrExpr] without `||`, a [Postfix] without
// suffixes, ...) prints as that next level, so `"a"` dumps as
// `(Primary String="a")` rather than nine nested nodes. The collapse loses
// nothing, as the grammar fixes the levels in between.
func Dump(n Node) string {
	var b strings.Builder
	dumpValue(&b, reflect.ValueOf(n))
	return b.String()
}

// unwrap skips the expression levels that only wrap the next one.
func unwrap(n Node) Node {
	for {
		switch x := n.(type) {
		case *Expr:
			if x.Cond == nil && x.Else == nil && x.Value != nil {
				n = x.Value
				continue
			}
		case *OrExpr:
			if len(x.Right) == 0 && x.Left != nil {
				n = x.Left
				continue
			}
		case *AndExpr:
			if len(x.Right) == 0 && x.Left != nil {
				n = x.Left
				continue
			}
		case *CmpExpr:
			if x.Op == "" && x.Right == nil && x.Left != nil {
				n = x.Left
				continue
			}
		case *AddExpr:
			if len(x.Rest) == 0 && x.Left != nil {
				n = x.Left
				continue
			}
		case *MulExpr:
			if len(x.Rest) == 0 && x.Left != nil {
				n = x.Left
				continue
			}
		case *Unary:
			if x.Op == "" && x.Operand == nil && x.Value != nil {
				n = x.Value
				continue
			}
		case *Postfix:
			if len(x.Ops) == 0 && x.X != nil {
				n = x.X
				continue
			}
		}
		return n
	}
}

func dumpValue(b *strings.Builder, v reflect.Value) {
	switch v.Kind() {
	case reflect.Invalid:
		b.WriteString("nil")
	case reflect.Interface:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		dumpValue(b, v.Elem())
	case reflect.Pointer:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		if v.Type().Implements(nodeType) {
			if u := unwrap(v.Interface().(Node)); u != v.Interface() {
				dumpValue(b, reflect.ValueOf(u))
				return
			}
		}
		dumpValue(b, v.Elem())
	case reflect.Struct:
		t := v.Type()
		b.WriteString("(")
		b.WriteString(t.Name())
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() || f.Type == rangeType || f.Type == posType || f.Type == spanType {
				continue
			}
			fv := v.Field(i)
			if fv.IsZero() || (fv.Kind() == reflect.Slice && fv.Len() == 0) {
				continue
			}
			b.WriteString(" ")
			b.WriteString(f.Name)
			b.WriteString("=")
			dumpValue(b, fv)
		}
		b.WriteString(")")
	case reflect.Slice:
		b.WriteString("[")
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				b.WriteString(" ")
			}
			dumpValue(b, v.Index(i))
		}
		b.WriteString("]")
	case reflect.String:
		b.WriteString(strconv.Quote(v.String()))
	default:
		fmt.Fprint(b, v.Interface())
	}
}
