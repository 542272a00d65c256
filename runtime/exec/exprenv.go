package exec

import (
	"fmt"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
)

// exprEnv is the [ir.Env] the runtime evaluates template expressions in:
// the HF and MCA configs as parsed JSON (either may be nil: every key
// reads null), the layer when bound, and the build flags.
type exprEnv struct {
	hf, mca  *pyjson.Object
	layer    int64
	hasLayer bool
	flags    map[string]bool
}

// HF implements [ir.Env].
func (e exprEnv) HF(key string) (ir.Value, bool) { return objValue(e.hf, key) }

// MCA implements [ir.Env].
func (e exprEnv) MCA(key string) (ir.Value, bool) { return objValue(e.mca, key) }

// Layer implements [ir.Env].
func (e exprEnv) Layer() (int64, bool) { return e.layer, e.hasLayer }

// Flag implements [ir.Env]: an unset flag is false.
func (e exprEnv) Flag(name string) (bool, bool) { return e.flags[name], true }

func objValue(o *pyjson.Object, key string) (ir.Value, bool) {
	if o == nil {
		return ir.Value{}, false
	}
	v, ok := o.Get(key)
	if !ok {
		return ir.Value{}, false
	}
	return jsonToValue(v), true
}

// jsonToValue converts a parsed JSON value to an expression value.
func jsonToValue(v any) ir.Value {
	switch v := v.(type) {
	case bool:
		return ir.BoolValue(v)
	case string:
		return ir.StringValue(v)
	case pyjson.Number:
		if v.Float {
			return ir.Value{Kind: ir.Float, Text: v.Text}
		}
		return ir.Value{Kind: ir.Int, Text: v.Text}
	case []any:
		out := make([]ir.Value, len(v))
		for i, x := range v {
			out[i] = jsonToValue(x)
		}
		return ir.ListValue(out...)
	case *pyjson.Object:
		keys := append([]string(nil), v.Keys()...)
		vals := make([]ir.Value, len(keys))
		for i, k := range keys {
			x, _ := v.Get(k)
			vals[i] = jsonToValue(x)
		}
		return ir.DictValue(keys, vals)
	}
	return ir.NullValue()
}

// valueToJSON converts an IR value (a template constant or an
// expression's value) to a JSON value for a config file.
func valueToJSON(v ir.Value) any {
	switch v.Kind {
	case ir.Bool:
		return v.Bool
	case ir.Int:
		return pyjson.Number{Text: v.Text}
	case ir.Float:
		return pyjson.Number{Text: v.Text, Float: true}
	case ir.String:
		return v.Text
	case ir.List:
		out := make([]any, len(v.Elems))
		for i, x := range v.Elems {
			out[i] = valueToJSON(x)
		}
		return out
	case ir.Dict:
		o := pyjson.NewObject()
		for i, k := range v.Keys {
			o.Set(k, valueToJSON(v.Elems[i]))
		}
		return o
	}
	return nil
}

// recordedHF returns the HF config an MCA config records in
// hf_config_json, or nil (every hf key then reads null).
func recordedHF(mc *MCAConfig) *pyjson.Object {
	if mc == nil {
		return nil
	}
	text, ok := mc.String("hf_config_json")
	if !ok {
		return nil
	}
	o, err := pyjson.ParseObject([]byte(text))
	if err != nil {
		return nil
	}
	return o
}

// applySets evaluates the template's `set SIDE.KEY = VALUE [when COND]`
// statements of one side ("mca" or "hf") in source order and writes each
// value whose condition holds into dst. Expressions read hf and mca from
// env; path names the file in errors.
func applySets(t *ir.Template, side string, env exprEnv, dst *pyjson.Object, path string) error {
	for _, s := range t.Sets {
		if s.Side != side {
			continue
		}
		if s.When != nil {
			c, err := s.When.Eval(env)
			if err != nil {
				return fmt.Errorf("%s: set %s.%s (%s): %v", path, s.Side, s.Key, s.Span.Start, err)
			}
			if !c.Truthy() {
				continue
			}
		}
		v, err := s.Value.Eval(env)
		if err != nil {
			return fmt.Errorf("%s: set %s.%s (%s): %v", path, s.Side, s.Key, s.Span.Start, err)
		}
		dst.Set(s.Key, valueToJSON(v))
	}
	return nil
}
