package stdlib_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/lang/format"
	"github.com/rolltpl/rolltpl/lang/parser"
	"github.com/rolltpl/rolltpl/stdlib"
)

// rollTypes are the 18 model types ROLL registers a template for.
var rollTypes = []string{
	"deepseek_v3", "glm4_moe", "llama", "mistral", "mixtral", "qwen2", "qwen2_5_vl", "qwen2_moe", "qwen2_vl",
	"qwen3", "qwen3_5", "qwen3_5_moe", "qwen3_moe", "qwen3_next", "qwen3_omni_moe", "qwen3_vl", "qwen3_vl_moe",
	"seed_oss",
}

// mcaConverterFields are the MCA fields formats.md §3.2 lists as relevant to
// a converter although no template sets them.
var mcaConverterFields = []string{
	"tensor_model_parallel_size", "pipeline_model_parallel_size", "virtual_pipeline_model_parallel_size",
	"expert_model_parallel_size", "expert_tensor_parallel_size", "sequence_parallel", "context_parallel_size",
	"bf16", "fp16", "transformer_impl", "moe_grouped_gemm", "moe_router_dtype",
	"account_for_embedding_in_pipeline_split", "account_for_loss_in_pipeline_split",
	"pipeline_model_parallel_layout", "moe_use_legacy_grouped_gemm", "mtp_num_layers",
	"hf_model_type", "name_or_path", "hf_config_json",
	// Computed by the DeepSeek-V3 / GLM-4-MoE templates.
	"rope_type", "rotary_scaling_factor", "mscale", "mscale_all_dim", "beta_fast", "beta_slow",
	"original_max_position_embeddings", "max_position_embeddings", "moe_shared_expert_intermediate_size",
	"moe_layer_freq", "rotary_percent",
}

func loadSchemas(t *testing.T) *schema.Set {
	t.Helper()
	set, diags := compiler.LoadSchemas(stdlib.Schemas())
	for _, d := range diags {
		t.Errorf("%s", d.Error())
	}
	if t.Failed() {
		t.FailNow()
	}
	return set
}

// rollTemplates reads ROLL's registrations, numbers kept as json.Number.
func rollTemplates(t *testing.T) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "roll", "roll-templates.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var ref struct {
		Templates map[string]map[string]any `json:"templates"`
	}
	if err := dec.Decode(&ref); err != nil {
		t.Fatal(err)
	}
	return ref.Templates
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestSchemaFilesLoad: every schema file parses, the set loads without a
// diagnostic, and every schema and field has a doc comment (what editors
// show on hover).
func TestSchemaFilesLoad(t *testing.T) {
	entries, err := fs.ReadDir(stdlib.Schemas(), ".")
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".rolltpl") {
			continue
		}
		files++
		src, err := fs.ReadFile(stdlib.Schemas(), e.Name())
		if err != nil {
			t.Fatal(err)
		}
		f, diags := parser.ParseFile(e.Name(), src)
		for _, d := range diags {
			t.Errorf("%s", d.Error())
		}
		for _, d := range f.Decls {
			if d.Schema == nil {
				t.Errorf("%s: a schema file holds only schema declarations", e.Name())
			}
		}
	}
	if files < 2 {
		t.Fatalf("only %d schema files", files)
	}
	set := loadSchemas(t)
	fields := 0
	for _, name := range set.Names() {
		s := set.Schema(name)
		if s.Doc == "" {
			t.Errorf("schema %s has no doc comment", name)
		}
		for _, fn := range s.Order {
			fields++
			if s.Fields[fn].Doc == "" {
				t.Errorf("schema %s: field %s has no doc comment", name, fn)
			}
		}
	}
	t.Logf("%d files, %d schemas, %d fields (after use splicing)", files, len(set.Schemas), fields)
}

// TestModelSchemasCoverROLL: each of ROLL's 18 model types has a schema, and
// every HF key its template maps (after the VisionTemplate / Omni prefixing)
// resolves in it.
func TestModelSchemasCoverROLL(t *testing.T) {
	set := loadSchemas(t)
	ref := rollTemplates(t)
	if len(ref) != len(rollTypes) {
		t.Errorf("ROLL registers %d templates, want %d", len(ref), len(rollTypes))
	}
	keys := 0
	for _, typ := range rollTypes {
		root := set.Schema(typ)
		if root == nil {
			t.Errorf("no schema %s", typ)
			continue
		}
		eff, _ := ref[typ]["config_hf_to_mca_effective"].(map[string]any)
		if len(eff) == 0 {
			t.Errorf("%s: no config_hf_to_mca_effective in roll-templates.json", typ)
		}
		for _, key := range sortedKeys(eff) {
			keys++
			parts := strings.Split(key, ".")
			f, at, n := set.Resolve(root, parts)
			switch {
			case f == nil:
				t.Errorf("%s: HF key %s does not resolve (stopped at %q in schema %s)", typ, key, parts[min(n, len(parts)-1)], at.Name)
			case n != len(parts):
				t.Errorf("%s: HF key %s resolves only %d of %d parts", typ, key, n, len(parts))
			case f.Type.Is("ignored"):
				t.Errorf("%s: HF key %s is ignored; HF keys ROLL maps get their real type", typ, key)
			}
		}
	}
	t.Logf("%d model types, %d mapped HF keys checked", len(rollTypes), keys)
}

// TestMCASchemaCoversROLL: every MCA key a template maps to or sets exists
// in schema mca, every constant fits its field's type, and every mapped HF
// type can be stored in its MCA field.
func TestMCASchemaCoversROLL(t *testing.T) {
	set := loadSchemas(t)
	mca := set.Schema("mca")
	if mca == nil {
		t.Fatal("no schema mca")
	}
	ref := rollTemplates(t)
	used := map[string]bool{}
	for _, typ := range rollTypes {
		maps, _ := ref[typ]["config_hf_to_mca"].(map[string]any)
		eff, _ := ref[typ]["config_hf_to_mca_effective"].(map[string]any)
		consts, _ := ref[typ]["constant_mca_config"].(map[string]any)
		for _, m := range []map[string]any{maps, eff} {
			for _, hf := range sortedKeys(m) {
				key, _ := m[hf].(string)
				used[key] = true
				if mca.Field(key) == nil {
					t.Errorf("%s: MCA key %s (from %s) is not in schema mca", typ, key, hf)
				}
			}
		}
		for _, key := range sortedKeys(consts) {
			used[key] = true
			if mca.Field(key) == nil {
				t.Errorf("%s: constant MCA key %s is not in schema mca", typ, key)
			}
		}
		// The constants as a partial mca_config.json: every other field has
		// a default, so only type mismatches can show.
		for _, p := range set.Validate("mca", consts) {
			t.Errorf("%s: constant %s", typ, p)
		}
		root := set.Schema(typ)
		if root == nil {
			continue
		}
		for _, hf := range sortedKeys(eff) {
			key, _ := eff[hf].(string)
			hfField, _, _ := set.Resolve(root, strings.Split(hf, "."))
			mcaField := mca.Field(key)
			if hfField == nil || mcaField == nil || mcaField.Type.Is("ignored") {
				continue
			}
			if !storable(set, hfField.Type, mcaField.Type) {
				t.Errorf("%s: HF %s (%s) cannot be stored in MCA %s (%s)", typ, hf, hfField.Type, key, mcaField.Type)
			}
		}
	}
	for _, key := range mcaConverterFields {
		used[key] = true
		if mca.Field(key) == nil {
			t.Errorf("converter field %s is not in schema mca", key)
		}
	}
	var ignored []string
	for _, name := range mca.Order {
		if mca.Fields[name].Type.Is("ignored") {
			ignored = append(ignored, name)
		}
	}
	want := []string{"residual_dropout", "max_position_embeddings", "linear_attention_type"}
	sort.Strings(want)
	sort.Strings(ignored)
	if strings.Join(ignored, " ") != strings.Join(want, " ") {
		t.Errorf("ignored MCA fields = %v, want %v", ignored, want)
	}
	t.Logf("schema mca: %d fields, %d of them mapped, set or listed by formats.md", len(mca.Order), len(used))
}

// storable reports whether every non-null value of HF type a can be stored
// where MCA type b is declared: same basic type, an int where a float is,
// a nested schema (an object) where a dict is, anything where any is.
func storable(set *schema.Set, a, b *schema.Type) bool {
	for _, x := range a.Alts {
		ok := false
		for _, y := range b.Alts {
			if atomStorable(set, x, y) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func atomStorable(set *schema.Set, x, y schema.Atom) bool {
	isSchema := func(a schema.Atom) bool { return !schema.BasicTypes[a.Name] }
	switch {
	case y.Name == "any" || y.Name == "ignored" || x.Name == "any":
		return true
	case x.Name == "int" && y.Name == "float":
		return true
	case isSchema(x) && (y.Name == "dict" || isSchema(y)):
		return true
	case x.Name == y.Name:
		return x.Elem == nil || y.Elem == nil || storable(set, x.Elem, y.Elem)
	}
	return false
}

// hfConfigs reads the real config.json files of testdata, numbers kept as
// json.Number.
func hfConfigs(t *testing.T) map[string]map[string]any {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "hf-configs", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no hf-configs")
	}
	out := map[string]map[string]any{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var cfg map[string]any
		if err := dec.Decode(&cfg); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[filepath.Base(p)] = cfg
	}
	return out
}

// TestHFConfigsValidate: each real config.json validates against the schema
// of its model_type with no problem.
func TestHFConfigsValidate(t *testing.T) {
	set := loadSchemas(t)
	for name, cfg := range hfConfigs(t) {
		typ, _ := cfg["model_type"].(string)
		if set.Schema(typ) == nil {
			t.Errorf("%s: no schema for model_type %q", name, typ)
			continue
		}
		for _, p := range set.Validate(typ, cfg) {
			t.Errorf("%s: %s", name, p)
		}
		if u := set.UnknownKeys(typ, cfg); len(u) > 0 {
			t.Logf("%s: keys the %s schema does not declare: %v", name, typ, u)
		}
	}
}

// TestInferAgreesWithStdlib: the schema `schema infer` prints for each real
// config.json parses and loads, the config validates against it, and every
// field it shares with the stdlib schema of that model type has a
// compatible type.
func TestInferAgreesWithStdlib(t *testing.T) {
	set := loadSchemas(t)
	for name, cfg := range hfConfigs(t) {
		typ, _ := cfg["model_type"].(string)
		text := schema.Infer(typ, cfg)
		f, diags := parser.ParseFile(name+".rolltpl", []byte(text))
		for _, d := range diags {
			t.Errorf("%s: %s", name, d.Error())
		}
		inferred, diags := schema.Load([]schema.Source{{File: f, Src: []byte(text)}})
		for _, d := range diags {
			t.Errorf("%s: %s", name, d.Error())
		}
		if t.Failed() {
			t.Fatalf("inferred text:\n%s", text)
		}
		for _, p := range inferred.Validate(typ, cfg) {
			t.Errorf("%s: config does not fit its inferred schema: %s", name, p)
		}
		shared := compareSchemas(t, name, inferred, inferred.Schema(typ), set, set.Schema(typ), "")
		t.Logf("%s: %d inferred fields, %d shared with stdlib schema %s", name, len(inferred.Schema(typ).Order), shared, typ)
	}
}

// compareSchemas checks every field of a (inferred) against the field of
// the same path in b (stdlib) and returns how many fields both have.
func compareSchemas(t *testing.T, file string, as *schema.Set, a *schema.Schema, bs *schema.Set, b *schema.Schema, path string) int {
	shared := 0
	for _, name := range a.Order {
		fa, fb := a.Fields[name], b.Field(name)
		if fb == nil {
			continue
		}
		shared++
		p := name
		if path != "" {
			p = path + "." + name
		}
		sa, sb := nestedSchema(as, fa.Type), nestedSchema(bs, fb.Type)
		if sa != nil && sb != nil {
			shared += compareSchemas(t, file, as, sa, bs, sb, p)
			continue
		}
		if !storable(bs, fa.Type, fb.Type) {
			t.Errorf("%s: %s is %s in the inferred schema but %s in the stdlib", file, p, fa.Type, fb.Type)
		}
	}
	return shared
}

func nestedSchema(set *schema.Set, t *schema.Type) *schema.Schema {
	for _, a := range t.Alts {
		if !schema.BasicTypes[a.Name] {
			return set.Schema(a.Name)
		}
	}
	return nil
}

// TestSchemaFilesFormatted: the schema files and `schema infer` output are
// in canonical layout (`rolltplc fmt -l stdlib` must list nothing), and
// the formatter lays out schema declarations: a schema written any which
// way comes back canonical (a formatter that returned schemas unchanged
// would pass the rest of the test).
func TestSchemaFilesFormatted(t *testing.T) {
	const messy = "# Doc.\nschema probe{use other\n  # Field.\n     a:int|list[int]?=null\nb : str}\n"
	const canonical = "# Doc.\nschema probe {\n    use other\n    # Field.\n    a: int | list[int]? = null\n    b: str\n}\n"
	for _, in := range []string{messy, canonical} {
		out, err := format.Source("probe.rolltpl", []byte(in))
		if err != nil || string(out) != canonical {
			t.Errorf("lang/format does not lay out schema declarations (err %v):\n%s", err, out)
		}
	}
	entries, err := fs.ReadDir(stdlib.Schemas(), ".")
	if err != nil || len(entries) == 0 {
		t.Fatalf("no schema files (%v)", err)
	}
	for _, e := range entries {
		src, err := fs.ReadFile(stdlib.Schemas(), e.Name())
		if err != nil {
			t.Fatal(err)
		}
		out, err := format.Source(e.Name(), src)
		if err != nil {
			t.Errorf("%s: %v", e.Name(), err)
			continue
		}
		if !bytes.Equal(out, src) {
			t.Errorf("%s is not formatted; run rolltplc fmt -w stdlib/schema", e.Name())
		}
	}
	for name, cfg := range hfConfigs(t) {
		text := schema.Infer("m", cfg)
		out, err := format.Source(name, []byte(text))
		if err != nil || string(out) != text {
			t.Errorf("%s: inferred schema is not in canonical layout (err %v):\n%s", name, err, out)
		}
	}
}
