package exec_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/stdlib"
)

// compileTemplate compiles one template file's text (with the stdlib as
// its library) and returns the model for name.
func compileTemplate(t *testing.T, text, name string) *exec.Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.rolltpl")
	writeFile(t, path, []byte(text))
	res := compiler.Compile([]string{path}, compiler.Options{Lib: stdlib.Templates()})
	if res.Diags.HasErrors() {
		t.Fatalf("%v", res.Diags)
	}
	m, err := exec.NewModel(res.Program, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTemplateDigest checks that the digest of a template follows what it
// does, not how it is written: a copy of a stdlib template, reformatted
// and commented, has the stdlib's digest; any change of a name, a
// constant, a config mapping or the parallel classification changes it;
// build flags do not.
func TestTemplateDigest(t *testing.T) {
	src, err := stdlib.Templates().Open("llama.rolltpl")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := src.Stat()
	b := make([]byte, st.Size())
	if _, err := src.Read(b); err != nil {
		t.Fatal(err)
	}
	src.Close()
	text := string(b)
	want := stdlibModel(t, "llama").TemplateDigest()
	if len(want) != 64 {
		t.Fatalf("digest %q is not a hex SHA-256", want)
	}
	for _, c := range []struct {
		name string
		edit func(string) string
		same bool
	}{
		{"copy", func(s string) string { return s }, true},
		{"reformatted", func(s string) string {
			return "# a comment\n\n" + strings.ReplaceAll(strings.ReplaceAll(s, "    ", "\t"), "\n", "\n\n")
		}, true},
		{"constant", func(s string) string {
			return strings.Replace(s, "mca { use rope }", "mca { use rope\n add_qkv_bias = true }", 1)
		}, false},
		{"config map", func(s string) string { return strings.Replace(s, "rope_scaling -> rope_scaling", "", 1) }, false},
		{"ignored name", func(s string) string {
			return strings.Replace(s, ".self_attn.rotary_emb.inv_freq", ".self_attn.rotary_emb.inv_freq2", 1)
		}, false},
		{"layer prefix", func(s string) string { return strings.Replace(s, `"model.layers."`, `"model.layer."`, 1) }, false},
		{"parallel", func(s string) string {
			return strings.Replace(s, "parallel { use default }", `parallel { use default
 duplicated ".extra.weight" }`, 1)
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			edited := c.edit(text)
			if edited == text && !c.same {
				t.Fatal("the edit changed nothing")
			}
			got := compileTemplate(t, edited, "llama").TemplateDigest()
			if (got == want) != c.same {
				t.Errorf("digest %s, stdlib llama %s; want same = %v", got, want, c.same)
			}
		})
	}
	flagged, err := exec.NewModel(stdlibProgram(t), "llama", map[string]bool{"megatron_llama": true})
	if err != nil {
		t.Fatal(err)
	}
	if got := flagged.TemplateDigest(); got != want {
		t.Errorf("megatron_llama changed the digest: %s, want %s", got, want)
	}
}

// TestTemplateDigestFields fails when ir.Template gains or loses a field:
// the digest (runtime/exec/stamp.go templateDigest) must then be
// reviewed, since a field it does not encode would let two templates
// that convert differently share a digest.
func TestTemplateDigestFields(t *testing.T) {
	var got []string
	rt := reflect.TypeOf(ir.Template{})
	for i := range rt.NumField() {
		got = append(got, rt.Field(i).Name)
	}
	slices.Sort(got)
	// Span, NameSpan and File are source positions; Parallel is encoded
	// as the merged classification.
	want := []string{"Config", "Constants", "ExpertPrefix", "File", "Invalid", "KeyPrefixes", "LayerPrefix", "MTP", "Name", "NameSpan", "Ops", "Parallel", "QuantDefault", "Scales", "Sets", "Span"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ir.Template fields changed (-known +now); update templateDigest:\n%s", diff)
	}
}

// TestRecordedTemplate checks the template record of mca_config.json and
// CheckRecordedTemplate.
func TestRecordedTemplate(t *testing.T) {
	m := stdlibModel(t, "qwen2")
	hf, err := os.ReadFile("../../stdlib/testdata/hf-configs/qwen2.5-0.5b.json")
	if err != nil {
		t.Fatal(err)
	}
	mc, err := exec.BuildMCAConfig(m, hf, "config.json", "src", exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	name, digest, ok := mc.RecordedTemplate()
	if !ok || name != "qwen2" || digest != m.TemplateDigest() {
		t.Errorf("recorded %q %q %v, want qwen2 %s", name, digest, ok, m.TemplateDigest())
	}
	if err := exec.CheckRecordedTemplate(m, mc, "mca_config.json"); err != nil {
		t.Errorf("same template: %v", err)
	}
	changed := compileTemplate(t, `import "common"
import "parallel"
template qwen2 {
    layer_prefix = "model.layers."
    config { use llm }
    mca { use rope }
    weights { use llama_decoder
        use qkv }
    parallel { use default }
}`, "qwen2")
	err = exec.CheckRecordedTemplate(changed, mc, "mca_config.json")
	if err == nil || !strings.Contains(err.Error(), "changed since") {
		t.Errorf("changed template: err = %v", err)
	}
	other := stdlibModel(t, "llama")
	if err := exec.CheckRecordedTemplate(other, mc, "mca_config.json"); err == nil || !strings.Contains(err.Error(), `records the template "qwen2", but the template given is "llama"`) {
		t.Errorf("other template: err = %v", err)
	}
	mc.Object().Delete(exec.TemplateKey)
	if err := exec.CheckRecordedTemplate(other, mc, "mca_config.json"); err != nil {
		t.Errorf("no record: %v", err)
	}
}

// TestRunID checks the run id recorded by HF → MCA: the same for a copy
// of the source at another path and for a rerun, different for other
// weights with the same headers, another layout or another template.
func TestRunID(t *testing.T) {
	dir := t.TempDir()
	src, cp, other := filepath.Join(dir, "hf"), filepath.Join(dir, "copy"), filepath.Join(dir, "other")
	synthDeep("llama", tensor.BF16).write(t, src, 2, 21)
	synthDeep("llama", tensor.BF16).write(t, other, 2, 22)
	if err := copyDir(src, cp); err != nil {
		t.Fatal(err)
	}
	m := stdlibModel(t, "llama")
	n := 0
	run := func(m *exec.Model, src string, l exec.Layout) string {
		t.Helper()
		n++
		out := filepath.Join(dir, fmt.Sprint("out", n))
		if _, err := exec.ConvertHFToMCA(context.Background(), m, src, out, exec.Options{Layout: l}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(out, exec.MCAConfigName))
		if err != nil {
			t.Fatal(err)
		}
		mc, err := exec.ParseMCAConfig(out, b)
		if err != nil {
			t.Fatal(err)
		}
		id, ok := mc.String(exec.RunKey)
		if !ok || len(id) != 64 {
			t.Fatalf("%s: run id %q", out, id)
		}
		return id
	}
	base := run(m, src, exec.Layout{})
	changed := compileTemplate(t, `import "common"
import "parallel"
template llama {
    layer_prefix = "model.layers."
    config { use llm
        intermediate_size -> ffn_hidden_size }
    mca { use rope }
    weights {
        ignore ".self_attn.rotary_emb.inv_freq"
        use llama_decoder
        use qkv
    }
    parallel { use default }
}`, "llama")
	for _, c := range []struct {
		name string
		id   string
		same bool
	}{
		{"rerun", run(m, src, exec.Layout{}), true},
		{"copy at another path", run(m, cp, exec.Layout{}), true},
		{"other weights, same headers", run(m, other, exec.Layout{}), false},
		{"other layout", run(m, src, exec.Layout{PP: 2}), false},
		{"other template", run(changed, src, exec.Layout{}), false},
	} {
		if (c.id == base) != c.same {
			t.Errorf("%s: run id %s, base %s; want same = %v", c.name, c.id, base, c.same)
		}
	}
}
