package compiler_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/stdlib"
)

// TestUserSchemaScoping: schemas declared in the user's files are scoped
// like templates (their own file and direct imports), come before the
// stdlib's of the same name, may use stdlib fragments and nested schemas,
// and are what the checks and Result.Schemas.For see.
func TestUserSchemaScoping(t *testing.T) {
	files := map[string]string{
		// A schema file: acme uses the stdlib's hf_file fragment and nests
		// the stdlib's qwen2_vl_vision config.
		"dir/acme_schema.rolltpl": `schema acme {
    use hf_file
    hidden_size: int
    vision_config: qwen2_vl_vision
}
# Replaces the stdlib's llama schema for the files that import it.
schema llama {
    hidden_size: int
    only_in_user_llama: int = 1
}
`,
		"dir/acme.rolltpl": `import "acme_schema"
import "parallel"

template acme {
    layer_prefix = "model.layers."
    config {
        hidden_size -> hidden_size
        vision_config.depth -> num_layers
        hiden_size -> ffn_hidden_size
    }
    parallel { use default }
}
`,
		// Sees no user schema: acme is unknown here.
		"dir/other.rolltpl": `import "parallel"

template acme {
    layer_prefix = "model.layers."
    config { hidden_size -> hidden_size }
    parallel { use default }
}
`,
		"dir/llama.rolltpl": `import "acme_schema"
import "parallel"

template llama {
    layer_prefix = "model.layers."
    config {
        only_in_user_llama -> ffn_hidden_size
        num_attention_heads -> num_attention_heads
    }
    parallel { use default }
}
`,
	}
	overlay := map[string][]byte{}
	for p, s := range files {
		overlay[p] = []byte(s)
	}
	codes := func(path string) []string {
		res := compiler.Compile([]string{path}, compiler.Options{Lib: stdlib.Templates(), SchemaLib: stdSchemas(), Overlay: overlay})
		var out []string
		for _, d := range res.Diags {
			out = append(out, d.Subject.Start.Filename+" "+d.Code+" "+firstSentence(d.Detail))
		}
		return out
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"dir/acme.rolltpl", []string{`dir/acme.rolltpl unknown-hf-key hiden_size is not a key of the acme config (schema acme)`}},
		{"dir/other.rolltpl", []string{`dir/other.rolltpl no-schema No schema "acme" is declared in this file, the files it imports or the stdlib, so its config keys are not checked`}},
		// The user's llama hides the stdlib's: num_attention_heads is
		// known to other schemas only (a warning), only_in_user_llama is
		// fine.
		{"dir/llama.rolltpl", []string{`dir/llama.rolltpl hf-key-absent llama configs have no num_attention_heads; ROLL skips the mapping and the MCA default applies`}},
	} {
		if diff := cmp.Diff(tc.want, codes(tc.path)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.path, diff)
		}
	}
	res := compiler.Compile([]string{"dir/acme.rolltpl", "dir/other.rolltpl"}, compiler.Options{Lib: stdlib.Templates(), SchemaLib: stdSchemas(), Overlay: overlay})
	if res.Schemas.For("dir/acme.rolltpl").Schema("acme") == nil {
		t.Error("acme.rolltpl does not see schema acme")
	}
	if res.Schemas.For("dir/other.rolltpl").Schema("acme") != nil {
		t.Error("other.rolltpl sees schema acme without importing it")
	}
	if res.Schemas.For("dir/other.rolltpl").Schema("llama").Field("only_in_user_llama") != nil {
		t.Error("other.rolltpl sees the user's llama schema")
	}
	// A user schema with a problem: an unknown type and a use of itself.
	overlay["dir/bad.rolltpl"] = []byte("schema bad {\n    x: no_such_type\n    use bad\n}\n")
	if diff := cmp.Diff([]string{
		`dir/bad.rolltpl unknown-type "no_such_type" is neither a basic type (int, float, bool, str, dict, list[T], any, ignored) nor a schema`,
		`dir/bad.rolltpl unknown-reference Schema "bad" uses itself`,
	}, codes("dir/bad.rolltpl")); diff != "" {
		t.Errorf("bad schema (-want +got):\n%s", diff)
	}
}

// stdSchemas is the stdlib's schema library, loaded once for the tests.
var stdSchemas = sync.OnceValue(func() *compiler.SchemaLibrary { return compiler.LoadSchemaLibrary(stdlib.Schemas()) })

func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i]
	}
	return strings.TrimSuffix(s, ".")
}
