package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/safetensors"
)

// rewriteFP8 copies the single-file checkpoint in src to dst with its
// scales renamed by rename and config.json edited by cfg.
func rewriteFP8(t *testing.T, src, dst string, rename func(string) string, cfg func(string) string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "config.json"), []byte(cfg(string(c))), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(src, safetensors.SingleFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var specs []safetensors.Spec
	data := map[string][]byte{}
	for _, ti := range f.Tensors() {
		n := rename(ti.Name)
		specs = append(specs, safetensors.Spec{Name: n, DType: ti.DType, Shape: ti.Shape})
		data[n] = f.Data(ti)
	}
	writeSingleFile(t, dst, specs, data)
}

// TestDequantizeScaleRules: `rolltplc dequantize` pairs weights and
// scales by the rules of the stdlib template of the checkpoint's model
// type, by the stdlib default rules for a model type the stdlib has no
// template for, and by the quant section of the template --template
// names; each writes the same tensors as the stdlib llama run. A
// checkpoint whose scales the rules do not name is refused, naming the
// scale the rules expect.
func TestDequantizeScaleRules(t *testing.T) {
	tmp := t.TempDir()
	p := func(s string) string { return filepath.Join(tmp, s) }
	writeFP8Llama(t, p("llama"))
	same := func(s string) string { return s }
	acme := func(c string) string { return strings.Replace(c, `"model_type": "llama"`, `"model_type": "acme"`, 1) }
	wscale := func(n string) string {
		if w, ok := strings.CutSuffix(n, ".weight_scale_inv"); ok {
			return w + ".wscale_inv"
		}
		return n
	}
	rewriteFP8(t, p("llama"), p("acme"), same, acme)
	rewriteFP8(t, p("llama"), p("custom"), wscale, acme)
	tpl := p("acme.rolltpl")
	if err := os.WriteFile(tpl, []byte("template acme {\n    layer_prefix = \"model.layers.\"\n    quant { scale \"{}.weight\" -> \"{}.wscale_inv\" }\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, from, template string }{
		{"stdlib-llama", "llama", ""},
		{"default-rules", "acme", ""},
		{"template-rules", "custom", tpl},
	} {
		args := []string{"dequantize", "-q", "--from", p(c.from), "--to", p("out-" + c.name)}
		if c.template != "" {
			args = append(args, "--template", c.template)
		}
		if code, _, stderr := run(t, "", args...); code != ExitOK {
			t.Fatalf("%s: exit %d: %s", c.name, code, stderr)
		}
	}
	want, err := os.ReadFile(filepath.Join(p("out-stdlib-llama"), safetensors.SingleFileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"default-rules", "template-rules"} {
		got, err := os.ReadFile(filepath.Join(p("out-"+name), safetensors.SingleFileName))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the dequantized tensors differ from the stdlib llama run's", name)
		}
	}
	code, _, stderr := run(t, "", "dequantize", "-q", "--from", p("custom"), "--to", p("refused"))
	if code != ExitError || !strings.Contains(stderr, `has no scale "model.layers.0.mlp.down_proj.weight_scale_inv"`) {
		t.Errorf("custom scale names without --template: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(p("refused")); err == nil {
		t.Error("a refused dequantize wrote its destination")
	}
}
