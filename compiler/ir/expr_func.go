package ir

import (
	"math"
	"strconv"
	"strings"
)

// Funcs are the predeclared functions (lang/spec.md §9) with the number
// of arguments each takes (min, max; -1 for any).
var Funcs = map[string][2]int{
	"len":     {1, 1},
	"count":   {2, 2},
	"range":   {1, 3},
	"is_list": {1, 1},
	"str":     {1, 1},
	"int":     {1, 1},
	"float":   {1, 1},
	"min":     {1, -1},
	"max":     {1, -1},
}

// call applies a predeclared function to evaluated arguments.
func call(e *Expr, args []Value) (Value, *EvalError) {
	arity, ok := Funcs[e.Name]
	if !ok {
		return Value{}, errAt(e, "unknown function %s", e.Name)
	}
	if len(args) < arity[0] || arity[1] >= 0 && len(args) > arity[1] {
		return Value{}, errAt(e, "%s takes %s, got %d", e.Name, argWords(arity), len(args))
	}
	a := args[0]
	switch e.Name {
	case "len":
		switch a.Kind {
		case List, Dict:
			return IntValue(int64(len(a.Elems))), nil
		case String:
			return IntValue(int64(len([]rune(a.Text)))), nil
		}
		return Value{}, errAt(e, "len of %s", a.Kind.KindName())
	case "count":
		if a.Kind != List {
			return Value{}, errAt(e, "count needs a list, got %s", a.Kind.KindName())
		}
		n := 0
		for _, x := range a.Elems {
			if Equal(x, args[1]) {
				n++
			}
		}
		return IntValue(int64(n)), nil
	case "range":
		var r [3]int64
		r[2] = 1
		for i, v := range args {
			x, ok := v.Int64()
			if !ok {
				return Value{}, errAt(e, "range takes ints, got %s", v.Kind.KindName())
			}
			r[i] = x
		}
		if len(args) == 1 {
			r[0], r[1] = 0, r[0]
		}
		start, stop, step := r[0], r[1], r[2]
		if step == 0 {
			return Value{}, errAt(e, "range step must not be zero")
		}
		var n float64
		if step > 0 && stop > start {
			n = math.Ceil((float64(stop) - float64(start)) / float64(step))
		} else if step < 0 && stop < start {
			n = math.Ceil((float64(start) - float64(stop)) / -float64(step))
		}
		if n > MaxElems {
			return Value{}, errAt(e, "range of %.0f elements exceeds the limit of %d", n, MaxElems)
		}
		out := make([]Value, 0, int(n))
		for x := start; step > 0 && x < stop || step < 0 && x > stop; x += step {
			out = append(out, IntValue(x))
			if len(out) >= int(n) {
				break
			}
		}
		return ListValue(out...), nil
	case "is_list":
		return BoolValue(a.Kind == List), nil
	case "str":
		return StringValue(a.Str()), nil
	case "int":
		switch a.Kind {
		case Bool:
			if a.Bool {
				return IntValue(1), nil
			}
			return IntValue(0), nil
		case Int:
			return a, nil
		case Float:
			f := math.Trunc(a.Float64())
			if math.IsNaN(f) || f >= 1<<63 || f < -(1<<63) {
				return Value{}, errAt(e, "cannot convert %s to int", a.Repr())
			}
			return IntValue(int64(f)), nil
		case String:
			i, err := strconv.ParseInt(strings.TrimSpace(a.Text), 10, 64)
			if err != nil {
				return Value{}, errAt(e, "invalid literal for int(): %s", a.Repr())
			}
			return IntValue(i), nil
		}
		return Value{}, errAt(e, "int of %s", a.Kind.KindName())
	case "float":
		switch a.Kind {
		case Bool, Int, Float:
			return FloatValue(a.Float64()), nil
		case String:
			f, err := strconv.ParseFloat(strings.TrimSpace(a.Text), 64)
			if err != nil {
				return Value{}, errAt(e, "could not convert string to float: %s", a.Repr())
			}
			return FloatValue(f), nil
		}
		return Value{}, errAt(e, "float of %s", a.Kind.KindName())
	case "min", "max":
		items := args
		if len(args) == 1 {
			if a.Kind != List {
				return Value{}, errAt(e, "%s of one argument needs a list, got %s", e.Name, a.Kind.KindName())
			}
			items = a.Elems
		}
		if len(items) == 0 {
			return Value{}, errAt(e, "%s of an empty list", e.Name)
		}
		best := items[0]
		for _, x := range items[1:] {
			c, ok := compare(x, best)
			if !ok {
				return Value{}, errAt(e, "%s cannot compare %s and %s", e.Name, x.Kind.KindName(), best.Kind.KindName())
			}
			if c != unordered && (e.Name == "min" && c < 0 || e.Name == "max" && c > 0) {
				best = x
			}
		}
		return best, nil
	}
	return Value{}, errAt(e, "unknown function %s", e.Name)
}

func argWords(arity [2]int) string {
	switch {
	case arity[1] < 0:
		return strconv.Itoa(arity[0]) + " or more arguments"
	case arity[0] == arity[1] && arity[0] == 1:
		return "1 argument"
	case arity[0] == arity[1]:
		return strconv.Itoa(arity[0]) + " arguments"
	}
	return strconv.Itoa(arity[0]) + " to " + strconv.Itoa(arity[1]) + " arguments"
}
