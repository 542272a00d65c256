package safetensors

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// writeSharded writes a two-shard checkpoint into a new directory and
// returns the directory and the specs per shard.
func writeSharded(t *testing.T) (string, map[string][]Spec) {
	t.Helper()
	dir := t.TempDir()
	shards := map[string][]Spec{
		"model-00001-of-00002.safetensors": {
			{"model.embed_tokens.weight", tensor.BF16, tensor.Shape{8, 4}},
			{"model.layers.0.self_attn.q_proj.weight", tensor.BF16, tensor.Shape{4, 4}},
		},
		"model-00002-of-00002.safetensors": {
			{"lm_head.weight", tensor.BF16, tensor.Shape{8, 4}},
			{"model.norm.weight", tensor.F32, tensor.Shape{4}},
		},
	}
	wm := make(map[string]string)
	var total int64
	for shard, specs := range shards {
		writeSample(t, filepath.Join(dir, shard), specs, map[string]string{"format": "pt"})
		for _, s := range specs {
			wm[s.Name] = shard
			total += byteSize(s.DType, s.Shape)
		}
	}
	if err := WriteIndex(filepath.Join(dir, IndexFileName), wm, total); err != nil {
		t.Fatal(err)
	}
	return dir, shards
}

func TestShardedRoundTrip(t *testing.T) {
	t.Parallel()
	dir, shards := writeSharded(t)
	ixPath := filepath.Join(dir, IndexFileName)

	got, err := os.ReadFile(ixPath)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "metadata": {
    "total_size": 176
  },
  "weight_map": {
    "lm_head.weight": "model-00002-of-00002.safetensors",
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
    "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
    "model.norm.weight": "model-00002-of-00002.safetensors"
  }
}
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("index mismatch (-want +got):\n%s", diff)
	}

	ix, err := ReadIndex(ixPath)
	if err != nil {
		t.Fatal(err)
	}
	if ix.TotalSize != 176 || len(ix.WeightMap) != 4 {
		t.Errorf("ReadIndex = %+v", ix)
	}
	if diff := cmp.Diff([]string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}, ix.Shards()); diff != "" {
		t.Errorf("Shards mismatch (-want +got):\n%s", diff)
	}

	s, err := OpenSharded(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var names []string
	for _, st := range s.Tensors() {
		names = append(names, filepath.Base(st.File.Path())+":"+st.Name)
		b, _ := sample(st.DType, int(st.Shape.NumElements()))
		if diff := cmp.Diff(b, st.File.Data(st.TensorInfo)); diff != "" {
			t.Errorf("%s: data mismatch (-want +got):\n%s", st.Name, diff)
		}
		if lt, ok := s.Lookup(st.Name); !ok || lt.File != st.File || !cmp.Equal(lt.TensorInfo, st.TensorInfo) {
			t.Errorf("Lookup(%q) = %v, %v", st.Name, lt, ok)
		}
	}
	var wantNames []string
	for _, shard := range ix.Shards() {
		for _, sp := range shards[shard] {
			wantNames = append(wantNames, shard+":"+sp.Name)
		}
	}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("merged tensor list mismatch (-want +got):\n%s", diff)
	}
	if s.Index == nil || len(s.Files) != 2 {
		t.Errorf("Index = %v, %d files", s.Index, len(s.Files))
	}
}

func TestShardedSingleFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	specs := []Spec{{"w", tensor.F16, tensor.Shape{3}}}
	writeSample(t, filepath.Join(dir, SingleFileName), specs, nil)
	// An index next to model.safetensors is ignored, like transformers does.
	if err := os.WriteFile(filepath.Join(dir, IndexFileName), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSharded(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Index != nil || len(s.Tensors()) != 1 || s.Tensors()[0].Name != "w" {
		t.Errorf("OpenSharded = %+v", s)
	}
}

func TestShardedErrors(t *testing.T) {
	t.Parallel()
	shard1 := "model-00001-of-00002.safetensors"
	shard2 := "model-00002-of-00002.safetensors"
	tests := []struct {
		name  string
		setup func(dir string) error
		want  string // with "DIR" standing for the directory
	}{
		{"missing shard", func(dir string) error {
			return os.Remove(filepath.Join(dir, shard2))
		}, `DIR/model.safetensors.index.json: tensor "lm_head.weight": shard "model-00002-of-00002.safetensors" does not exist`},
		{"shard is a directory", func(dir string) error {
			os.Remove(filepath.Join(dir, shard2))
			return os.Mkdir(filepath.Join(dir, shard2), 0o755)
		}, `DIR/model.safetensors.index.json: tensor "lm_head.weight": shard "model-00002-of-00002.safetensors" is not a regular file`},
		{"tensor not in index", func(dir string) error {
			return WriteIndex(filepath.Join(dir, IndexFileName), map[string]string{
				"model.embed_tokens.weight": shard1, "model.layers.0.self_attn.q_proj.weight": shard1, "lm_head.weight": shard2,
			}, 0)
		}, `DIR/model-00002-of-00002.safetensors: tensor "model.norm.weight": is not listed in the weight_map of DIR/model.safetensors.index.json`},
		{"tensor mapped to another shard", func(dir string) error {
			return WriteIndex(filepath.Join(dir, IndexFileName), map[string]string{
				"model.embed_tokens.weight": shard1, "model.layers.0.self_attn.q_proj.weight": shard2,
				"lm_head.weight": shard2, "model.norm.weight": shard2,
			}, 0)
		}, `DIR/model-00001-of-00002.safetensors: tensor "model.layers.0.self_attn.q_proj.weight": is mapped to shard "model-00002-of-00002.safetensors" by DIR/model.safetensors.index.json`},
		{"index names absent tensor", func(dir string) error {
			return WriteIndex(filepath.Join(dir, IndexFileName), map[string]string{
				"model.embed_tokens.weight": shard1, "model.layers.0.self_attn.q_proj.weight": shard1,
				"lm_head.weight": shard2, "model.norm.weight": shard2, "model.extra": shard2,
			}, 0)
		}, `DIR/model.safetensors.index.json: tensor "model.extra": is mapped to shard "model-00002-of-00002.safetensors", which does not contain it`},
		{"bad shard file", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, shard1), []byte("short"), 0o644)
		}, `DIR/model-00001-of-00002.safetensors: file is 5 bytes, too short for the 8-byte header length`},
		{"nothing there", func(dir string) error {
			return os.Remove(filepath.Join(dir, IndexFileName))
		}, `DIR: neither model.safetensors nor model.safetensors.index.json exists`},
	}
	for _, tc := range tests {
		dir, _ := writeSharded(t)
		if err := tc.setup(dir); err != nil {
			t.Fatal(err)
		}
		s, err := OpenSharded(dir)
		if err == nil {
			s.Close()
			t.Errorf("%s: OpenSharded succeeded", tc.name)
			continue
		}
		want := strings.ReplaceAll(tc.want, "DIR", dir)
		if diff := cmp.Diff(want, err.Error()); diff != "" {
			t.Errorf("%s: error mismatch (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestReadIndexErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "s.safetensors"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, index, want string
		total             int64
	}{
		{name: "not JSON", index: `{"weight_map": `, want: `index is not valid JSON: unexpected end of JSON input (at offset 15)`},
		{name: "not object", index: `[]`, want: `index is an array, want an object`},
		{name: "no weight_map", index: `{"metadata": {}}`, want: `index has no "weight_map"`},
		{name: "empty weight_map", index: `{"weight_map": {}}`, want: `"weight_map" is empty`},
		{name: "weight_map not object", index: `{"weight_map": []}`, want: `weight_map is an array, want an object`},
		{name: "non-string shard", index: `{"weight_map": {"a": 1}}`, want: `tensor "a": weight_map entry is a number, want a string`},
		{name: "duplicate tensor", index: `{"weight_map": {"a": "s.safetensors", "a": "s.safetensors"}}`, want: `tensor "a": appears more than once in weight_map`},
		{name: "escaping shard", index: `{"weight_map": {"a": "../s.safetensors"}}`, want: `tensor "a": shard "../s.safetensors" is not a relative path inside the model directory`},
		{name: "absolute shard", index: `{"weight_map": {"a": "/etc/passwd"}}`, want: `tensor "a": shard "/etc/passwd" is not a relative path inside the model directory`},
		{name: "bad total_size", index: `{"metadata": {"total_size": "12"}, "weight_map": {"a": "s.safetensors"}}`, want: `metadata.total_size is a string, want a number`},
		{name: "negative total_size", index: `{"metadata": {"total_size": -1}, "weight_map": {"a": "s.safetensors"}}`, want: `metadata.total_size is -1, want a non-negative integer`},
		{name: "fractional total_size", index: `{"metadata": {"total_size": 1.5}, "weight_map": {"a": "s.safetensors"}}`, want: `metadata.total_size is 1.5, want a non-negative integer`},
		{name: "float total_size", index: `{"metadata": {"total_size": 12.0, "total_parameters": 6}, "weight_map": {"a": "s.safetensors"}}`, total: 12},
		{name: "no metadata", index: `{"weight_map": {"a": "s.safetensors"}, "extra": 1}`},
	}
	for _, tc := range tests {
		path := filepath.Join(dir, IndexFileName)
		if err := os.WriteFile(path, []byte(tc.index), 0o644); err != nil {
			t.Fatal(err)
		}
		ix, err := ReadIndex(path)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else if ix.TotalSize != tc.total {
				t.Errorf("%s: TotalSize = %d, want %d", tc.name, ix.TotalSize, tc.total)
			}
			continue
		}
		got := "<nil>"
		if err != nil {
			got = err.Error()
		}
		if diff := cmp.Diff(path+": "+tc.want, got); diff != "" {
			t.Errorf("%s: error mismatch (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestWriteIndexEscapes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), IndexFileName)
	if err := WriteIndex(path, map[string]string{"é\x7f<a>\U0001F600": "s\"1\\"}, 0); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"metadata\": {\n    \"total_size\": 0\n  },\n  \"weight_map\": {\n" +
		`    "\u00e9\u007f<a>\ud83d\ude00": "s\"1\\"` + "\n  }\n}\n"
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("index mismatch (-want +got):\n%s", diff)
	}
	if err := WriteIndex(path, nil, 0); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(path)
	want = "{\n  \"metadata\": {\n    \"total_size\": 0\n  },\n  \"weight_map\": {}\n}\n"
	if diff := cmp.Diff(want, string(got), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("empty index mismatch (-want +got):\n%s", diff)
	}
}
