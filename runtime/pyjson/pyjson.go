package pyjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Number is a JSON number kept as written. Float is true when Python would
// parse it as a float (it has a '.', 'e' or 'E').
type Number struct {
	Text  string
	Float bool
}

// Int returns the number as an integer if it is one.
func (n Number) Int() (int64, bool) {
	if n.Float {
		f, err := strconv.ParseFloat(n.Text, 64)
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return 0, false
		}
		return int64(f), true
	}
	v, err := strconv.ParseInt(n.Text, 10, 64)
	return v, err == nil
}

// Float64 returns the number as a float64.
func (n Number) Float64() (float64, bool) {
	f, err := strconv.ParseFloat(n.Text, 64)
	return f, err == nil
}

// IntNumber returns the Number of an integer.
func IntNumber(v int64) Number { return Number{Text: strconv.FormatInt(v, 10)} }

// Object is a JSON object with its keys in insertion order. A repeated key
// keeps its first position and its last value, as Python's json.loads does.
type Object struct {
	keys []string
	vals map[string]any
}

// NewObject returns an empty object.
func NewObject() *Object { return &Object{vals: map[string]any{}} }

// Keys returns the keys in insertion order.
func (o *Object) Keys() []string { return o.keys }

// Len returns the number of keys.
func (o *Object) Len() int { return len(o.keys) }

// Get returns the value under key.
func (o *Object) Get(key string) (any, bool) {
	if o == nil {
		return nil, false
	}
	v, ok := o.vals[key]
	return v, ok
}

// Has reports whether key is present.
func (o *Object) Has(key string) bool {
	_, ok := o.Get(key)
	return ok
}

// Set sets key to v, appending key if it is new.
func (o *Object) Set(key string, v any) {
	if _, ok := o.vals[key]; !ok {
		o.keys = append(o.keys, key)
	}
	o.vals[key] = v
}

// Delete removes key.
func (o *Object) Delete(key string) {
	if _, ok := o.vals[key]; !ok {
		return
	}
	delete(o.vals, key)
	o.keys = slices.DeleteFunc(o.keys, func(k string) bool { return k == key })
}

// Clone returns a deep copy of o.
func (o *Object) Clone() *Object { return CloneValue(o).(*Object) }

// CloneValue returns a deep copy of the JSON value v.
func CloneValue(v any) any {
	switch v := v.(type) {
	case *Object:
		c := NewObject()
		for _, k := range v.keys {
			c.Set(k, CloneValue(v.vals[k]))
		}
		return c
	case []any:
		c := make([]any, len(v))
		for i, e := range v {
			c[i] = CloneValue(e)
		}
		return c
	}
	return v
}

// Parse parses one JSON value (with objects as *Object and numbers as
// Number). Trailing non-space text is an error. Errors carry the byte
// offset.
func Parse(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec)
	if err != nil {
		return nil, jsonErr(dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("at byte %d: unexpected data after the top-level value", dec.InputOffset())
	}
	return v, nil
}

func jsonErr(dec *json.Decoder, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("at byte %d: %v", se.Offset, se)
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("at byte %d: unexpected end of input", dec.InputOffset())
	}
	return fmt.Errorf("at byte %d: %v", dec.InputOffset(), err)
}

func parseValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	return parseFrom(dec, tok, 0)
}

func parseFrom(dec *json.Decoder, tok json.Token, depth int) (any, error) {
	if depth > 200 {
		return nil, errors.New("JSON nested too deeply")
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := NewObject()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is %v, not a string", kt)
				}
				vt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := parseFrom(dec, vt, depth+1)
				if err != nil {
					return nil, err
				}
				o.Set(k, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return o, nil
		case '[':
			l := []any{}
			for dec.More() {
				vt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := parseFrom(dec, vt, depth+1)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return l, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case json.Number:
		s := string(t)
		return Number{Text: s, Float: strings.ContainsAny(s, ".eE")}, nil
	case string, bool, nil:
		return t, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// ParseObject parses data as a JSON object.
func ParseObject(data []byte) (*Object, error) {
	v, err := Parse(data)
	if err != nil {
		return nil, err
	}
	o, ok := v.(*Object)
	if !ok {
		return nil, fmt.Errorf("the top-level value is %s, not an object", Kind(v))
	}
	return o, nil
}

// Kind names the kind of the JSON value v for a message: "null", "a
// boolean", "a number", "a string", "an array" or "an object".
func Kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case *Object:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// Encode encodes v as Python's json.dumps(v, indent=indent,
// sort_keys=sortKeys) does (ensure_ascii, allow_nan defaults): ", " and
// ": " separators, floats as repr(float), non-ASCII escaped as \uXXXX.
// indent < 0 means no indentation (separators ", " and ": ").
func Encode(v any, indent int, sortKeys bool) []byte {
	var b []byte
	return appendPy(b, v, indent, sortKeys, 0)
}

func appendPy(b []byte, v any, indent int, sortKeys bool, level int) []byte {
	nl := func(b []byte, level int) []byte {
		if indent < 0 {
			return b
		}
		b = append(b, '\n')
		for range level * indent {
			b = append(b, ' ')
		}
		return b
	}
	sep := func(b []byte) []byte {
		if indent < 0 {
			return append(b, ", "...)
		}
		return append(b, ',')
	}
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		if v {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case Number:
		return appendPyNumber(b, v)
	case string:
		return AppendString(b, v, true)
	case []any:
		if len(v) == 0 {
			return append(b, "[]"...)
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = sep(b)
			}
			b = nl(b, level+1)
			b = appendPy(b, e, indent, sortKeys, level+1)
		}
		b = nl(b, level)
		return append(b, ']')
	case *Object:
		if v.Len() == 0 {
			return append(b, "{}"...)
		}
		keys := v.keys
		if sortKeys {
			keys = slices.Clone(keys)
			slices.SortFunc(keys, comparePyStrings)
		}
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = sep(b)
			}
			b = nl(b, level+1)
			b = AppendString(b, k, true)
			b = append(b, ": "...)
			b = appendPy(b, v.vals[k], indent, sortKeys, level+1)
		}
		b = nl(b, level)
		return append(b, '}')
	}
	panic(fmt.Sprintf("pyjson: Encode of %T", v))
}

// comparePyStrings orders strings as Python compares str: by code point.
func comparePyStrings(a, b string) int {
	// Byte order of valid UTF-8 is code point order.
	return strings.Compare(a, b)
}

func appendPyNumber(b []byte, n Number) []byte {
	if !n.Float {
		if i, ok := n.Int(); ok {
			return strconv.AppendInt(b, i, 10)
		}
		return append(b, n.Text...) // a big integer: Python keeps it exactly
	}
	f, err := strconv.ParseFloat(n.Text, 64)
	if err != nil && !math.IsInf(f, 0) {
		return append(b, n.Text...)
	}
	return append(b, pyFloatRepr(f)...)
}

// pyFloatRepr returns Python's repr of f (and json.dumps' rendering of it):
// the shortest digits that round-trip, in positional notation when the
// decimal exponent is in [-4, 16), else in exponent notation with at least
// two exponent digits.
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	sign := ""
	if math.Signbit(f) {
		sign = "-"
		f = -f
	}
	if f == 0 {
		return sign + "0.0"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, exps, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(exps)
	digits := strings.Replace(mant, ".", "", 1)
	decpt := exp + 1
	if decpt <= -4 || decpt > 16 {
		s := digits[:1]
		if len(digits) > 1 {
			s += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es = "-"
			exp = -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, s, es, exp)
	}
	switch {
	case decpt <= 0:
		return sign + "0." + strings.Repeat("0", -decpt) + digits
	case decpt >= len(digits):
		return sign + digits + strings.Repeat("0", decpt-len(digits)) + ".0"
	}
	return sign + digits[:decpt] + "." + digits[decpt:]
}

// AppendString appends s as a JSON string. With asciiOnly it escapes
// everything outside printable ASCII as \uXXXX (a UTF-16 surrogate pair
// above U+FFFF), as Python's json.dumps does by default; otherwise it keeps
// UTF-8 as is and escapes only '"', '\\' and control characters, as
// serde_json does. An invalid UTF-8 byte is written as U+FFFD.
func AppendString(b []byte, s string, asciiOnly bool) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"':
			b = append(b, '\\', '"')
		case r == '\\':
			b = append(b, '\\', '\\')
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r < 0x20 || (asciiOnly && r > 0x7e):
			if r > 0xffff { // UTF-16 surrogate pair
				r -= 0x10000
				hi, lo := 0xd800+(r>>10), 0xdc00+(r&0x3ff)
				b = append(b, '\\', 'u', hex[hi>>12], hex[hi>>8&15], hex[hi>>4&15], hex[hi&15])
				r = lo
			}
			b = append(b, '\\', 'u', hex[r>>12&15], hex[r>>8&15], hex[r>>4&15], hex[r&15])
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// Lookup walks a dotted key ("text_config.hidden_size") through nested
// objects.
func Lookup(o *Object, path string) (any, bool) {
	parts := strings.Split(path, ".")
	cur := o
	for i, p := range parts {
		v, ok := cur.Get(p)
		if !ok {
			return nil, false
		}
		if i == len(parts)-1 {
			return v, true
		}
		next, ok := v.(*Object)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return nil, false
}
