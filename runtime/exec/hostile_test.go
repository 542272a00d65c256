package exec_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/stdlib"
)

// Hostile config values: every size or count read from mca_config.json or
// config.json is checked (type and range) before anything is sized from
// it, and the error names the file and the key.

// allocBound is the most a refused conversion may allocate.
const allocBound = 256 << 20

// allocated runs f and returns the bytes it allocated.
func allocated(f func()) uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	f()
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc - before
}

// setMCAValue replaces the value of key in an mca_config.json by raw JSON
// text (adding the key when absent).
func setMCAValue(t *testing.T, path, key, raw string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^  "` + regexp.QuoteMeta(key) + `": .*?(,?)$`)
	s := string(b)
	if re.MatchString(s) {
		s = re.ReplaceAllString(s, `  "`+key+`": `+raw+`$1`)
	} else {
		s = strings.Replace(s, "{\n", "{\n  \""+key+"\": "+raw+",\n", 1)
	}
	writeFile(t, path, []byte(s))
}

func TestHostileMCAConfig(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthFor("llama", tensor.BF16).write(t, src, 1, 3)
	m := stdlibModel(t, "llama")
	mca := filepath.Join(dir, "mca")
	if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(filepath.Join(mca, exec.MCAConfigName))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key, raw, want string
		also           map[string]string // more keys to set
	}{
		{"tensor_model_parallel_size", "4294967296", `tensor_model_parallel_size is 4294967296: want an integer from 1 to 65536`, nil},
		{"pipeline_model_parallel_size", "4294967296", `pipeline_model_parallel_size is 4294967296`, nil},
		{"expert_model_parallel_size", "-1", `expert_model_parallel_size is -1`, nil},
		{"virtual_pipeline_model_parallel_size", "100000000", `virtual_pipeline_model_parallel_size is 100000000`, nil},
		{"expert_tensor_parallel_size", "1e9", `expert_tensor_parallel_size is 1e9: got float, want an integer`, nil},
		// Each size is in range; the rank files are too many.
		{"tensor_model_parallel_size", "256", `tensor_model_parallel_size 256 × pipeline_model_parallel_size 256 × expert_model_parallel_size 2 = 131072 rank files, more than 65536`,
			map[string]string{"pipeline_model_parallel_size": "256", "expert_model_parallel_size": "2"}},
		{"num_layers", "1000000000", `num_layers is 1000000000: want an integer from 1 to 65536`, nil},
		{"num_layers", "1e9", `num_layers is 1e9`, nil},
		{"num_layers", `"3"`, `num_layers is "3": got string, want an integer`, nil},
		{"num_layers", "3.5", `num_layers is 3.5`, nil},
		{"num_layers", "null", `num_layers is null`, nil},
		{"num_layers", "0", `num_layers is 0`, nil},
		{"num_moe_experts", "4294967296", `num_moe_experts is 4294967296`, nil},
		{"hidden_size", "0", `hidden_size is 0`, nil},
		{"hidden_size", "99999999999999999999", `hidden_size is 99999999999999999999`, nil},
		{"num_attention_heads", "[8]", `num_attention_heads is \[8\]: got list`, nil},
		{"swiglu", `"yes"`, `swiglu is "yes": got string, want true or false`, nil},
		{"tie_embeddings_and_output_weights", "1", `tie_embeddings_and_output_weights is 1: got int, want true or false`, nil},
		{"transformer_impl", `"fast"`, `transformer_impl is "fast": want one of \["transformer_engine" "local"\]`, nil},
		{"layer_types", `["full_attention"]`, `layer_types has 1 entries but num_layers is 3`, nil},
	} {
		t.Run(tc.key+"="+tc.raw, func(t *testing.T) {
			cfg := filepath.Join(mca, exec.MCAConfigName)
			writeFile(t, cfg, orig)
			setMCAValue(t, cfg, tc.key, tc.raw)
			for k, v := range tc.also {
				setMCAValue(t, cfg, k, v)
			}
			back := filepath.Join(dir, "back")
			var err error
			n := allocated(func() {
				_, err = exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{})
			})
			if err == nil {
				t.Fatal("converted")
			}
			for _, re := range []string{`mca_config\.json: `, tc.want} {
				if !regexp.MustCompile(re).MatchString(err.Error()) {
					t.Errorf("error %q does not match %q", err, re)
				}
			}
			if n > allocBound {
				t.Errorf("allocated %d MB", n>>20)
			}
			if _, err := os.Stat(back); !os.IsNotExist(err) {
				t.Errorf("destination created: %v", err)
			}
		})
	}
}

// TestHostileHFConfig: convert validates the config.json values it copies
// into mca_config.json, naming config.json and the HF key.
func TestHostileHFConfig(t *testing.T) {
	m := stdlibModel(t, "llama")
	for _, tc := range []struct {
		key  string
		val  any
		want string
	}{
		{"num_hidden_layers", "3", `num_hidden_layers is "3": got string, want an integer from 1 to 65536 \(for MCA num_layers\) \[hf-config-type\]`},
		{"num_hidden_layers", 3.5, `num_hidden_layers is 3\.5: got float`},
		{"num_hidden_layers", nil, `num_hidden_layers is null: got null`},
		{"num_hidden_layers", 0, `num_hidden_layers is 0: want an integer from 1 to 65536 \(for MCA num_layers\) \[hf-config-range\]`},
		{"num_hidden_layers", 1_000_000_000, `num_hidden_layers is 1000000000: want an integer from 1 to 65536`},
		{"hidden_size", 0, `hidden_size is 0`},
		{"num_attention_heads", -8, `num_attention_heads is -8`},
		{"vocab_size", int64(1 << 40), `vocab_size is 1099511627776: want an integer from 1 to 67108864 or null \(for MCA padded_vocab_size\)`},
		{"tie_word_embeddings", "yes", `tie_word_embeddings is "yes": got string, want true or false or null \(for MCA tie_embeddings_and_output_weights\)`},
	} {
		t.Run(tc.key, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "hf")
			s := synthFor("llama", tensor.BF16)
			s.config[tc.key] = tc.val
			s.write(t, src, 1, 3)
			dst := filepath.Join(dir, "mca")
			var err error
			n := allocated(func() {
				_, err = exec.ConvertHFToMCA(context.Background(), m, src, dst, exec.Options{})
			})
			if err == nil {
				t.Fatal("converted")
			}
			for _, re := range []string{`hf/config\.json: `, tc.want} {
				if !regexp.MustCompile(re).MatchString(err.Error()) {
					t.Errorf("error %q does not match %q", err, re)
				}
			}
			if n > allocBound {
				t.Errorf("allocated %d MB", n>>20)
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Errorf("destination created: %v", err)
			}
		})
	}
}

// TestHostileLayout: parallel sizes given to convert are bounded, alone
// and as products.
func TestHostileLayout(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthFor("llama", tensor.BF16).write(t, src, 1, 3)
	m := stdlibModel(t, "llama")
	for _, tc := range []struct {
		l    exec.Layout
		want string
	}{
		{exec.Layout{TP: 1 << 30}, `tp=1073741824 is larger than 65536`},
		{exec.Layout{VPP: 1 << 30}, `vpp=1073741824 is larger than 65536`},
		{exec.Layout{TP: 1 << 16, PP: 1 << 16}, `tp=65536 × pp=65536 × ep=1 = 4294967296 rank files, more than 65536`},
		{exec.Layout{PP: 1 << 10, VPP: 1 << 10}, `pp=1024 × vpp=1024 = 1048576 pipeline stages`},
	} {
		var err error
		n := allocated(func() {
			_, err = exec.ConvertHFToMCA(context.Background(), m, src, filepath.Join(dir, "mca"), exec.Options{Layout: tc.l})
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.l, err, tc.want)
		}
		if n > allocBound {
			t.Errorf("%+v: allocated %d MB", tc.l, n>>20)
		}
	}
}

var (
	schemaOnce sync.Once
	schemaProg *ir.Program
	schemaErr  error
)

// schemaModel returns the stdlib model compiled with the config schemas,
// as rolltplc compiles it: the HF config keys carry their schema types.
func schemaModel(t testing.TB, name string) *exec.Model {
	t.Helper()
	schemaOnce.Do(func() {
		paths, err := compiler.LibPaths(stdlib.Templates())
		if err != nil {
			schemaErr = err
			return
		}
		res := compiler.Compile(paths, compiler.Options{Lib: stdlib.Templates(), SchemaLib: compiler.LoadSchemaLibrary(stdlib.Schemas())})
		if res.Diags.HasErrors() {
			schemaErr = fmt.Errorf("stdlib: %v", res.Diags)
			return
		}
		schemaProg = res.Program
	})
	if schemaErr != nil {
		t.Fatal(schemaErr)
	}
	m, err := exec.NewModel(schemaProg, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHFConfigSameChecks: compiled with the config schemas (as rolltplc
// does), convert refuses what `check --hf-config` refuses, with the same
// codes: a value of the wrong schema type, even where no MCA rule
// applies (rms_norm_eps "x"), and a value out of range for its MCA key.
func TestHFConfigSameChecks(t *testing.T) {
	m := schemaModel(t, "llama")
	for _, tc := range []struct {
		key  string
		val  any
		want string
	}{
		{"rms_norm_eps", "x", `rms_norm_eps is "x": got string, want float \[hf-config-type\]`},
		{"num_hidden_layers", 2.0, `num_hidden_layers is 2\.0: got float, want int \[hf-config-type\]`},
		{"num_hidden_layers", -3, `num_hidden_layers is -3: want an integer from 1 to 65536 \(for MCA num_layers\) \[hf-config-range\]`},
		{"tie_word_embeddings", "yes", `tie_word_embeddings is "yes": got string, want bool \[hf-config-type\]`},
	} {
		dir := t.TempDir()
		src := filepath.Join(dir, "hf")
		s := synthFor("llama", tensor.BF16)
		s.write(t, src, 1, 3)
		cfg := string(readAll(t, filepath.Join(src, "config.json")))
		// json.Marshal writes 2.0 as 2; write the value as text.
		val := fmt.Sprintf("%v", tc.val)
		switch v := tc.val.(type) {
		case string:
			val = fmt.Sprintf("%q", v)
		case float64:
			val = strconv.FormatFloat(v, 'f', 1, 64)
		}
		re := regexp.MustCompile(`"` + tc.key + `": [^,\n]*`)
		writeFile(t, filepath.Join(src, "config.json"), []byte(re.ReplaceAllString(cfg, `"`+tc.key+`": `+val)))
		_, err := exec.ConvertHFToMCA(context.Background(), m, src, filepath.Join(dir, "mca"), exec.Options{})
		if err == nil || !regexp.MustCompile(`hf/config\.json: `+tc.want).MatchString(err.Error()) {
			t.Errorf("%s %v: error %v, want %s", tc.key, tc.val, err, tc.want)
		}
	}
}
