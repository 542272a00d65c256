package stdlib_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/stdlib"
)

// plainTypes are the model types whose ROLL template class is Template or
// VisionTemplate: the ones the stdlib compiles to Python today.
var plainTypes = []string{
	"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "seed_oss",
	"qwen2_vl", "qwen2_5_vl", "qwen3_vl",
}

// generatedClass maps the model types whose ROLL template class is a
// subclass overriding only adjust_config_hf_to_mca (the HF key prefixing)
// to the class the emitted module generates from the template's prefix
// rules instead: the class name differs, what it computes
// (config_hf_to_mca_effective) must not.
var generatedClass = map[string]string{
	"qwen3_omni_moe": "KeyPrefixTemplate",
}

// builtTypes are the model types the stdlib compiles to Python today.
var builtTypes = append(slices.Clone(plainTypes), "qwen3_omni_moe", "qwen3_vl_moe", "qwen3_next")

// namedSets maps ROLL's named dist configs to the stdlib's parallel sets.
var namedSets = map[string]string{
	"default_dist_config":         "default_dist_config",
	"gdn_dist_config":             "gdn_dist_config",
	"lora_config":                 "lora_dist_config",
	"lora_shared_moe_dist_config": "lora_shared_moe_dist_config",
	"lora_te_moe_config":          "lora_te_moe_dist_config",
	"megatron_llama_config":       "megatron_llama_dist_config",
	"mtp_config":                  "mtp_dist_config",
	"shared_moe_dist_config":      "shared_moe_dist_config",
	"te_moe_config":               "te_moe_dist_config",
}

func buildStdlib(t *testing.T) []pyemit.File {
	t.Helper()
	paths, err := compiler.LibPaths(stdlib.Templates())
	if err != nil {
		t.Fatal(err)
	}
	res := compiler.Compile(paths, compiler.Options{Lib: stdlib.Templates()})
	if res.Diags.HasErrors() {
		for _, d := range res.Diags {
			t.Errorf("%s", d.Error())
		}
		t.FailNow()
	}
	files, err := pyemit.Emit(res.Program)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func writeBuild(t *testing.T, files []pyemit.File) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rolltpl_build")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func python(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is required in CI")
		}
		t.Skip("python3 not found")
	}
	return py
}

func TestBuildIsDeterministic(t *testing.T) {
	a, b := buildStdlib(t), buildStdlib(t)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("two builds differ (-first +second):\n%s", diff)
	}
	var names []string
	for _, f := range a {
		names = append(names, f.Name)
	}
	want := []string{"__init__.py", "_rolltpl_support.py"}
	for _, typ := range builtTypes {
		want = append(want, typ+".py")
	}
	sort.Strings(want)
	sort.Strings(names)
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("built files mismatch (-want +got):\n%s", diff)
	}
}

func TestEmittedPythonCompiles(t *testing.T) {
	py := python(t)
	dir := writeBuild(t, buildStdlib(t))
	entries, _ := os.ReadDir(dir)
	args := []string{"-m", "py_compile"}
	for _, e := range entries {
		args = append(args, filepath.Join(dir, e.Name()))
	}
	if out, err := exec.Command(py, args...).CombinedOutput(); err != nil {
		t.Fatalf("py_compile failed: %v\n%s", err, out)
	}
}

// registrations runs the recording harness over a build and decodes what
// the modules registered.
func registrations(t *testing.T, py, dir, mode string) map[string]map[string]any {
	t.Helper()
	cmd := exec.Command(py, filepath.Join("testdata", "record_registrations.py"), dir, mode)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("recording harness (%s) failed: %v\n%s", mode, err, stderr.String())
	}
	var got map[string]map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return got
}

func readReference(t *testing.T, name string) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "roll", name))
	if err != nil {
		t.Fatal(err)
	}
	var ref map[string]map[string]any
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// templateFields are the registration fields compared with ROLL's.
var templateFields = []string{
	"template_class", "hf_layer_prefix", "hf_moe_prefix", "hf_invalid_keys", "config_hf_to_mca",
	"config_hf_to_mca_effective", "config_mca_to_hf", "constant_mca_config", "constant_hf_config",
	"other_kwargs", "weight_converters",
}

// opFields drops what describes ROLL's class hierarchy rather than the
// registration ("bases").
func opFields(v any) any {
	ops, _ := v.([]any)
	out := make([]any, len(ops))
	for i, o := range ops {
		m := map[string]any{}
		for k, x := range o.(map[string]any) {
			if k != "bases" && k != "module" {
				m[k] = x
			}
		}
		out[i] = m
	}
	return out
}

// TestRegistrationsEqualROLL imports every emitted module under recording
// stand-ins for mcore_adapter and compares what it registers, field by
// field, with what ROLL itself registers, in both is_megatron_llama() modes.
func TestRegistrationsEqualROLL(t *testing.T) {
	py := python(t)
	dir := writeBuild(t, buildStdlib(t))
	for _, mode := range []struct{ name, ref string }{
		{"core", "roll-templates.json"},
		{"megatron_llama", "roll-templates-megatron-llama.json"},
	} {
		got := registrations(t, py, dir, mode.name)
		ref := readReference(t, mode.ref)
		equal := 0
		for _, typ := range builtTypes {
			ok := true
			gt, _ := got["templates"][typ].(map[string]any)
			rt, _ := ref["templates"][typ].(map[string]any)
			if gt == nil {
				t.Errorf("%s/%s: not registered", mode.name, typ)
				continue
			}
			if class, gen := generatedClass[typ]; gen {
				if diff := cmp.Diff([]any{"adjust_config_hf_to_mca"}, rt["overridden_methods"]); diff != "" {
					t.Errorf("%s/%s: ROLL's class overrides more than the key prefixing (-want +roll):\n%s", mode.name, typ, diff)
				}
				rt = maps.Clone(rt)
				rt["template_class"] = class
			}
			// Ops ROLL defines beside a model come from that model's module.
			ops, _ := gt["weight_converters"].([]any)
			for _, o := range ops {
				if mod, has := o.(map[string]any)["module"]; has && mod != "mcore_adapter.models."+fmt.Sprint(rt["module"]) {
					t.Errorf("%s/%s: op %v is imported from %v, ROLL's template from mcore_adapter.models.%v", mode.name, typ, o.(map[string]any)["op"], mod, rt["module"])
					ok = false
				}
			}
			for _, f := range templateFields {
				want, have := rt[f], gt[f]
				if f == "weight_converters" {
					want, have = opFields(want), opFields(have)
				}
				if diff := cmp.Diff(want, have); diff != "" {
					t.Errorf("%s/%s: %s mismatch (-roll +rolltpl):\n%s", mode.name, typ, f, diff)
					ok = false
				}
			}
			if diff := cmp.Diff(ref["dist_configs"][typ], got["dist_configs"][typ]); diff != "" {
				t.Errorf("%s/%s: dist config mismatch (-roll +rolltpl):\n%s", mode.name, typ, diff)
				ok = false
			}
			if ok {
				equal++
			}
		}
		t.Logf("%s: %d/%d templates register exactly what ROLL registers", mode.name, equal, len(builtTypes))
		for rollName, ours := range namedSets {
			if diff := cmp.Diff(ref["named_dist_configs"][rollName], got["named_dist_configs"][ours]); diff != "" {
				t.Errorf("%s: named set %s (ours %s) mismatch (-roll +rolltpl):\n%s", mode.name, rollName, ours, diff)
			}
		}
	}
}
