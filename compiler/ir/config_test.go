package ir

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCheckHFConfig checks the shared config checks on a config decoded
// the way both callers decode it.
func TestCheckHFConfig(t *testing.T) {
	intType := &ConfigType{Kinds: []string{"int"}, Default: true}
	tmpl := &Template{Config: []ConfigEntry{
		{HF: "num_hidden_layers", MCA: "num_layers", Type: intType},
		{HF: "hidden_size", MCA: "hidden_size"}, // no schema type: the MCA rule only
		{HF: "rope_theta", MCA: "rotary_base", Type: &ConfigType{Kinds: []string{"float"}, Default: true}},
		{HF: "tie_word_embeddings", MCA: "tie_embeddings_and_output_weights", Type: &ConfigType{Kinds: []string{"bool"}, Default: true}},
		{HF: "head_dim", MCA: "kv_channels", Type: &ConfigType{Kinds: []string{"int"}, Nullable: true}},
		{HF: "sliding_window", MCA: "window_size", Type: &ConfigType{Kinds: []string{"int"}}},
	}}
	for _, tc := range []struct {
		name, config string
		want         []string
	}{
		{"valid", `{"num_hidden_layers": 2, "hidden_size": 8, "rope_theta": 10000, "tie_word_embeddings": true, "head_dim": null, "sliding_window": 4}`, nil},
		{"hostile", `{"num_hidden_layers": "3", "hidden_size": 0, "rope_theta": "x", "tie_word_embeddings": "yes", "head_dim": 1e9}`, []string{
			`num_hidden_layers is "3": got string, want int [hf-config-type]`,
			`hidden_size is 0: want an integer from 1 to 67108864 (for MCA hidden_size) [hf-config-range]`,
			`rope_theta is "x": got string, want float [hf-config-type]`,
			`tie_word_embeddings is "yes": got string, want bool [hf-config-type]`,
			`head_dim is 1e9: got float, want int? [hf-config-type]`,
			`sliding_window: missing, and the schema gives it no default [hf-config-missing]`,
		}},
		{"range", `{"num_hidden_layers": 1000000000, "hidden_size": 99999999999999999999, "sliding_window": null}`, []string{
			`num_hidden_layers is 1000000000: want an integer from 1 to 65536 (for MCA num_layers) [hf-config-range]`,
			`hidden_size is 99999999999999999999: want an integer from 1 to 67108864 (for MCA hidden_size) [hf-config-range]`,
			`head_dim: missing, and the schema gives it no default [hf-config-missing]`,
			`sliding_window is null: got null, want int [hf-config-type]`,
		}},
	} {
		dec := json.NewDecoder(strings.NewReader(tc.config))
		dec.UseNumber()
		var cfg map[string]any
		if err := dec.Decode(&cfg); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range tmpl.CheckHFConfig(func(key string) (ConfigValue, bool) {
			v, ok := cfg[key]
			return testValue(v), ok
		}) {
			got = append(got, p.String()+" ["+p.Code+"]")
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: problems (-want +got):\n%s", tc.name, d)
		}
	}
}

func testValue(v any) ConfigValue {
	b, _ := json.Marshal(v)
	cv := ConfigValue{Text: string(b)}
	switch v := v.(type) {
	case nil:
		cv.Kind = "null"
	case bool:
		cv.Kind = "bool"
	case string:
		cv.Kind, cv.Str = "string", v
	case []any:
		cv.Kind = "list"
	case map[string]any:
		cv.Kind = "object"
	case json.Number:
		cv.Kind = "float"
		if !strings.ContainsAny(string(v), ".eE") {
			cv.Kind = "int"
			n, err := v.Int64()
			cv.Int, cv.IntOK = n, err == nil
		}
	}
	return cv
}
