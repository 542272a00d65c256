package schema

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/lang/format"
	"github.com/rolltpl/rolltpl/lang/parser"
)

// Infer returns the text of `schema NAME { ... }` inferred from a decoded
// config.json (decode with json.Decoder.UseNumber so that 1 and 1.0 infer
// int and float): one field per key, in key order, typed by its JSON value:
//
//   - null: any? = null (the JSON says nothing about the type);
//   - bool, int, float, string: bool, int, float, str, with the value as
//     the default;
//   - a list: list[T], T the common element type (int and float mix to
//     float, anything else mixed to any, an empty list to any);
//   - an object under a sub-config key (text_config, vision_config,
//     thinker_config, audio_config, any other *_config but
//     quantization_config and the like): a nested schema named NAME_KEY,
//     declared after the schema that uses it; any other object: dict.
//
// Keys that are not identifiers are left out with a comment saying so. The
// text is in canonical layout (what `rolltplc fmt` prints).
func Infer(name string, config map[string]any) string {
	inf := &inferrer{taken: map[string]bool{name: true}}
	inf.schema(name, "", config)
	text := strings.Join(inf.out, "\n")
	// The text is built in canonical layout already; the formatter has the
	// last word should the layout rules change.
	if out, err := format.Source(name+".rolltpl", []byte(text)); err == nil {
		return string(out)
	}
	return text
}

type inferrer struct {
	out   []string
	taken map[string]bool
}

// notSubConfigs are *_config keys whose objects are settings, not nested
// model configs.
var notSubConfigs = map[string]bool{
	"quantization_config": true, "compression_config": true, "generation_config": true,
	"peft_config": true, "lora_config": true,
}

// isSubConfig reports whether an object under key is a nested model config.
func isSubConfig(key string) bool {
	return strings.HasSuffix(key, "_config") && !notSubConfigs[key]
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// schema appends the schema of obj, found at the dotted path in the
// config (empty for the top level), and then its nested schemas.
func (inf *inferrer) schema(name, path string, obj map[string]any) {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type nested struct {
		name, key string
		obj       map[string]any
	}
	var later []nested
	from := "a config.json"
	if path != "" {
		from = path + " in a config.json"
	}
	head := []string{fmt.Sprintf("# Inferred by `rolltplc schema infer` from %s: review the types and defaults.", from)}
	lines := []string{"schema " + name + " {"}
	for _, k := range keys {
		if !identRE.MatchString(k) {
			head = append(head, fmt.Sprintf("# Left out key %s: not a field name.", strconv.Quote(k)))
			continue
		}
		v := obj[k]
		if m, ok := v.(map[string]any); ok && isSubConfig(k) {
			sub := inf.fresh(name + "_" + k)
			later = append(later, nested{sub, k, m})
			lines = append(lines, fmt.Sprintf("    %s: %s", k, sub))
			continue
		}
		t, def := inferValue(v)
		line := fmt.Sprintf("    %s: %s", k, t)
		if def != "" {
			line += " = " + def
		}
		lines = append(lines, line)
	}
	lines = append(lines, "}", "")
	inf.out = append(inf.out, strings.Join(append(head, lines...), "\n"))
	for _, n := range later {
		inf.schema(n.name, join(path, n.key), n.obj)
	}
}

// fresh returns name, or name with a number appended when it is taken.
func (inf *inferrer) fresh(name string) string {
	out := name
	for i := 2; inf.taken[out]; i++ {
		out = fmt.Sprintf("%s_%d", name, i)
	}
	inf.taken[out] = true
	return out
}

// inferValue returns the type of a JSON value and, for scalars, its
// literal as a default.
func inferValue(v any) (typ, def string) {
	switch x := v.(type) {
	case nil:
		return "any?", "null"
	case bool:
		return "bool", strconv.FormatBool(x)
	case string:
		return "str", strconv.Quote(x)
	case map[string]any:
		return "dict", ""
	case []any:
		return "list[" + elemType(x) + "]", ""
	}
	if lit, isInt, ok := numberLiteral(v); ok {
		if isInt {
			return "int", lit
		}
		return "float", lit
	}
	return "any", ""
}

// elemType returns the common type of list elements.
func elemType(l []any) string {
	kinds := map[string]bool{}
	nullable := false
	var lists []any
	for _, e := range l {
		switch x := e.(type) {
		case nil:
			nullable = true
			continue
		case []any:
			lists = append(lists, x...)
			kinds["list"] = true
			continue
		}
		t, _ := inferValue(e)
		kinds[t] = true
	}
	if kinds["int"] && kinds["float"] {
		delete(kinds, "int")
	}
	t := "any"
	if len(kinds) == 1 {
		for k := range kinds {
			t = k
		}
		if t == "list" {
			t = "list[" + elemType(lists) + "]"
		}
	}
	if nullable && t != "any" {
		t += "?"
	}
	return t
}

// numberLiteral formats a JSON number as a rolltpl literal, keeping floats
// floats (1.0 stays 1.0). Integral float64 values, which decoding without
// UseNumber gives for 1 and 1.0 alike, count as ints.
func numberLiteral(v any) (lit string, isInt bool, ok bool) {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return "", false, false
		}
		return s, numberIsInt(x), true
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return "", false, false
		}
		if x == math.Trunc(x) && math.Abs(x) < 1e18 {
			return strconv.FormatInt(int64(x), 10), true, true
		}
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return s, false, true
	case float32:
		return numberLiteral(float64(x))
	case int:
		return strconv.Itoa(x), true, true
	case int64:
		return strconv.FormatInt(x, 10), true, true
	case int32:
		return strconv.FormatInt(int64(x), 10), true, true
	case uint64:
		return strconv.FormatUint(x, 10), true, true
	}
	return "", false, false
}

// InferSet returns a set holding the schema [Infer] writes for config,
// named name: what `rolltplc check --hf-config` checks a template against
// when no file and no library declares a schema of its model type
// (compiler.Options.Schemas).
func InferSet(name string, config map[string]any) *Set {
	text := []byte(Infer(name, config))
	f, _ := parser.ParseFile("inferred:"+name, text)
	set, _ := Load([]Source{{File: f, Src: text}})
	return set
}
