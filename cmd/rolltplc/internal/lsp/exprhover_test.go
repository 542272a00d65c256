package lsp

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/lang/parser"
)

// TestSetHover: hovering a `set` shows it as the generated template class
// applies it.
func TestSetHover(t *testing.T) {
	src := `config c {
    set mca.moe_layer_freq = [0] * hf.first_k_dense_replace + [1] * 2 when hf.first_k_dense_replace
    set hf.n = mca.a // mca.b
}`
	f, diags := parser.ParseFile("s.rolltpl", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	items := f.Decls[0].Config.Items
	want := []string{
		"**set** `mca.moe_layer_freq` · computed HF → MCA, after the config maps and constants\n\n" +
			"Python (generated template class):\n```python\nif getattr(hf_config, 'first_k_dense_replace', None):\n" +
			"    kw_args[\"moe_layer_freq\"] = [0] * getattr(hf_config, 'first_k_dense_replace', None) + [1] * 2\n```",
		"**set** `hf.n` · computed MCA → HF, winning over the config maps\n\n" +
			"Python (generated template class):\n```python\nkw_args[\"n\"] = getattr(mca_config, 'a', None) // getattr(mca_config, 'b', None)\n```",
	}
	for i, w := range want {
		if diff := cmp.Diff(w, setHover(items[i].Set)); diff != "" {
			t.Errorf("set %d (-want +got):\n%s", i, diff)
		}
	}
}
