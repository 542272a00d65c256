package exec_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// The two fuzz targets feed hostile checkpoints to the conversions: a
// fuzzed mca_config.json with rank files of fuzzed headers (MCA → HF; the
// archive layer has its own fuzzer, torchsave's FuzzReader), and a fuzzed
// config.json with a model.safetensors of fuzzed header (HF → MCA; the
// file layer is fuzzed by safetensors' FuzzParseHeader). Each input must
//
//   - not panic (the conversions turn a panic into an "internal error",
//     which counts as one),
//   - allocate at most fuzzAllocBound bytes (runtime.MemStats.TotalAlloc
//     before and after; a larger single allocation kills the worker,
//     which the fuzzer reports as a crash),
//   - and, when the conversion succeeds, have produced a checkpoint
//     consistent with its config: exactly num_layers decoder layers
//     0..n-1, each with the full set of weights of the template, the
//     global weights (the output layer exactly when the embeddings are not
//     tied), every weight float and with a hidden_size dimension.
//
// The model is compiled with the config schemas, as rolltplc compiles
// it. The seed corpus (valid tiny Llama checkpoints at TP=1 and TP=2, and the
// hostile values of issue 14) runs in go test; run the fuzzers with
//
//	go test ./runtime/exec -run '^$' -fuzz FuzzMCAToHF -fuzztime 30s
//	go test ./runtime/exec -run '^$' -fuzz FuzzHFToMCA -fuzztime 30s

// structureCheckPending, when set, skips instead of failing a conversion
// that succeeded on input the expected-structure check should refuse (a
// layer beyond num_layers, an output layer present with tied embeddings or
// missing without). That check has landed: it is false.
var structureCheckPending = false

// inconsistent fails the test for a conversion that succeeded on
// inconsistent input.
func inconsistent(t *testing.T, err error) {
	t.Helper()
	if structureCheckPending {
		t.Skipf("converted an inconsistent checkpoint (pending expected-structure check): %v", err)
	}
	t.Fatalf("converted an inconsistent checkpoint: %v", err)
}

// fuzzAllocBound is the most one fuzz input may allocate.
const fuzzAllocBound = 256 << 20

// tinyLlama is a Llama small enough for the fuzzer to mutate: 2 layers,
// hidden 8, vocabulary 8.
func tinyLlama(tie bool) synth {
	return synthWith("llama", tensor.BF16, func(d *dims, cfg map[string]any) {
		d.vocab, d.hidden, d.inter, d.layers, d.heads, d.kv, d.tie, d.invFreq = 8, 8, 8, 2, 2, 2, tie, false
	})
}

// fuzzShape is what a converted checkpoint must hold, learned from the
// valid seed conversions: the weight suffixes of every layer and the
// global weights, by direction.
type fuzzShape struct {
	layerRE       *regexp.Regexp
	layer, global []string // sorted
	output        string   // the untied output weight
}

var (
	fuzzOnce  sync.Once
	fuzzSeeds struct {
		hfConfig, hfST        []byte // config.json, model.safetensors
		mcaConfig             []byte // TP=1
		rank                  []byte
		mcaConfig2            []byte // TP=2
		rank0, rank1          []byte
		hfShape, mcaShape     fuzzShape
		hfConfigTied, hfSTTie []byte
		err                   error
	}
)

// names splits weight names into per-layer suffixes and global names.
func (s *fuzzShape) split(names []string) (layers map[int][]string, global []string) {
	layers = map[int][]string{}
	for _, n := range names {
		if m := s.layerRE.FindStringSubmatch(n); m != nil {
			var l int
			fmt.Sscan(m[1], &l)
			layers[l] = append(layers[l], m[2])
			continue
		}
		global = append(global, n)
	}
	for _, v := range layers {
		slices.Sort(v)
	}
	slices.Sort(global)
	return layers, global
}

// check reports how names differ from a checkpoint of n layers.
func (s *fuzzShape) check(names []string, n int64, tied bool) error {
	layers, global := s.split(names)
	if int64(len(layers)) != n {
		return fmt.Errorf("%d layers, config says %d", len(layers), n)
	}
	for l := range n {
		if !slices.Equal(layers[int(l)], s.layer) {
			return fmt.Errorf("layer %d has %v, want %v", l, layers[int(l)], s.layer)
		}
	}
	want := slices.Clone(s.global)
	if tied {
		want = slices.DeleteFunc(want, func(x string) bool { return x == s.output })
	}
	if !slices.Equal(global, want) {
		return fmt.Errorf("global weights %v, want %v (tied %v)", global, want, tied)
	}
	return nil
}

func readAll(t testing.TB, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fuzzSetup converts the tiny Llama both ways once and keeps the files.
func fuzzSetup(t testing.TB) {
	fuzzOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rolltpl-fuzz-seeds-")
		if err != nil {
			fuzzSeeds.err = err
			return
		}
		defer os.RemoveAll(dir)
		m := schemaModel(t, "llama")
		s := &fuzzSeeds
		for _, tie := range []bool{false, true} {
			src := filepath.Join(dir, fmt.Sprintf("hf-%v", tie))
			tinyLlama(tie).write(t, src, 1, 5)
			cfg, st := readAll(t, filepath.Join(src, "config.json")), readAll(t, filepath.Join(src, "model.safetensors"))
			if tie {
				s.hfConfigTied, s.hfSTTie = cfg, st
				continue
			}
			s.hfConfig, s.hfST = cfg, st
			mca := filepath.Join(dir, "mca")
			if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{}); err != nil {
				s.err = err
				return
			}
			s.mcaConfig = readAll(t, filepath.Join(mca, exec.MCAConfigName))
			s.rank = readAll(t, filepath.Join(mca, "iter_0000001", "mp_rank_00", exec.MCACheckpointPT))
			mca2 := filepath.Join(dir, "mca2")
			if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca2, exec.Options{Layout: exec.Layout{TP: 2}}); err != nil {
				s.err = err
				return
			}
			s.mcaConfig2 = readAll(t, filepath.Join(mca2, exec.MCAConfigName))
			s.rank0 = readAll(t, filepath.Join(mca2, "iter_0000001", "mp_rank_00", exec.MCACheckpointPT))
			s.rank1 = readAll(t, filepath.Join(mca2, "iter_0000001", "mp_rank_01", exec.MCACheckpointPT))
			s.hfShape = fuzzShape{layerRE: regexp.MustCompile(`^model\.layers\.(\d+)\.(.*)$`), output: "lm_head.weight"}
			hc, err := exec.ReadHFCheckpoint(src)
			if err != nil {
				s.err = err
				return
			}
			s.hfShape.layer, s.hfShape.global = shapeOf(&s.hfShape, metaNames(hc.Tensors))
			s.mcaShape = fuzzShape{layerRE: regexp.MustCompile(`^decoder\.layers\.(\d+)\.(.*)$`), output: "output_layer.weight"}
			names, err := rankNames(filepath.Join(mca, "iter_0000001", "mp_rank_00", exec.MCACheckpointPT))
			if err != nil {
				s.err = err
				return
			}
			s.mcaShape.layer, s.mcaShape.global = shapeOf(&s.mcaShape, names)
		}
	})
	if fuzzSeeds.err != nil {
		t.Fatal(fuzzSeeds.err)
	}
}

func shapeOf(s *fuzzShape, names []string) (layer, global []string) {
	layers, global := s.split(names)
	return layers[0], global
}

func metaNames(ms []exec.TensorMeta) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// rankNames lists the model tensors of a rank file.
func rankNames(path string) ([]string, error) {
	f, err := torchsave.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ms, err := exec.MCATensorMetas(f)
	if err != nil {
		return nil, err
	}
	return metaNames(ms), nil
}

// hostileMCAValues are the mca_config.json edits the fuzzers start from.
var hostileMCAValues = [][2]string{
	{"tensor_model_parallel_size", "4294967296"},
	{"pipeline_model_parallel_size", "4294967296"},
	{"virtual_pipeline_model_parallel_size", "100000000"},
	{"expert_model_parallel_size", "65536"},
	{"num_layers", "1000000000"},
	{"num_layers", "1e9"},
	{"num_layers", `"3"`},
	{"num_layers", "3.5"},
	{"num_layers", "null"},
	{"num_layers", "0"},
	{"num_layers", "3"},
	{"num_layers", "1"},
	{"num_moe_experts", "4294967296"},
	{"hidden_size", "0"},
	{"hidden_size", "16"},
	{"tie_embeddings_and_output_weights", `"yes"`},
	{"tie_embeddings_and_output_weights", "true"},
	{"swiglu", "false"},
}

// hostileHFValues are the config.json edits the fuzzers start from.
var hostileHFValues = []struct {
	key string
	val any
}{
	{"num_hidden_layers", "3"}, {"num_hidden_layers", 3.5}, {"num_hidden_layers", nil}, {"num_hidden_layers", 0},
	{"num_hidden_layers", 1e9}, {"num_hidden_layers", 1}, {"num_hidden_layers", 3}, {"hidden_size", 0},
	{"hidden_size", 16}, {"tie_word_embeddings", "yes"}, {"tie_word_embeddings", true}, {"num_attention_heads", int64(1 << 40)},
	{"num_key_value_heads", 2}, {"vocab_size", 1e12},
}

// editMCA returns an mca_config.json with key set to the raw JSON value.
func editMCA(cfg []byte, key, raw string) []byte {
	re := regexp.MustCompile(`(?m)^  "` + regexp.QuoteMeta(key) + `": .*?(,?)$`)
	return re.ReplaceAll(cfg, []byte(`  "`+key+`": `+raw+`$1`))
}

// deleteMCA returns an mca_config.json without key.
func deleteMCA(cfg []byte, key string) []byte {
	re := regexp.MustCompile(`(?m)^  "` + regexp.QuoteMeta(key) + `": .*,\n`)
	return re.ReplaceAll(cfg, nil)
}

func editHF(t testing.TB, cfg []byte, key string, val any) []byte {
	var m map[string]any
	if err := json.Unmarshal(cfg, &m); err != nil {
		t.Fatal(err)
	}
	m[key] = val
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// boundedRun runs f and fails the test when it allocated more than
// fuzzAllocBound bytes; a soft memory limit makes the collector keep the
// heap near the bound meanwhile.
func boundedRun(t *testing.T, f func()) {
	old := debug.SetMemoryLimit(fuzzAllocBound)
	defer debug.SetMemoryLimit(old)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	f()
	runtime.ReadMemStats(&ms)
	if n := ms.TotalAlloc - before; n > fuzzAllocBound {
		t.Fatalf("allocated %d MiB, more than the bound of %d MiB", n>>20, fuzzAllocBound>>20)
	}
}

func noPanic(t *testing.T, err error) {
	if err != nil && strings.Contains(err.Error(), "internal error") {
		t.Fatalf("panic: %v", err)
	}
}

// configInt reads an integer from a JSON object; ok is false when the value
// is absent or not an integer.
func configInt(m map[string]any, key string) (int64, bool) {
	n, ok := m[key].(json.Number)
	if !ok || strings.ContainsAny(string(n), ".eE") {
		return 0, false
	}
	v, err := n.Int64()
	return v, err == nil
}

func decodeJSON(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var m map[string]any
	return m, dec.Decode(&m)
}

// checkFloatHidden checks that every tensor has a float dtype and a
// dimension of the hidden size.
func checkFloatHidden(ms []exec.TensorMeta, hidden int64) error {
	for _, m := range ms {
		if !m.DType.IsFloat() {
			return fmt.Errorf("%s is %v", m.Name, m.DType)
		}
		if !slices.Contains(m.Shape, hidden) {
			return fmt.Errorf("%s %v has no dimension of hidden_size %d", m.Name, m.Shape, hidden)
		}
	}
	return nil
}

// rankPickle returns the data.pkl record of a rank file (a zip archive).
func rankPickle(t testing.TB, rank []byte) []byte {
	zr, err := zip.NewReader(bytes.NewReader(rank), int64(len(rank)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/data.pkl") {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatal("no data.pkl")
	return nil
}

// withPickle returns the rank file with its data.pkl record replaced by
// pkl, the records stored with correct CRCs: the fuzzed pickle is the
// rank file's header (keys, names, dtypes, shapes, storages), read past
// the archive checks.
func withPickle(t testing.TB, rank, pkl []byte) []byte {
	zr, err := zip.NewReader(bytes.NewReader(rank), int64(len(rank)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f.Name, "/data.pkl") {
			data = pkl
		}
		w, err := zw.CreateRaw(&zip.FileHeader{Name: f.Name, Method: zip.Store, CRC32: crc32.ChecksumIEEE(data),
			CompressedSize64: uint64(len(data)), UncompressedSize64: uint64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzMCAToHF fuzzes mca_config.json and the headers (pickles) of one or
// two rank files, whose tensor data are those of the valid tiny Llama:
// one rank file (pkl1 empty) at TP=1, two at TP=2.
func FuzzMCAToHF(f *testing.F) {
	fuzzSetup(f)
	loadSeedShapes(f)
	s := &fuzzSeeds
	p, p0, p1 := rankPickle(f, s.rank), rankPickle(f, s.rank0), rankPickle(f, s.rank1)
	f.Add(s.mcaConfig, p, []byte(nil))
	f.Add(s.mcaConfig2, p0, p1)
	f.Add(s.mcaConfig, p0, []byte(nil))
	f.Add(s.mcaConfig2, p0, p0)
	f.Add(s.mcaConfig2, p, p)
	for _, hv := range hostileMCAValues {
		f.Add(editMCA(s.mcaConfig, hv[0], hv[1]), p, []byte(nil))
		f.Add(editMCA(s.mcaConfig2, hv[0], hv[1]), p0, p1)
	}
	// Without the sizes every Megatron model has (found by this fuzzer:
	// no hidden_size converted, with no shape checked against it).
	for _, k := range []string{"num_layers", "hidden_size", "num_attention_heads"} {
		f.Add(deleteMCA(s.mcaConfig, k), p, []byte(nil))
	}
	m := schemaModel(f, "llama")
	f.Fuzz(func(t *testing.T, cfg, pkl0, pkl1 []byte) {
		dir := t.TempDir()
		src := filepath.Join(dir, "mca")
		ranks := [][]byte{withPickle(t, s.rank, pkl0)}
		if len(pkl1) > 0 {
			ranks = [][]byte{withPickle(t, s.rank0, pkl0), withPickle(t, s.rank1, pkl1)}
		}
		for i, r := range ranks {
			p := filepath.Join(src, "iter_0000001", fmt.Sprintf("mp_rank_%02d", i), exec.MCACheckpointPT)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, p, r)
		}
		writeFile(t, filepath.Join(src, exec.MCAConfigName), cfg)
		dst := filepath.Join(dir, "hf")
		var err error
		boundedRun(t, func() {
			_, err = exec.ConvertMCAToHF(context.Background(), m, src, dst, exec.Options{})
		})
		noPanic(t, err)
		if err != nil {
			return
		}
		// Success: the output must be the checkpoint the config describes.
		mc, err := exec.ParseMCAConfig("mca_config.json", cfg)
		if err != nil {
			t.Fatalf("converted, but the config does not parse: %v", err)
		}
		n, okN := mc.Int("num_layers")
		hidden, okH := mc.Int("hidden_size")
		if !okN || !okH {
			t.Fatalf("converted without num_layers or hidden_size")
		}
		tied, _ := mc.Bool("tie_embeddings_and_output_weights")
		hc, err := exec.ReadHFCheckpoint(dst)
		if err != nil {
			t.Fatalf("the output does not read back: %v", err)
		}
		hcfg, err := decodeJSON(hc.ConfigText)
		if err != nil {
			t.Fatal(err)
		}
		if hn, ok := configInt(hcfg, "num_hidden_layers"); !ok || hn != n {
			t.Fatalf("config.json num_hidden_layers %v, mca_config num_layers %d", hcfg["num_hidden_layers"], n)
		}
		if err := s.hfShape.check(metaNames(hc.Tensors), n, tied); err != nil {
			inconsistent(t, err)
		}
		if err := checkFloatHidden(hc.Tensors, hidden); err != nil {
			t.Fatalf("converted an inconsistent checkpoint: %v", err)
		}
		if sameSizes(t, exec.MCAConfigName, cfg, s.mcaConfig) {
			checkSeedShapes(t, hc.Tensors, seedShapes.hf)
		}
	})
}

// splitSafetensors splits a safetensors file into its JSON header and its
// data region.
func splitSafetensors(t testing.TB, b []byte) (header, data []byte) {
	if len(b) < 8 {
		t.Fatal("short safetensors file")
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		t.Fatal("bad safetensors header length")
	}
	return b[8 : 8+n], b[8+n:]
}

// FuzzHFToMCA fuzzes config.json and the JSON header of model.safetensors,
// whose data region is that of the valid tiny Llama (tied or untied
// embeddings); the file layer has its own fuzzer, safetensors'
// FuzzParseHeader.
func FuzzHFToMCA(f *testing.F) {
	fuzzSetup(f)
	loadSeedShapes(f)
	s := &fuzzSeeds
	h, _ := splitSafetensors(f, s.hfST)
	hTie, _ := splitSafetensors(f, s.hfSTTie)
	f.Add(s.hfConfig, h, false)
	f.Add(s.hfConfigTied, hTie, true)
	f.Add(s.hfConfigTied, h, false)
	f.Add(s.hfConfig, hTie, true)
	for _, hv := range hostileHFValues {
		f.Add(editHF(f, s.hfConfig, hv.key, hv.val), h, false)
	}
	m := schemaModel(f, "llama")
	f.Fuzz(func(t *testing.T, cfg, header []byte, tied bool) {
		dir := t.TempDir()
		src := filepath.Join(dir, "hf")
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		_, data := splitSafetensors(t, s.hfST)
		if tied {
			_, data = splitSafetensors(t, s.hfSTTie)
		}
		st := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
		st = append(append(st, header...), data...)
		writeFile(t, filepath.Join(src, "config.json"), cfg)
		writeFile(t, filepath.Join(src, "model.safetensors"), st)
		dst := filepath.Join(dir, "mca")
		var err error
		boundedRun(t, func() {
			_, err = exec.ConvertHFToMCA(context.Background(), m, src, dst, exec.Options{})
		})
		noPanic(t, err)
		if err != nil {
			return
		}
		hcfg, err := decodeJSON(cfg)
		if err != nil {
			t.Fatalf("converted, but config.json does not parse: %v", err)
		}
		n, okN := configInt(hcfg, "num_hidden_layers")
		hidden, okH := configInt(hcfg, "hidden_size")
		if !okN || !okH {
			t.Fatalf("converted with num_hidden_layers %v, hidden_size %v", hcfg["num_hidden_layers"], hcfg["hidden_size"])
		}
		tiedCfg, ok := hcfg["tie_word_embeddings"].(bool)
		if _, present := hcfg["tie_word_embeddings"]; present && !ok {
			t.Fatalf("converted with tie_word_embeddings %v", hcfg["tie_word_embeddings"])
		}
		mcfg, err := decodeJSON(readAll(t, filepath.Join(dst, exec.MCAConfigName)))
		if err != nil {
			t.Fatal(err)
		}
		if mn, ok := configInt(mcfg, "num_layers"); !ok || mn != n {
			t.Fatalf("mca_config num_layers %v, config.json num_hidden_layers %d", mcfg["num_layers"], n)
		}
		pt := filepath.Join(dst, "iter_0000001", "mp_rank_00", exec.MCACheckpointPT)
		tf, err := torchsave.Open(pt)
		if err != nil {
			t.Fatalf("the output does not read back: %v", err)
		}
		defer tf.Close()
		ms, err := exec.MCATensorMetas(tf)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.mcaShape.check(metaNames(ms), n, tiedCfg); err != nil {
			inconsistent(t, err)
		}
		if err := checkFloatHidden(ms, hidden); err != nil {
			t.Fatalf("converted an inconsistent checkpoint: %v", err)
		}
		if sameSizes(t, "config.json", cfg, s.hfConfig) {
			checkSeedShapes(t, ms, seedShapes.mca)
		}
	})
}
