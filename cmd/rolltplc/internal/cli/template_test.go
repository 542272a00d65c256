package cli

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/stdlib"
)

// llamaTemplate returns the stdlib llama template's source with the
// template renamed to name (the same conversion under another name).
func llamaTemplate(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(stdlib.Templates(), "llama.rolltpl")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(string(b), "template llama {", "template "+name+" {", 1)
}

// setModelType rewrites config.json's model_type ("" removes it).
func setModelType(t *testing.T, dir, mt string) {
	t.Helper()
	path := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if mt == "" {
		delete(cfg, "model_type")
	} else {
		cfg["model_type"] = mt
	}
	b, _ = json.Marshal(cfg)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// editMCAConfig sets key in mca_config.json (nil removes it).
func editMCAConfig(t *testing.T, dir, key string, v any) {
	t.Helper()
	path := filepath.Join(dir, exec.MCAConfigName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if v == nil {
		delete(cfg, key)
	} else {
		cfg[key] = v
	}
	b, _ = json.Marshal(cfg)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConvertTemplateChoice checks how convert picks the template:
// --template and --model-type must agree with each other and with the
// checkpoint's model type; MCA -> HF takes the template recorded in
// mca_config.json, checking the stdlib's is still the same, and asks for
// --template otherwise.
func TestConvertTemplateChoice(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	writeLlama(t, hf)
	noType := filepath.Join(dir, "hf-notype")
	writeLlama(t, noType)
	setModelType(t, noType, "")
	mine := filepath.Join(dir, "hf-mine")
	writeLlama(t, mine)
	setModelType(t, mine, "my_llama")
	myTemplate := filepath.Join(dir, "my_llama.rolltpl")
	os.WriteFile(myTemplate, []byte(llamaTemplate(t, "my_llama")), 0o644)
	changedTemplate := filepath.Join(dir, "changed.rolltpl")
	os.WriteFile(changedTemplate, []byte(strings.Replace(llamaTemplate(t, "my_llama"), "rope_scaling -> rope_scaling", "", 1)), 0o644)
	llamaCopy := filepath.Join(dir, "llama.rolltpl")
	os.WriteFile(llamaCopy, []byte(llamaTemplate(t, "llama")), 0o644)

	// MCA checkpoints for the MCA -> HF cases.
	mcaStd, mcaMine := filepath.Join(dir, "mca-std"), filepath.Join(dir, "mca-mine")
	if code, _, stderr := run(t, "", "convert", "-q", "--from", hf, "--to", mcaStd); code != ExitOK {
		t.Fatalf("HF -> MCA: %s", stderr)
	}
	if code, _, stderr := run(t, "", "convert", "-q", "--from", mine, "--to", mcaMine, "--template", myTemplate); code != ExitOK {
		t.Fatalf("HF -> MCA with my template: %s", stderr)
	}
	mcaChanged := filepath.Join(dir, "mca-changed")
	if err := copyTree(mcaStd, mcaChanged); err != nil {
		t.Fatal(err)
	}
	editMCAConfig(t, mcaChanged, exec.TemplateDigestKey, strings.Repeat("0", 64))
	mcaROLL := filepath.Join(dir, "mca-roll") // as ROLL writes it: no record
	if err := copyTree(mcaStd, mcaROLL); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{exec.TemplateKey, exec.TemplateDigestKey} {
		editMCAConfig(t, mcaROLL, k, nil)
	}

	mcaNoType := filepath.Join(dir, "mca-notype") // the record names the template
	if err := copyTree(mcaStd, mcaNoType); err != nil {
		t.Fatal(err)
	}
	editMCAConfig(t, mcaNoType, "hf_model_type", nil)

	n := 0
	for _, c := range []struct {
		name string
		args []string
		ok   bool
		want []string // in stderr
	}{
		// HF -> MCA.
		{"stdlib", []string{"--from", hf}, true, nil},
		{"--model-type agrees", []string{"--from", hf, "--model-type", "llama"}, true, nil},
		{"--model-type of another stdlib template", []string{"--from", hf, "--model-type", "mistral"}, false,
			[]string{`--model-type "mistral" conflicts with`, `config.json's model_type "llama"`}},
		{"template of another model type", []string{"--from", hf, "--template", myTemplate}, false,
			[]string{myTemplate + ` has no template for model type "llama"`, `config.json's model_type`, `only for "my_llama"`}},
		{"--template and --model-type conflict", []string{"--from", mine, "--template", myTemplate, "--model-type", "llama"}, false,
			[]string{`--model-type "llama" conflicts with`}},
		{"--template and --model-type conflict, no model_type", []string{"--from", noType, "--template", myTemplate, "--model-type", "llama"}, false,
			[]string{myTemplate + ` has no template for model type "llama" (--model-type)`}},
		{"--template names the type", []string{"--from", noType, "--template", myTemplate}, true, nil},
		{"--model-type names the type", []string{"--from", noType, "--model-type", "llama"}, true, nil},
		{"no type at all", []string{"--from", noType}, false, []string{"no model_type; pass --model-type"}},
		// MCA -> HF.
		{"recorded stdlib template", []string{"--from", mcaStd}, true, nil},
		{"recorded user template", []string{"--from", mcaMine}, false,
			[]string{`converted with the template "my_llama", which is not in the stdlib`, "pass --template"}},
		{"recorded user template given", []string{"--from", mcaMine, "--template", myTemplate}, true, nil},
		{"recorded user template changed", []string{"--from", mcaMine, "--template", changedTemplate}, true,
			[]string{"warning:", `records the template "my_llama" with sha256`, "changed since", "converting with " + changedTemplate}},
		{"stdlib template changed since", []string{"--from", mcaChanged}, false,
			[]string{"changed since", `the stdlib template "llama" is not the one the checkpoint was converted with: pass --template`}},
		{"stdlib template changed since, --template given", []string{"--from", mcaChanged, "--template", llamaCopy}, true,
			[]string{"warning:", "changed since"}},
		{"MCA --model-type conflicts", []string{"--from", mcaStd, "--model-type", "mistral"}, false,
			[]string{`--model-type "mistral" conflicts with`, `hf_model_type "llama"`}},
		{"no record (ROLL, Megatron)", []string{"--from", mcaROLL}, true, nil},
		{"no hf_model_type, recorded template", []string{"--from", mcaNoType}, true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			n++
			out := filepath.Join(dir, "out", c.name)
			code, _, stderr := run(t, "", append([]string{"convert", "-q", "--to", out}, c.args...)...)
			if (code == ExitOK) != c.ok {
				t.Errorf("exit %d, want ok = %v:\n%s", code, c.ok, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if c.want == nil && stderr != "" {
				t.Errorf("stderr: %s", stderr)
			}
			if _, err := os.Stat(out); (err == nil) != c.ok {
				t.Errorf("output written: %v, want %v", err == nil, c.ok)
			}
		})
	}
}

// copyTree copies the regular files under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}
