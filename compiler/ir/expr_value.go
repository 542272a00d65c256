package ir

import (
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Dict is the value kind of a JSON object (an HF sub-config such as
// rope_scaling); it comes from configs only, there is no dict literal.
const Dict ValueKind = List + 1

// kindNames are the names of the value kinds in messages and types.
var kindNames = [...]string{Null: "null", Bool: "bool", Int: "int", Float: "float", String: "str", List: "list", Dict: "dict"}

// KindName returns the kind's name as messages and types write it: null,
// bool, int, float, str, list or dict.
func (k ValueKind) KindName() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "?"
}

// NullValue returns null.
func NullValue() Value { return Value{Kind: Null} }

// BoolValue returns a bool.
func BoolValue(b bool) Value { return Value{Kind: Bool, Bool: b} }

// IntValue returns an int.
func IntValue(i int64) Value { return Value{Kind: Int, Text: strconv.FormatInt(i, 10)} }

// FloatValue returns a float; its Text is Python's repr of f.
func FloatValue(f float64) Value { return Value{Kind: Float, Text: pyFloatRepr(f)} }

// StringValue returns a string.
func StringValue(s string) Value { return Value{Kind: String, Text: s} }

// ListValue returns a list of elems.
func ListValue(elems ...Value) Value { return Value{Kind: List, Elems: elems} }

// DictValue returns a dict with keys and values in order (len(keys) ==
// len(values)).
func DictValue(keys []string, values []Value) Value {
	return Value{Kind: Dict, Keys: keys, Elems: values}
}

// Int64 returns the value of an int and whether it fits in 64 bits.
func (v Value) Int64() (int64, bool) {
	if v.Kind != Int {
		return 0, false
	}
	i, err := strconv.ParseInt(v.Text, 10, 64)
	return i, err == nil
}

// Float64 returns the value of an int or float as a float64.
func (v Value) Float64() float64 {
	switch v.Kind {
	case Bool:
		if v.Bool {
			return 1
		}
		return 0
	case Int, Float:
		f, err := strconv.ParseFloat(v.Text, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return f // ±Inf, like Python's float() of a huge int literal
			}
			switch v.Text {
			case "inf":
				return math.Inf(1)
			case "-inf":
				return math.Inf(-1)
			}
			return math.NaN()
		}
		return f
	}
	return math.NaN()
}

// Field returns the value of a dict's key and whether it is present.
func (v Value) Field(key string) (Value, bool) {
	for i, k := range v.Keys {
		if k == key {
			return v.Elems[i], true
		}
	}
	return Value{}, false
}

// Truthy reports Python's truth value of v: null, false, 0, 0.0, "" and
// empty lists and dicts are false; everything else is true.
func (v Value) Truthy() bool {
	switch v.Kind {
	case Null:
		return false
	case Bool:
		return v.Bool
	case Int:
		return strings.TrimLeft(strings.TrimPrefix(v.Text, "-"), "0") != ""
	case Float:
		return v.Float64() != 0
	case String:
		return v.Text != ""
	case List, Dict:
		return len(v.Elems) > 0
	}
	return false
}

// Repr formats v as Python's repr() would: strings single-quoted, floats
// in Python's shortest form, dicts as {'k': v}.
func (v Value) Repr() string {
	var b strings.Builder
	v.repr(&b)
	return b.String()
}

func (v Value) repr(b *strings.Builder) {
	switch v.Kind {
	case String:
		b.WriteString(pyStringRepr(v.Text))
	case Float:
		b.WriteString(pyFloatRepr(v.Float64()))
	case Int:
		if i, ok := v.Int64(); ok {
			b.WriteString(strconv.FormatInt(i, 10))
		} else {
			b.WriteString(v.Text)
		}
	case List:
		b.WriteByte('[')
		for i, e := range v.Elems {
			if i > 0 {
				b.WriteString(", ")
			}
			e.repr(b)
		}
		b.WriteByte(']')
	case Dict:
		b.WriteByte('{')
		for i, e := range v.Elems {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyStringRepr(v.Keys[i]))
			b.WriteString(": ")
			e.repr(b)
		}
		b.WriteByte('}')
	default:
		b.WriteString(v.String())
	}
}

// Str formats v as Python's str() would: a string is itself, everything
// else is its repr.
func (v Value) Str() string {
	if v.Kind == String {
		return v.Text
	}
	return v.Repr()
}

// pyFloatRepr formats f like Python's repr(float): the shortest digits
// that round-trip, positional for exponents in [-4, 16), with ".0" on
// integral values; inf, -inf and nan.
func pyFloatRepr(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, exps, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(exps)
	if exp >= -4 && exp < 16 {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.ContainsAny(s, ".") {
			s += ".0"
		}
		return s
	}
	sign := "+"
	if exp < 0 {
		sign, exp = "-", -exp
	}
	es := strconv.Itoa(exp)
	if len(es) < 2 {
		es = "0" + es
	}
	return mant + "e" + sign + es
}

// pyStringRepr quotes s like Python's repr(str).
func pyStringRepr(s string) string {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x` + strconv.FormatInt(int64(r)|0x100, 16)[1:])
		case r < 0x80 || unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x100:
			b.WriteString(`\x` + strconv.FormatInt(int64(r)|0x100, 16)[1:])
		case r < 0x10000:
			b.WriteString(`\u` + strconv.FormatInt(int64(r)|0x10000, 16)[1:])
		default:
			b.WriteString(`\U` + strconv.FormatInt(int64(r)|0x100000000, 16)[1:])
		}
	}
	b.WriteByte(q)
	return b.String()
}
