package schema_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/lang/parser"
)

// loadSet parses src and loads its schemas, failing on any diagnostic.
func loadSet(t *testing.T, src string) *schema.Set {
	t.Helper()
	f, diags := parser.ParseFile("test.rolltpl", []byte(src))
	for _, d := range diags {
		t.Fatalf("parse: %s\n%s", d.Error(), src)
	}
	set, diags := schema.Load([]schema.Source{{File: f, Src: []byte(src)}})
	for _, d := range diags {
		t.Fatalf("load: %s\n%s", d.Error(), src)
	}
	return set
}

// decode decodes JSON the way configs should be decoded, with UseNumber.
func decode(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("bad JSON %s: %v", s, err)
	}
	return v
}

const validateSchemas = `
schema top {
    model_type: str
    text_config: text
    vision_config: vision? = null
    tie_word_embeddings: bool = false
}

schema text {
    hidden_size: int
    rope_theta: float = 10000.0
    rope_scaling: dict? = null
    layer_types: list[str]? = null
    eos_token_id: int | list[int]? = null
    moe_layer_freq: int | list[int] = 1
    grid: list[list[int]] = []
    extra: any = null
    dropped: ignored
}

schema vision {
    depth: int = 32
}
`

func TestValidate(t *testing.T) {
	set := loadSet(t, validateSchemas)
	const text = `"text_config": {"hidden_size": 8}`
	tests := []struct {
		name string
		json string
		want []schema.Problem
	}{
		{"minimal", `{"model_type": "m", ` + text + `}`, nil},
		{"everything", `{"model_type": "m", "tie_word_embeddings": true, "vision_config": {"depth": 2},
			"text_config": {"hidden_size": 8, "rope_theta": 1e6, "rope_scaling": {"type": "yarn"},
			"layer_types": ["a", "b"], "eos_token_id": [1, 2], "moe_layer_freq": [0, 1], "grid": [[1], [2, 3]],
			"extra": {"x": [1]}, "dropped": "whatever"}}`, nil},
		{"int where float", `{"model_type": "m", "text_config": {"hidden_size": 8, "rope_theta": 1000000}}`, nil},
		{"unknown keys are fine", `{"model_type": "m", "use_cache": true, "text_config": {"hidden_size": 8, "foo": [1]}}`, nil},
		{"null where nullable", `{"model_type": "m", "vision_config": null,
			"text_config": {"hidden_size": 8, "rope_scaling": null, "layer_types": null, "eos_token_id": null, "extra": null, "dropped": null}}`, nil},
		{"string for float", `{"model_type": "m", "text_config": {"hidden_size": 8, "rope_theta": "1e6"}}`,
			[]schema.Problem{{Path: "text_config.rope_theta", Msg: "got string, want float"}}},
		{"float for int", `{"model_type": "m", "text_config": {"hidden_size": 8.0}}`,
			[]schema.Problem{{Path: "text_config.hidden_size", Msg: "got float, want int"}}},
		{"null for non-nullable", `{"model_type": "m", "tie_word_embeddings": null, ` + text + `}`,
			[]schema.Problem{{Path: "tie_word_embeddings", Msg: "got null, want bool"}}},
		{"list element", `{"model_type": "m", "text_config": {"hidden_size": 8, "layer_types": ["a", 1, null]}}`,
			[]schema.Problem{
				{Path: "text_config.layer_types[1]", Msg: "got int, want str"},
				{Path: "text_config.layer_types[2]", Msg: "got null, want str"},
			}},
		{"nested list element", `{"model_type": "m", "text_config": {"hidden_size": 8, "grid": [[1], [true]]}}`,
			[]schema.Problem{{Path: "text_config.grid[1][0]", Msg: "got bool, want int"}}},
		{"union mismatch", `{"model_type": "m", "text_config": {"hidden_size": 8, "eos_token_id": "</s>"}}`,
			[]schema.Problem{{Path: "text_config.eos_token_id", Msg: "got string, want int | list[int]?"}}},
		{"union list alternative reports elements", `{"model_type": "m", "text_config": {"hidden_size": 8, "moe_layer_freq": [0, "1"]}}`,
			[]schema.Problem{{Path: "text_config.moe_layer_freq[1]", Msg: "got string, want int"}}},
		{"dict wanted", `{"model_type": "m", "text_config": {"hidden_size": 8, "rope_scaling": [1]}}`,
			[]schema.Problem{{Path: "text_config.rope_scaling", Msg: "got list, want dict?"}}},
		{"nested schema wanted", `{"model_type": "m", "text_config": "qwen"}`,
			[]schema.Problem{{Path: "text_config", Msg: "got string, want text"}}},
		{"nested nullable schema", `{"model_type": "m", "vision_config": {"depth": "deep"}, ` + text + `}`,
			[]schema.Problem{{Path: "vision_config.depth", Msg: "got string, want int"}}},
		{"missing required", `{"text_config": {}}`,
			[]schema.Problem{
				{Path: "model_type", Msg: "missing required key (want str)"},
				{Path: "text_config.hidden_size", Msg: "missing required key (want int)"},
			}},
		{"not an object", `[1, 2]`, []schema.Problem{{Msg: "got list, want top"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := set.Validate("top", decode(t, tt.json))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateUnknownSchema(t *testing.T) {
	set := loadSet(t, validateSchemas)
	want := []schema.Problem{{Msg: `no schema named "nope"`}}
	if diff := cmp.Diff(want, set.Validate("nope", map[string]any{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestValidatePlainDecode: without UseNumber every number is a float64; an
// integral one then fits int too.
func TestValidatePlainDecode(t *testing.T) {
	set := loadSet(t, validateSchemas)
	var v any
	if err := json.Unmarshal([]byte(`{"model_type": "m", "text_config": {"hidden_size": 8, "rope_theta": 10000}}`), &v); err != nil {
		t.Fatal(err)
	}
	if got := set.Validate("top", v); len(got) != 0 {
		t.Errorf("integral float64 rejected: %v", got)
	}
	if err := json.Unmarshal([]byte(`{"model_type": "m", "text_config": {"hidden_size": 8.5}}`), &v); err != nil {
		t.Fatal(err)
	}
	want := []schema.Problem{{Path: "text_config.hidden_size", Msg: "got float, want int"}}
	if diff := cmp.Diff(want, set.Validate("top", v)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestUnknownKeys(t *testing.T) {
	set := loadSet(t, validateSchemas)
	v := decode(t, `{"model_type": "m", "use_cache": true, "vision_config": {"depth": 1, "embed_dim": 2},
		"text_config": {"hidden_size": 8, "rope_scaling": {"factor": 2}, "foo": 1}}`)
	want := []string{"text_config.foo", "use_cache", "vision_config.embed_dim"}
	if diff := cmp.Diff(want, set.UnknownKeys("top", v)); diff != "" {
		t.Errorf("UnknownKeys mismatch (-want +got):\n%s", diff)
	}
}

func TestProblemString(t *testing.T) {
	p := schema.Problem{Path: "text_config.rope_theta", Msg: "got string, want float"}
	if got, want := p.String(), "text_config.rope_theta: got string, want float"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := (schema.Problem{Msg: "m"}).String(), "m"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
