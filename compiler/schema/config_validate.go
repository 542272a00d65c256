package schema

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Problem is a value that does not fit its schema: a type mismatch or a
// missing required key.
type Problem struct {
	// Path is the dotted key path, with [i] for list elements
	// ("text_config.rope_theta", "architectures[0]").
	Path string
	Msg  string
}

// String formats p as "path: msg".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// Validate checks a decoded JSON value against the named schema and returns
// the problems, sorted by path:
//
//   - a value whose JSON type fits no alternative of the field's type
//     ("got string, want float"); an integer fits float, null fits only a
//     nullable type, any and ignored fit everything;
//   - a field without a default that the value does not have ("missing
//     required key").
//
// Keys the schema does not declare are not problems (real configs carry many
// extra keys); [Set.UnknownKeys] lists them. Decode with
// json.Decoder.UseNumber so that 1 and 1.0 can be told apart: with plain
// float64 numbers an integral value counts as an int too.
func (s *Set) Validate(schemaName string, value any) []Problem {
	sc := s.Schema(schemaName)
	if sc == nil {
		return []Problem{{Msg: fmt.Sprintf("no schema named %q", schemaName)}}
	}
	v := &validator{set: s}
	v.object(sc, "", value)
	sort.SliceStable(v.problems, func(i, j int) bool { return v.problems[i].Path < v.problems[j].Path })
	return v.problems
}

// UnknownKeys returns the dotted paths of the keys in value that the named
// schema does not declare, sorted. It descends into nested schemas only;
// keys below a dict or any field are never unknown.
func (s *Set) UnknownKeys(schemaName string, value any) []string {
	sc := s.Schema(schemaName)
	if sc == nil {
		return nil
	}
	v := &validator{set: s}
	v.object(sc, "", value)
	sort.Strings(v.unknown)
	return v.unknown
}

type validator struct {
	set      *Set
	problems []Problem
	unknown  []string
}

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// object checks value against a schema: the value must be a JSON object.
func (v *validator) object(sc *Schema, path string, value any) {
	obj, ok := value.(map[string]any)
	if !ok {
		v.add(path, "got %s, want %s", kindOf(value), sc.Name)
		return
	}
	for _, name := range sc.Order {
		f := sc.Fields[name]
		x, present := obj[name]
		if !present {
			if f.Default == "" && !f.Type.Is("ignored") {
				v.add(join(path, name), "missing required key (want %s)", f.Type)
			}
			continue
		}
		v.value(f.Type, join(path, name), x)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if sc.Fields[k] == nil {
			v.unknown = append(v.unknown, join(path, k))
		}
	}
}

// value checks one value against a type.
func (v *validator) value(t *Type, path string, x any) {
	if t == nil {
		return
	}
	if x == nil {
		if !t.Nullable && !t.Is("any") && !t.Is("ignored") {
			v.add(path, "got null, want %s", t)
		}
		return
	}
	// The first alternative that fits without problems wins; when none
	// does, an alternative of the value's own kind (a schema for an object,
	// a list for a list) reports its inner problems, else the mismatch is
	// reported at path.
	var inner []Problem
	for _, a := range t.Alts {
		sub := &validator{set: v.set}
		if !sub.atom(a, path, x) {
			continue
		}
		if len(sub.problems) == 0 {
			v.unknown = append(v.unknown, sub.unknown...)
			return
		}
		if inner == nil {
			inner = sub.problems
		}
	}
	if inner != nil {
		v.problems = append(v.problems, inner...)
		return
	}
	v.add(path, "got %s, want %s", kindOf(x), t)
}

// atom reports whether x has the JSON kind a wants; deeper problems (list
// elements, nested schema fields) go to v.
func (v *validator) atom(a Atom, path string, x any) bool {
	switch a.Name {
	case "any", "ignored":
		return true
	case "int":
		return isInt(x)
	case "float":
		return isNumber(x)
	case "bool":
		_, ok := x.(bool)
		return ok
	case "str":
		_, ok := x.(string)
		return ok
	case "dict":
		_, ok := x.(map[string]any)
		return ok
	case "list":
		l, ok := x.([]any)
		if !ok {
			return false
		}
		if a.Elem != nil {
			for i, e := range l {
				v.value(a.Elem, fmt.Sprintf("%s[%d]", path, i), e)
			}
		}
		return true
	}
	sc := v.set.Schema(a.Name)
	if _, ok := x.(map[string]any); !ok || sc == nil {
		return false
	}
	v.object(sc, path, x)
	return true
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// kindOf names the JSON type of a decoded value: null, bool, int, float,
// string, list or object.
func kindOf(x any) string {
	switch x := x.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case string:
		return "string"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	case json.Number:
		if numberIsInt(x) {
			return "int"
		}
		return "float"
	case float64:
		return "float"
	case float32:
		return "float"
	}
	if isInt(x) {
		return "int"
	}
	return fmt.Sprintf("%T", x)
}

// numberIsInt reports whether a JSON number literal is an integer: no
// fraction and no exponent, as Python's json writes ints.
func numberIsInt(n json.Number) bool {
	return !strings.ContainsAny(string(n), ".eE")
}

// isInt reports whether x is a JSON integer.
func isInt(x any) bool {
	switch x := x.(type) {
	case json.Number:
		if !numberIsInt(x) {
			return false
		}
		_, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			// Larger than int64 is still an integer literal.
			_, err = strconv.ParseFloat(string(x), 64)
		}
		return err == nil
	case float64:
		// Without UseNumber, 1 and 1.0 both decode to 1: accept either.
		return x == math.Trunc(x) && !math.IsInf(x, 0)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return true
	}
	return false
}

// isNumber reports whether x is a JSON number (an int fits a float field).
func isNumber(x any) bool {
	switch x := x.(type) {
	case json.Number:
		_, err := strconv.ParseFloat(string(x), 64)
		return err == nil
	case float64, float32:
		return true
	}
	return isInt(x)
}
