package compiler_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/stdlib"
)

// TestNoCascade: a `use` that names nothing (a misspelt import or block)
// is one error; what the missing block would have supplied (the config a
// qkv op reads, the parallel classes) is not reported on top of it. The
// same template with every block found reports what it lacks.
func TestNoCascade(t *testing.T) {
	const body = `
template qwen2 {
    layer_prefix = "model.layers."
    config { use %s }
    weights {
        qkv ".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight" -> ".self_attention.linear_qkv.weight"
    }
    %s
}
`
	tests := []struct {
		name, src string
		want      []string
	}{
		{"misspelt import", "import \"commons\"\n" + fmt.Sprintf(body, "dense_llm", ""), []string{diag.UnknownImport}},
		{"misspelt block", "import \"common\"\n" + fmt.Sprintf(body, "dense_lm", ""), []string{diag.UnknownReference}},
		{"all found", "import \"common\"\n" + fmt.Sprintf(body, "vision", ""), []string{diag.ParallelCoverage, diag.MissingConfig}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := compiler.Compile([]string{"a.rolltpl"}, compiler.Options{Lib: stdlib.Templates(), Overlay: map[string][]byte{"a.rolltpl": []byte(tc.src)}})
			var got []string
			for _, d := range res.Diags {
				got = append(got, d.Code)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("codes (-want +got):\n%s\n%v", diff, res.Diags)
			}
		})
	}
}
