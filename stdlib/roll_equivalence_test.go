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
	"strconv"
	"strings"
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
// hand-written subclass to the class the emitted module generates from
// the template instead (from its prefix rules, or its per-layer names)
// and the methods ROLL's class overrides, which the generated one must
// stand for: the class name may differ, what it computes
// (config_hf_to_mca_effective, the conversions tested in runtime/exec and
// compiler/pyemit) must not.
var generatedClass = map[string]struct {
	class     string
	overrides []any
}{
	"qwen3_omni_moe": {"KeyPrefixTemplate", []any{"adjust_config_hf_to_mca"}},
	"qwen3_next":     {"Qwen3NextTemplate", []any{"add_hf_weight", "add_mca_weight", "get_lora_conver_op"}},
	// Documented departures (stdlib/templates/qwen3_5*.rolltpl): the MTP
	// layer is converted by the MTP support's class (mtp_template) where
	// ROLL's Qwen3_5Template does it itself (same megatron-core names,
	// runtime/exec TestQwen35UnderROLL); it also takes fused MTP experts,
	// on which ROLL's fails, and names per-layer input norms right in
	// hf_name_to_mca_names.
	"qwen3_5":     {"MTPQwen35Template", []any{"add_hf_weight", "add_mca_weight", "get_lora_conver_op", "hf_name_to_mca_names"}},
	"qwen3_5_moe": {"MTPQwen35MoeTemplate", []any{"get_lora_conver_op"}},
	"deepseek_v3": {"MTPDeepseekV3Template", mtpTemplateOverrides},
	"glm4_moe":    {"MTPGlm4MoeTemplate", mtpTemplateOverrides},
}

// mtpTemplateOverrides are the methods of ROLL's DeepSeekV3Template and
// Glm4MoeTemplate: the config hooks (the templates' set statements), the
// dense layers' fused pre-MLP norm (a per-layer name) and the MTP renaming
// (mtp_first_layer: the support module's mtp_template wraps the generated
// class, naming MTP layers as megatron-core does, mtp.layers.<i>
// .mtp_model_layer.*, where ROLL's .transformer_layer names break its own
// DistConverter — a documented departure).
var mtpTemplateOverrides = []any{
	"add_hf_weight", "add_mca_weight", "convert_hf_to_mca_config_kws", "convert_mca_to_hf_config",
	"convert_mtp_name", "hf_name_to_mca_names", "revert_mtp_name",
}

// departure is an op a stdlib template registers differently from ROLL
// on purpose: ROLL's op (missing) or ours (extra), named by its HF names,
// and why. The template's comments and README's status list the same.
type departure struct {
	kind string // "missing" or "extra"
	hf   string // the op's first HF name
	why  string
}

// departures are the documented differences between the stdlib's ops and
// ROLL's, by model type. Each must occur (a departure that went away is
// reported, so the list stays true) and nothing else may differ.
var departures = map[string][]departure{
	"glm4_moe": {
		{"extra", ".self_attn.q_norm.weight", "GLM-4.5 (use_qk_norm): ROLL has no op for the q norm and fails"},
		{"extra", ".self_attn.k_norm.weight", "GLM-4.5 (use_qk_norm): ROLL has no op for the k norm and fails"},
	},
}

// expectDepartures removes typ's documented departures from the problems
// compareOps found, logging each, and reports a documented departure that
// did not occur. It returns the problems left.
func expectDepartures(t *testing.T, mode, typ string, problems []string) []string {
	t.Helper()
	var rest []string
	seen := map[int]bool{}
next:
	for _, p := range problems {
		for i, d := range departures[typ] {
			if strings.HasPrefix(p, d.kind+" op ") && strings.Contains(p, `"hf_names":[`+strconv.Quote(d.hf)) {
				seen[i] = true
				t.Logf("%s/%s: documented departure from ROLL: %s op %s: %s", mode, typ, d.kind, d.hf, d.why)
				continue next
			}
		}
		rest = append(rest, p)
	}
	for i, d := range departures[typ] {
		if !seen[i] {
			t.Errorf("%s/%s: documented departure (%s op %s) no longer occurs; update departures, the template's comments and README", mode, typ, d.kind, d.hf)
		}
	}
	return rest
}

// builtTypes are the model types the stdlib compiles to Python today.
var builtTypes = append(slices.Clone(plainTypes), "qwen3_omni_moe", "qwen3_vl_moe", "qwen3_next", "deepseek_v3", "glm4_moe", "qwen3_5", "qwen3_5_moe")

// rollImportedOps maps model types to the ops ROLL's module for them
// imports from another model's module, and that module.
var rollImportedOps = map[string]map[string]string{
	"qwen3_5_moe": {"Qwen3_5_GDNConverOp": "qwen3_5"},
}

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

// regOp is one registered op: its fields as compared (op kind, names,
// parameters; not where ROLL defines its class) in canonical JSON, and its
// op-lookup keys on each side.
type regOp struct {
	text     string
	hf, mca  []string
	position int
}

// regOps decodes a recorded weight_converters list.
func regOps(v any) ([]regOp, error) {
	var out []regOp
	for i, o := range opFields(v).([]any) {
		b, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		op := regOp{text: string(b), position: i}
		m := o.(map[string]any)
		for side, dst := range map[string]*[]string{"hf_names": &op.hf, "mca_names": &op.mca} {
			names, _ := m[side].([]any)
			for _, n := range names {
				s, ok := n.(string)
				if !ok {
					return nil, fmt.Errorf("op %d: %s holds %v, not a string", i, side, n)
				}
				*dst = append(*dst, s)
			}
		}
		out = append(out, op)
	}
	return out, nil
}

// opsOverlap reports whether ROLL's op lookup can have to choose between
// two ops by registration order: some name can be taken by a key of each,
// among the HF keys (HF -> MCA) or the MCA keys (MCA -> HF). why names the
// first such pair of keys.
func opsOverlap(a, b regOp) (why string, overlap bool, err error) {
	for _, side := range []struct {
		name   string
		ka, kb []string
	}{{"HF", a.hf, b.hf}, {"MCA", a.mca, b.mca}} {
		for _, x := range side.ka {
			for _, y := range side.kb {
				ok, err := lookupOverlap(x, y)
				if err != nil {
					return "", false, err
				}
				if ok {
					return fmt.Sprintf("%s keys %q and %q", side.name, x, y), true, nil
				}
			}
		}
	}
	return "", false, nil
}

// compareOps compares the ops a template registers with ROLL's in what
// ROLL's behaviour depends on: the same ops (kind, names, parameters) the
// same number of times, and, for every two ops whose lookup keys overlap
// (opsOverlap), the same relative order. The order of ops no name can
// reach both of is free. It returns one line per difference.
func compareOps(roll, ours any) ([]string, error) {
	want, err := regOps(roll)
	if err != nil {
		return nil, err
	}
	have, err := regOps(ours)
	if err != nil {
		return nil, err
	}
	// The k-th registration of an op in ROLL's list pairs with the k-th
	// of the same op in ours.
	byText := map[string][]int{}
	for i, op := range have {
		byText[op.text] = append(byText[op.text], i)
	}
	var problems []string
	pos := make([]int, len(want))
	for i, op := range want {
		if len(byText[op.text]) == 0 {
			problems = append(problems, fmt.Sprintf("missing op %d of ROLL's: %s", i+1, op.text))
			pos[i] = -1
			continue
		}
		pos[i] = byText[op.text][0]
		byText[op.text] = byText[op.text][1:]
	}
	for _, op := range have {
		if rest := byText[op.text]; len(rest) > 0 && rest[0] == op.position {
			problems = append(problems, fmt.Sprintf("extra op %d: %s", op.position+1, op.text))
			byText[op.text] = rest[1:]
		}
	}
	for i := range want {
		for j := i + 1; j < len(want); j++ {
			if pos[i] < 0 || pos[j] < 0 || pos[i] < pos[j] {
				continue
			}
			why, overlap, err := opsOverlap(want[i], want[j])
			if err != nil {
				return nil, err
			}
			if overlap {
				problems = append(problems, fmt.Sprintf("order: ROLL registers %s (op %d) before %s (op %d), rolltpl the other way round (ops %d and %d), and ROLL's lookup depends on it: %s overlap",
					want[i].text, i+1, want[j].text, j+1, pos[i]+1, pos[j]+1, why))
			}
		}
	}
	return problems, nil
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
			if gen, ok := generatedClass[typ]; ok {
				if diff := cmp.Diff(gen.overrides, rt["overridden_methods"]); diff != "" {
					t.Errorf("%s/%s: ROLL's class overrides other methods than the generated class stands for (-want +roll):\n%s", mode.name, typ, diff)
				}
				rt = maps.Clone(rt)
				rt["template_class"] = gen.class
			}
			// Ops ROLL defines beside a model come from that model's module,
			// or from the module ROLL's own imports them from.
			ops, _ := gt["weight_converters"].([]any)
			for _, o := range ops {
				want := "mcore_adapter.models." + fmt.Sprint(rt["module"])
				if from, ok := rollImportedOps[typ][fmt.Sprint(o.(map[string]any)["op"])]; ok {
					want = "mcore_adapter.models." + from
				}
				if mod, has := o.(map[string]any)["module"]; has && mod != want {
					t.Errorf("%s/%s: op %v is imported from %v, ROLL's template from mcore_adapter.models.%v", mode.name, typ, o.(map[string]any)["op"], mod, rt["module"])
					ok = false
				}
			}
			for _, f := range templateFields {
				want, have := rt[f], gt[f]
				if f == "weight_converters" {
					problems, err := compareOps(want, have)
					if err != nil {
						t.Fatalf("%s/%s: %v", mode.name, typ, err)
					}
					problems = expectDepartures(t, mode.name, typ, problems)
					for _, p := range problems {
						t.Errorf("%s/%s: weight_converters: %s", mode.name, typ, p)
						ok = false
					}
					continue
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

// TestCompareOpsMutations proves compareOps on ROLL's own registrations:
// swapping two adjacent ops changes the relative order of exactly that
// pair, so it must be reported exactly when their lookup keys overlap;
// dropping, adding or changing an op is always reported.
func TestCompareOpsMutations(t *testing.T) {
	swaps := map[bool]int{}
	for _, file := range []string{"roll-templates.json", "roll-templates-megatron-llama.json"} {
		ref := readReference(t, file)
		for _, typ := range slices.Sorted(maps.Keys(ref["templates"])) {
			ops, _ := ref["templates"][typ].(map[string]any)["weight_converters"].([]any)
			decoded, err := regOps(ops)
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, mutated []any, wantProblems bool) {
				t.Helper()
				problems, err := compareOps(ops, mutated)
				if err != nil {
					t.Fatal(err)
				}
				if got := len(problems) > 0; got != wantProblems {
					t.Errorf("%s/%s: %s: problems %q, want some: %v", file, typ, what, problems, wantProblems)
				}
			}
			check("unchanged", slices.Clone(ops), false)
			for i := 0; i+1 < len(ops); i++ {
				why, overlap, err := opsOverlap(decoded[i], decoded[i+1])
				if err != nil {
					t.Fatal(err)
				}
				if decoded[i].text == decoded[i+1].text {
					continue // swapping an op with its twin changes nothing
				}
				swapped := slices.Clone(ops)
				swapped[i], swapped[i+1] = swapped[i+1], swapped[i]
				check(fmt.Sprintf("swap ops %d and %d (%s)", i+1, i+2, why), swapped, overlap)
				swaps[overlap]++
			}
			for i := range ops {
				check(fmt.Sprintf("drop op %d", i+1), slices.Delete(slices.Clone(ops), i, i+1), true)
				check(fmt.Sprintf("repeat op %d", i+1), slices.Insert(slices.Clone(ops), i, ops[i]), true)
				changed := slices.Clone(ops)
				m := maps.Clone(ops[i].(map[string]any))
				m["hf_names"] = append(slices.Clone(m["hf_names"].([]any)), "x")
				changed[i] = m
				check(fmt.Sprintf("change op %d", i+1), changed, true)
			}
		}
	}
	t.Logf("adjacent swaps: %d of overlapping ops (reported), %d of independent ops (accepted)", swaps[true], swaps[false])
	if swaps[true] == 0 || swaps[false] == 0 {
		t.Errorf("ROLL's registrations exercise only one kind of swap: %v", swaps)
	}
}
