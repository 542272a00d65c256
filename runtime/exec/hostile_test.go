package exec_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
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
		{"tensor_model_parallel_size", "4294967296", `tensor_model_parallel_size is 4294967296; want an integer from 1 to 65536`, nil},
		{"pipeline_model_parallel_size", "4294967296", `pipeline_model_parallel_size is 4294967296`, nil},
		{"expert_model_parallel_size", "-1", `expert_model_parallel_size is -1`, nil},
		{"virtual_pipeline_model_parallel_size", "100000000", `virtual_pipeline_model_parallel_size is 100000000`, nil},
		{"expert_tensor_parallel_size", "1e9", `expert_tensor_parallel_size is 1e9; want an integer`, nil},
		// Each size is in range; the rank files are too many.
		{"tensor_model_parallel_size", "256", `tensor_model_parallel_size 256 × pipeline_model_parallel_size 256 × expert_model_parallel_size 2 = 131072 rank files, more than 65536`,
			map[string]string{"pipeline_model_parallel_size": "256", "expert_model_parallel_size": "2"}},
		{"num_layers", "1000000000", `num_layers is 1000000000; want an integer from 1 to 65536`, nil},
		{"num_layers", "1e9", `num_layers is 1e9`, nil},
		{"num_layers", `"3"`, `num_layers is a string "3"; want an integer`, nil},
		{"num_layers", "3.5", `num_layers is 3.5`, nil},
		{"num_layers", "null", `num_layers is null`, nil},
		{"num_layers", "0", `num_layers is 0`, nil},
		{"num_moe_experts", "4294967296", `num_moe_experts is 4294967296`, nil},
		{"hidden_size", "0", `hidden_size is 0`, nil},
		{"hidden_size", "99999999999999999999", `hidden_size is 99999999999999999999`, nil},
		{"num_attention_heads", "[8]", `num_attention_heads is an array \[8\]`, nil},
		{"swiglu", `"yes"`, `swiglu is a string "yes"; want true or false`, nil},
		{"tie_embeddings_and_output_weights", "1", `tie_embeddings_and_output_weights is a number 1`, nil},
		{"transformer_impl", `"fast"`, `transformer_impl is "fast"`, nil},
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
		{"num_hidden_layers", "3", `num_hidden_layers \(mca_config num_layers\) is a string "3"; want an integer`},
		{"num_hidden_layers", 3.5, `num_hidden_layers \(mca_config num_layers\) is 3\.5`},
		{"num_hidden_layers", nil, `num_hidden_layers \(mca_config num_layers\) is null`},
		{"num_hidden_layers", 0, `num_hidden_layers \(mca_config num_layers\) is 0`},
		{"num_hidden_layers", 1_000_000_000, `num_hidden_layers \(mca_config num_layers\) is 1000000000; want an integer from 1 to 65536`},
		{"hidden_size", 0, `hidden_size is 0`},
		{"num_attention_heads", -8, `num_attention_heads is -8`},
		{"vocab_size", 1 << 40, `vocab_size \(mca_config padded_vocab_size\) is 1099511627776`},
		{"tie_word_embeddings", "yes", `tie_word_embeddings \(mca_config tie_embeddings_and_output_weights\) is a string "yes"; want true or false`},
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
		{exec.Layout{TP: 1 << 32}, `tp=4294967296 is larger than 65536`},
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
