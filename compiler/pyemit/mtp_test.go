package pyemit_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/stdlib"
)

// TestMTPTemplateClass: a template with MTP layers registers a subclass of
// its template class made by the support module's mtp_template (ROLL's
// Template, or the key-prefix class), with the first MTP layer as a
// function of the configs or the HF prefix; the module imports under
// recording stand-ins of ROLL (no convert_utils needed at import). The
// conversion itself is run with ROLL's code in runtime/exec
// (TestMTPUnderROLL).
func TestMTPTemplateClass(t *testing.T) {
	res := compiler.Compile([]string{filepath.Join("testdata", "mtp.rolltpl")}, compiler.Options{Lib: stdlib.Templates()})
	if res.Diags.HasErrors() {
		t.Fatalf("%v", res.Diags.Err())
	}
	files, err := pyemit.Emit(res.Program)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "built")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := map[string]string{}
	for _, f := range files {
		src[f.Name] = string(f.Content)
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for file, want := range map[string][]string{
		"trailing_mtp.py": {
			"def _mtp_first_layer(hf_config, mca_config):\n    \"\"\"mtp_first_layer: the HF layer index of the first MTP layer.\"\"\"\n    return getattr(hf_config, 'num_hidden_layers', None)\n",
			"template_class=mtp_template(Template, first_layer=_mtp_first_layer),",
		},
		"prefixed_mtp.py":     {`mtp_template(key_prefix_template([("text_config.", ["tie_word_embeddings"])]), hf_prefix="mtp.")`},
		"_rolltpl_support.py": {"def mtp_template(base, first_layer=None, hf_prefix=None):"},
	} {
		for _, w := range want {
			if !strings.Contains(src[file], w) {
				t.Errorf("%s lacks %q:\n%s", file, w, src[file])
			}
		}
	}
	out := recordRegistrations(t, dir)
	var got struct {
		Templates map[string]struct {
			Class string `json:"template_class"`
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"trailing_mtp": "MTPTemplate", "prefixed_mtp": "MTPKeyPrefixTemplate"} {
		if c := got.Templates[name].Class; c != want {
			t.Errorf("%s: template class %q, want %q", name, c, want)
		}
	}
}
