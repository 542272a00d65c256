package exec_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sync"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// The fuzz targets' success checks (fuzz_test.go) hold for any config; when
// a fuzzed config keeps the seed model's sizes, a successful conversion
// must moreover write every tensor with the exact shape the seed
// conversion writes it with: a shape the header's fuzzing changed (a
// transposed or re-split matrix of the same element count) must be
// refused, not converted.

// seedSizeKeys are the config keys that decide tensor shapes, by file.
var seedSizeKeys = map[string][]string{
	"config.json": {"hidden_size", "intermediate_size", "vocab_size", "num_attention_heads",
		"num_key_value_heads", "head_dim"},
	exec.MCAConfigName: {"hidden_size", "ffn_hidden_size", "vocab_size", "padded_vocab_size",
		"num_attention_heads", "num_query_groups", "kv_channels", "group_query_attention", "swiglu",
		"add_qkv_bias", "add_bias_linear", "gated_linear_unit", "multi_latent_attention"},
}

var (
	seedShapesOnce sync.Once
	seedShapes     struct {
		hf, mca map[string]string // "decoder.layers.*.x" -> fmt of the shape
		err     error
	}
	layerIndexRE = regexp.MustCompile(`\.layers\.\d+\.`)
)

// shapeKey names a tensor with its layer index replaced by *.
func shapeKey(name string) string { return layerIndexRE.ReplaceAllString(name, ".layers.*.") }

// seedShapeMap records the shapes of ms by shapeKey.
func seedShapeMap(ms []exec.TensorMeta) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		out[shapeKey(m.Name)] = fmt.Sprint(m.Shape)
	}
	return out
}

// loadSeedShapes learns the HF and MCA shapes of the seed model (untied).
func loadSeedShapes(t testing.TB) {
	fuzzSetup(t)
	seedShapesOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rolltpl-fuzz-shapes-")
		if err != nil {
			seedShapes.err = err
			return
		}
		defer os.RemoveAll(dir)
		src := filepath.Join(dir, "hf")
		os.MkdirAll(src, 0o755)
		writeFile(t, filepath.Join(src, "config.json"), fuzzSeeds.hfConfig)
		writeFile(t, filepath.Join(src, "model.safetensors"), fuzzSeeds.hfST)
		hc, err := exec.ReadHFCheckpoint(src)
		if err != nil {
			seedShapes.err = err
			return
		}
		seedShapes.hf = seedShapeMap(hc.Tensors)
		dst := filepath.Join(dir, "mca")
		if _, err := exec.ConvertHFToMCA(context.Background(), schemaModel(t, "llama"), src, dst, exec.Options{}); err != nil {
			seedShapes.err = err
			return
		}
		names, err := rankMetas(filepath.Join(dst, "iter_0000001", "mp_rank_00", exec.MCACheckpointPT))
		if err != nil {
			seedShapes.err = err
			return
		}
		seedShapes.mca = seedShapeMap(names)
	})
	if seedShapes.err != nil {
		t.Fatal(seedShapes.err)
	}
}

// rankMetas returns the model tensors of a rank file.
func rankMetas(path string) ([]exec.TensorMeta, error) {
	f, err := torchsave.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return exec.MCATensorMetas(f)
}

// sameSizes reports whether the fuzzed config (file name as in
// seedSizeKeys) has the seed config's value, or absence, for every key
// that decides a shape.
func sameSizes(t testing.TB, file string, fuzzed, seed []byte) bool {
	f, err1 := decodeJSON(fuzzed)
	s, err2 := decodeJSON(seed)
	if err1 != nil || err2 != nil {
		return false
	}
	for _, k := range seedSizeKeys[file] {
		fv, fok := f[k]
		sv, sok := s[k]
		if fok != sok || !reflect.DeepEqual(fv, sv) {
			return false
		}
	}
	return true
}

// checkSeedShapes fails the test when a tensor of a successful conversion
// has another shape than the seed conversion gives it, or a name the
// seed conversion does not write.
func checkSeedShapes(t *testing.T, ms []exec.TensorMeta, want map[string]string) {
	t.Helper()
	for _, m := range ms {
		w, ok := want[shapeKey(m.Name)]
		if !ok {
			t.Fatalf("converted an inconsistent checkpoint: %s is not a tensor of the model", m.Name)
		}
		if got := fmt.Sprint(m.Shape); got != w {
			t.Fatalf("converted an inconsistent checkpoint: %s has shape %s; the config's sizes give %s", m.Name, got, w)
		}
	}
}
