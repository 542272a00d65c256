package exec_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
	"github.com/rolltpl/rolltpl/runtime/torchtest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// Bad input must give a clear error naming the file and the tensor or the
// offset, never a panic, and must leave the destination as it was.

// rewriteHeader rewrites the JSON header of a safetensors file through
// edit, keeping the data region.
func rewriteHeader(t *testing.T, path string, edit func(h map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	dec := json.NewDecoder(strings.NewReader(string(b[8 : 8+n])))
	dec.UseNumber()
	var h map[string]any
	if err := dec.Decode(&h); err != nil {
		t.Fatal(err)
	}
	edit(h)
	hj, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	for len(hj)%8 != 0 {
		hj = append(hj, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hj)))
	out = append(append(out, hj...), b[8+n:]...)
	writeFile(t, path, out)
}

// firstTensor returns the name of the tensor at the lowest offset of a
// header (the one a change is most visible on).
func firstTensor(h map[string]any) string {
	best, bestOff := "", int64(-1)
	for k, v := range h {
		if k == "__metadata__" {
			continue
		}
		off, _ := v.(map[string]any)["data_offsets"].([]any)[0].(json.Number).Int64()
		if bestOff < 0 || off < bestOff {
			best, bestOff = k, off
		}
	}
	return best
}

func setJSONKey(t *testing.T, path, key string, v any) {
	t.Helper()
	var m map[string]any
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if v == nil {
		delete(m, key)
	} else {
		m[key] = v
	}
	b, _ = json.Marshal(m)
	writeFile(t, path, b)
}

func shardPath(src string, i int) string {
	return filepath.Join(src, "model-0000"+string(rune('0'+i))+"-of-00002.safetensors")
}

// snapshot lists a directory tree: relative paths and sizes.
func snapshot(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			out = append(out, "error: "+err.Error())
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		info, _ := d.Info()
		if d.IsDir() {
			out = append(out, rel+"/")
		} else {
			out = append(out, fmt.Sprintf("%s %d", rel, info.Size()))
		}
		return nil
	})
	slices.Sort(out)
	return out
}

type badCase struct {
	name string
	// mutate breaks the valid HF checkpoint in src.
	mutate func(t *testing.T, src string)
	// want are regexps the error message must match: the file and the
	// tensor or offset.
	want []string
}

func badHFCases() []badCase {
	return []badCase{
		{"pickle weights only", func(t *testing.T, src string) {
			for _, name := range []string{safetensors.IndexFileName, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"} {
				os.Remove(filepath.Join(src, name))
			}
			writeFile(t, filepath.Join(src, "pytorch_model.bin"), []byte("PK"))
		}, []string{`hf: the weights are in pytorch_model\.bin \(pickle\), and rolltpl reads safetensors only`, `safe_serialization=True`}},
		{"truncated header", func(t *testing.T, src string) {
			p := shardPath(src, 1)
			b, _ := os.ReadFile(p)
			writeFile(t, p, b[:100])
		}, []string{`model-00001-of-00002\.safetensors`, `header length \d+ at offset 0 runs past the end of the file \(100 bytes\)`}},
		{"oversized header", func(t *testing.T, src string) {
			p := shardPath(src, 2)
			b, _ := os.ReadFile(p)
			binary.LittleEndian.PutUint64(b, 200_000_000)
			writeFile(t, p, b)
		}, []string{`model-00002-of-00002\.safetensors`, `header length 200000000 at offset 0 exceeds the limit`}},
		{"offsets do not match the shape", func(t *testing.T, src string) {
			rewriteHeader(t, shardPath(src, 1), func(h map[string]any) {
				e := h[firstTensor(h)].(map[string]any)
				offs := e["data_offsets"].([]any)
				end, _ := offs[1].(json.Number).Int64()
				offs[1] = end - 2
			})
		}, []string{`model-00001-of-00002\.safetensors`, `tensor "[^"]+": data_offsets \[\d+, \d+\] do not match shape`}},
		{"overlapping offsets", func(t *testing.T, src string) {
			rewriteHeader(t, shardPath(src, 2), func(h map[string]any) {
				name := firstTensor(h)
				var second string
				var secondOff int64 = -1
				for k, v := range h {
					if k == "__metadata__" || k == name {
						continue
					}
					off, _ := v.(map[string]any)["data_offsets"].([]any)[0].(json.Number).Int64()
					if secondOff < 0 || off < secondOff {
						second, secondOff = k, off
					}
				}
				e := h[second].(map[string]any)
				offs := e["data_offsets"].([]any)
				b, _ := offs[0].(json.Number).Int64()
				en, _ := offs[1].(json.Number).Int64()
				offs[0], offs[1] = b-2, en-2
			})
		}, []string{`model-00002-of-00002\.safetensors`, `tensor "[^"]+": data_offsets \[\d+, \d+\] overlap tensor`}},
		{"unknown dtype", func(t *testing.T, src string) {
			rewriteHeader(t, shardPath(src, 1), func(h map[string]any) {
				h[firstTensor(h)].(map[string]any)["dtype"] = "Q4_K"
			})
		}, []string{`model-00001-of-00002\.safetensors`, `tensor "[^"]+": unknown dtype "Q4_K"`}},
		{"shard named in the index is missing", func(t *testing.T, src string) {
			os.Remove(shardPath(src, 2))
		}, []string{`model\.safetensors\.index\.json`, `model-00002-of-00002\.safetensors`, `tensor|"model\.`}},
		{"config.json is not JSON", func(t *testing.T, src string) {
			writeFile(t, filepath.Join(src, "config.json"), []byte(`{"model_type": "llama", "hidden_size": 64,, }`))
		}, []string{`config\.json`, `not a JSON object: at byte \d+`}},
		{"config.json is missing", func(t *testing.T, src string) {
			os.Remove(filepath.Join(src, "config.json"))
		}, []string{`config\.json`, `no such file`}},
		{"k/v rows disagree with num_key_value_heads", func(t *testing.T, src string) {
			setJSONKey(t, filepath.Join(src, "config.json"), "num_key_value_heads", 4)
		}, []string{`model\.layers\.0\.self_attn\.k_proj\.weight" in \S+model-0000\d-of-00002\.safetensors`, `qkv op`, `want \[32, 64\] \(num_query_groups × kv_channels`}},
		{"a tensor no op consumes", func(t *testing.T, src string) {
			addTensor(t, src, "model.layers.1.self_attn.rotary_scale.weight", tensor.Shape{4})
		}, []string{`"model\.layers\.1\.self_attn\.rotary_scale\.weight" in \S+\.safetensors`, `no op of template llama matches`}},
		{"incomplete qkv group", func(t *testing.T, src string) {
			dropTensor(t, src, "model.layers.1.self_attn.v_proj.weight")
		}, []string{`incomplete op group, 2 of 3`, `missing "model\.layers\.1\.self_attn\.v_proj\.weight"`, `"model\.layers\.1\.self_attn\.q_proj\.weight" in \S+\.safetensors`, `qkv op #9 \(stdlib/templates/common\.rolltpl:\d+:\d+\)`}},
		{"gate and up differ", func(t *testing.T, src string) {
			dropTensor(t, src, "model.layers.0.mlp.up_proj.weight")
			addTensor(t, src, "model.layers.0.mlp.up_proj.weight", tensor.Shape{96, 64})
		}, []string{`gate and up must agree`, `model\.layers\.0\.mlp\.up_proj\.weight" in \S+\.safetensors`}},
		{"missing decoder layer", func(t *testing.T, src string) {
			setJSONKey(t, filepath.Join(src, "config.json"), "num_hidden_layers", 5)
		}, []string{`num_layers is 5 but the checkpoint has no tensors for layer 3, 4`}},
		{"non-integer layer index", func(t *testing.T, src string) {
			addTensor(t, src, "model.layers.x1.mlp.down_proj.weight", tensor.Shape{4})
		}, []string{`"model\.layers\.x1\.mlp\.down_proj\.weight" in \S+\.safetensors`, `layer index "x1"`}},
		// The expected structure (llama: hidden 64, intermediate 160, 3
		// layers, untied).
		{"a layer without down_proj", func(t *testing.T, src string) {
			dropTensor(t, src, "model.layers.1.mlp.down_proj.weight")
		}, []string{`layer 1 \(model\.layers\.1\): the checkpoint has no "model\.layers\.1\.mlp\.down_proj\.weight", which 2 layers of the same kind have`}},
		{"no final norm", func(t *testing.T, src string) {
			dropTensor(t, src, "model.norm.weight")
		}, []string{`global weights: the checkpoint has no "model\.norm\.weight" of shape \[64\] \(hidden_size\)`}},
		{"no embedding", func(t *testing.T, src string) {
			dropTensor(t, src, "model.embed_tokens.weight")
		}, []string{`no "model\.embed_tokens\.weight" of shape \[384, 64\]`}},
		{"a layer beyond num_hidden_layers", func(t *testing.T, src string) {
			setJSONKey(t, filepath.Join(src, "config.json"), "num_hidden_layers", 2)
		}, []string{`layer 2 is beyond num_layers 2 \(num_hidden_layers in config\.json\)`, `"model\.layers\.2\.`}},
		{"down_proj with one extra row in every layer", func(t *testing.T, src string) {
			for l := range 3 {
				reshapeTensor(t, src, fmt.Sprintf("model.layers.%d.mlp.down_proj.weight", l), tensor.Shape{65, 160})
			}
		}, []string{`decoder\.layers\.0\.mlp\.linear_fc2\.weight has shape \[65, 160\]; want \[64, 160\] \(hidden_size, ffn_hidden_size\)`, `"model\.layers\.0\.mlp\.down_proj\.weight" in \S+\.safetensors`}},
		{"one layer's down_proj with one extra row", func(t *testing.T, src string) {
			reshapeTensor(t, src, "model.layers.2.mlp.down_proj.weight", tensor.Shape{65, 160})
		}, []string{`layer 2 \(model\.layers\.2\): the tensor has shape \[65, 160\]; want \[64, 160\], its shape in 2 layers of the same kind`, `decoder\.layers\.2\.mlp\.linear_fc2\.weight has shape \[65, 160\]; want \[64, 160\]`}},
		{"a norm of hidden+1", func(t *testing.T, src string) {
			reshapeTensor(t, src, "model.norm.weight", tensor.Shape{65})
		}, []string{`decoder\.final_layernorm\.weight has shape \[65\]; want \[64\] \(hidden_size\)`, `"model\.norm\.weight" in \S+\.safetensors`}},
		{"o_proj of the wrong width", func(t *testing.T, src string) {
			for l := range 3 {
				reshapeTensor(t, src, fmt.Sprintf("model.layers.%d.self_attn.o_proj.weight", l), tensor.Shape{64, 32})
			}
		}, []string{`linear_proj\.weight has shape \[64, 32\]; want \[64, 64\] \(hidden_size, num_attention_heads × kv_channels\)`}},
		{"an integer weight", func(t *testing.T, src string) {
			retypeTensor(t, src, "model.layers.0.post_attention_layernorm.weight", tensor.I16)
		}, []string{`\[dtype\]|the weight is I16; weights and biases are floating-point`, `"model\.layers\.0\.post_attention_layernorm\.weight" in \S+\.safetensors`}},
		{"a bool weight", func(t *testing.T, src string) {
			retypeTensor(t, src, "lm_head.weight", tensor.BOOL)
		}, []string{`the weight is BOOL`, `"lm_head\.weight"`}},
	}
}

// editPT rewrites the rank file at path (its "model" state dict, zero
// bytes for changed tensors) after edit.
func editPT(t *testing.T, path string, edit func(model *torchsave.Dict)) {
	t.Helper()
	f, err := torchsave.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	model := &torchsave.Dict{Ordered: true}
	data := map[*torchsave.TensorSpec][]byte{}
	for _, tt := range f.Tensors() {
		name, ok := strings.CutPrefix(tt.Name, "model/")
		if !ok {
			continue
		}
		sp := &torchsave.TensorSpec{DType: tt.DType, Shape: tt.Shape}
		data[sp] = append([]byte(nil), tt.Data...)
		model.Items = append(model.Items, torchsave.Item{Key: name, Value: sp})
	}
	f.Close()
	edit(model)
	w, err := torchsave.Create(path, &torchsave.Dict{Items: []torchsave.Item{{Key: "model", Value: model}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	byName := map[string]*torchsave.TensorSpec{}
	for _, it := range model.Items {
		byName["model/"+it.Key.(string)] = it.Value.(*torchsave.TensorSpec)
	}
	for _, ti := range w.Tensors() {
		sp := byName[ti.Name]
		b := data[sp]
		if int64(len(b)) != sp.Size() {
			b = make([]byte, sp.Size())
		}
		if err := w.WriteTensor(ti.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func deleteKey(d *torchsave.Dict, key string) {
	d.Items = slices.DeleteFunc(d.Items, func(it torchsave.Item) bool { return it.Key == key })
}

// setSpec edits the spec of a tensor of d in place (a copy, so that a
// spec shared with another key stays as it was).
func setSpec(d *torchsave.Dict, key string, edit func(*torchsave.TensorSpec)) {
	for i, it := range d.Items {
		if it.Key == key {
			sp := *it.Value.(*torchsave.TensorSpec)
			edit(&sp)
			d.Items[i].Value = &sp
			return
		}
	}
	panic("no tensor " + key)
}

// reshapeTensor gives a tensor of the checkpoint a new shape (zero bytes).
func reshapeTensor(t *testing.T, src, name string, shape tensor.Shape) {
	t.Helper()
	editShard(t, src, func(specs []safetensors.Spec, data map[string][]byte) []safetensors.Spec {
		for i := range specs {
			if specs[i].Name == name {
				specs[i].Shape = shape
				data[name] = make([]byte, shape.NumElements()*int64(specs[i].DType.Size()))
				return specs
			}
		}
		t.Fatalf("no tensor %s", name)
		return nil
	})
}

// retypeTensor gives a tensor of the checkpoint another dtype of the same
// element count (zero bytes).
func retypeTensor(t *testing.T, src, name string, dt tensor.DType) {
	t.Helper()
	editShard(t, src, func(specs []safetensors.Spec, data map[string][]byte) []safetensors.Spec {
		for i := range specs {
			if specs[i].Name == name {
				specs[i].DType = dt
				data[name] = make([]byte, specs[i].Shape.NumElements()*int64(dt.Size()))
				return specs
			}
		}
		t.Fatalf("no tensor %s", name)
		return nil
	})
}

// addTensor adds a tensor (zero bytes) to the first shard and the index.
func addTensor(t *testing.T, src, name string, shape tensor.Shape) {
	t.Helper()
	editShard(t, src, func(specs []safetensors.Spec, data map[string][]byte) []safetensors.Spec {
		data[name] = make([]byte, shape.NumElements()*2)
		return append(specs, safetensors.Spec{Name: name, DType: tensor.BF16, Shape: shape})
	})
}

// dropTensor removes a tensor from its shard and the index.
func dropTensor(t *testing.T, src, name string) {
	t.Helper()
	editShard(t, src, func(specs []safetensors.Spec, data map[string][]byte) []safetensors.Spec {
		return slices.DeleteFunc(specs, func(s safetensors.Spec) bool { return s.Name == name })
	})
}

// editShard rewrites the checkpoint in src as 2 shards after edit.
func editShard(t *testing.T, src string, edit func([]safetensors.Spec, map[string][]byte) []safetensors.Spec) {
	t.Helper()
	sh, err := safetensors.OpenSharded(src)
	if err != nil {
		t.Fatal(err)
	}
	var specs []safetensors.Spec
	data := map[string][]byte{}
	for _, st := range sh.Tensors() {
		specs = append(specs, st.Spec())
		data[st.Name] = append([]byte(nil), st.File.Data(st.TensorInfo)...)
	}
	sh.Close()
	specs = edit(specs, data)
	for _, f := range []string{shardPath(src, 1), shardPath(src, 2), filepath.Join(src, safetensors.IndexFileName)} {
		os.Remove(f)
	}
	writeShards(t, src, specs, 2, func(name string) []byte { return data[name] })
}

func TestBadHFInput(t *testing.T) {
	t.Parallel()
	m := stdlibModel(t, "llama")
	for _, c := range badHFCases() {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "hf")
			synthFor("llama", tensor.BF16).write(t, src, 2, 9)
			c.mutate(t, src)

			// A destination that exists: replaced only on success (force).
			dst := filepath.Join(dir, "out")
			writeFile(t, filepath.Join(dir, "keep"), nil)
			os.MkdirAll(dst, 0o755)
			writeFile(t, filepath.Join(dst, "mca_config.json"), []byte("old"))
			before := snapshot(t, dir)

			_, err := exec.ConvertHFToMCA(context.Background(), m, src, dst, exec.Options{Force: true})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !regexp.MustCompile(w).MatchString(err.Error()) {
					t.Errorf("error does not match %q:\n%v", w, err)
				}
			}
			if after := snapshot(t, dir); !slices.Equal(before, after) {
				t.Errorf("the directory changed:\nbefore %v\nafter  %v", before, after)
			}
			// The header-only reader gives the same file-level errors, and
			// the planner the same problems.
			hc, herr := exec.ReadHFCheckpoint(src)
			if herr == nil {
				mc, cerr := exec.BuildMCAConfig(m, hc.ConfigText, hc.ConfigPath, src, exec.Layout{})
				if cerr != nil {
					herr = cerr
				} else {
					herr = exec.PlanHFToMCA(m, mc, hc.Tensors).Err()
				}
			}
			if herr == nil || herr.Error() != err.Error() {
				t.Errorf("header-only check gave %v, conversion %v", herr, err)
			}
			if perr := planVerdict(m, src, exec.Layout{}); perr == nil || perr.Error() != err.Error() {
				t.Errorf("PlanConversion gave %v, conversion %v", perr, err)
			}
		})
	}
}

func TestBadMCAInput(t *testing.T) {
	m := stdlibModel(t, "qwen2")
	pt := filepath.Join("iter_0000001", "mp_rank_00", "model_optim_rng.pt")
	cases := []badCase{
		{"mca_config.json is not JSON", func(t *testing.T, mca string) {
			writeFile(t, filepath.Join(mca, "mca_config.json"), []byte("{\n  \"hf_model_type\": qwen2\n}"))
		}, []string{`mca_config\.json`, `not a JSON object: at byte \d+`}},
		{"hf_config_json is not JSON", func(t *testing.T, mca string) {
			setJSONKey(t, filepath.Join(mca, "mca_config.json"), "hf_config_json", "{oops")
		}, []string{`mca_config\.json`, `hf_config_json is not a JSON object`}},
		{"truncated .pt", func(t *testing.T, mca string) {
			p := filepath.Join(mca, pt)
			b, _ := os.ReadFile(p)
			writeFile(t, p, b[:len(b)/2])
		}, []string{`model_optim_rng\.pt`, `end of central directory|zip`}},
		{".pt missing", func(t *testing.T, mca string) {
			os.Remove(filepath.Join(mca, pt))
		}, []string{`mp_rank_00/model_optim_rng\.pt \(rank tp0/pp0/ep0\) is missing`}},
		{"parallel layout", func(t *testing.T, mca string) {
			setJSONKey(t, filepath.Join(mca, "mca_config.json"), "tensor_model_parallel_size", 2)
		}, []string{`mca_config\.json`, `tp=2`, `mp_rank_01/model_optim_rng\.pt \(rank tp1/pp0/ep0\) is missing`}},
		{"qkv rows disagree with the config", func(t *testing.T, mca string) {
			setJSONKey(t, filepath.Join(mca, "mca_config.json"), "num_query_groups", 7)
		}, []string{`"decoder\.layers\.0\.self_attention\.linear_qkv\.weight" in \S+model_optim_rng\.pt`, `qkv op`}},
		// The expected structure (qwen2: hidden 112, ffn 192, 2 layers).
		{"a layer without linear_fc2", func(t *testing.T, mca string) {
			editPT(t, filepath.Join(mca, pt), func(model *torchsave.Dict) {
				deleteKey(model, "decoder.layers.1.mlp.linear_fc2.weight")
			})
		}, []string{`layer 1 \(decoder\.layers\.1\): the checkpoint has no "decoder\.layers\.1\.mlp\.linear_fc2\.weight"`}},
		{"a layer beyond num_layers", func(t *testing.T, mca string) {
			setJSONKey(t, filepath.Join(mca, "mca_config.json"), "num_layers", 1)
		}, []string{`layer 1 is beyond num_layers 1`, `rank file mp_rank_00, model: tensor "decoder\.layers\.1\.\S+"`}},
		{"no final norm", func(t *testing.T, mca string) {
			editPT(t, filepath.Join(mca, pt), func(model *torchsave.Dict) { deleteKey(model, "decoder.final_layernorm.weight") })
		}, []string{`global weights: the checkpoint has no "decoder\.final_layernorm\.weight" of shape \[112\] \(hidden_size\)`}},
		{"no embedding", func(t *testing.T, mca string) {
			editPT(t, filepath.Join(mca, pt), func(model *torchsave.Dict) { deleteKey(model, "embedding.word_embeddings.weight") })
		}, []string{`no "embedding\.word_embeddings\.weight" of shape \[256, 112\] \(padded_vocab_size, hidden_size\)`}},
		{"linear_fc2 with one extra row", func(t *testing.T, mca string) {
			editPT(t, filepath.Join(mca, pt), func(model *torchsave.Dict) {
				for _, l := range []string{"0", "1"} {
					setSpec(model, "decoder.layers."+l+".mlp.linear_fc2.weight", func(s *torchsave.TensorSpec) { s.Shape = tensor.Shape{113, 192} })
				}
			})
		}, []string{`decoder\.layers\.0\.mlp\.linear_fc2\.weight has shape \[113, 192\]; want \[112, 192\] \(hidden_size, ffn_hidden_size\)`, `in \S+model_optim_rng\.pt`}},
		{"a norm of hidden+1", func(t *testing.T, mca string) {
			editPT(t, filepath.Join(mca, pt), func(model *torchsave.Dict) {
				setSpec(model, "decoder.final_layernorm.weight", func(s *torchsave.TensorSpec) { s.Shape = tensor.Shape{113} })
			})
		}, []string{`decoder\.final_layernorm\.weight has shape \[113\]; want \[112\] \(hidden_size\)`}},
		{"an integer weight", func(t *testing.T, mca string) {
			editPT(t, filepath.Join(mca, pt), func(model *torchsave.Dict) {
				setSpec(model, "decoder.layers.0.mlp.linear_fc1.layer_norm_weight", func(s *torchsave.TensorSpec) { s.DType = tensor.I16 })
			})
		}, []string{`the weight is I16; weights and biases are floating-point`, `"decoder\.layers\.0\.mlp\.linear_fc1\.layer_norm_weight" in \S+model_optim_rng\.pt`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "hf")
			synthFor("qwen2", tensor.BF16).write(t, src, 1, 4)
			mca := filepath.Join(dir, "mca")
			if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{}); err != nil {
				t.Fatal(err)
			}
			c.mutate(t, mca)
			dst := filepath.Join(dir, "back")
			before := snapshot(t, dir)
			_, err := exec.ConvertMCAToHF(context.Background(), m, mca, dst, exec.Options{})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !regexp.MustCompile(w).MatchString(err.Error()) {
					t.Errorf("error does not match %q:\n%v", w, err)
				}
			}
			if after := snapshot(t, dir); !slices.Equal(before, after) {
				t.Errorf("the directory changed:\nbefore %v\nafter  %v", before, after)
			}
			if perr := planVerdict(m, mca, exec.Layout{}); perr == nil || perr.Error() != err.Error() {
				t.Errorf("PlanConversion gave %v, conversion %v", perr, err)
			}
		})
	}
}

// planVerdict is the error PlanConversion gives for src: its error, or
// the plan's.
func planVerdict(m *exec.Model, src string, l exec.Layout) error {
	cp, err := exec.PlanConversion(m, src, l)
	if err != nil {
		return err
	}
	return cp.Plan.Err()
}

func TestDestination(t *testing.T) {
	m := stdlibModel(t, "qwen3")
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthFor("qwen3", tensor.BF16).write(t, src, 1, 5)
	dst := filepath.Join(dir, "out")
	os.MkdirAll(dst, 0o755)
	// A previous checkpoint's shard: --force replaces it (a file that is
	// not a checkpoint's is refused, TestForceRefusesForeignFiles).
	old := filepath.Join(dst, "model-00001-of-00003.safetensors")
	writeFile(t, old, nil)
	_, err := exec.ConvertHFToMCA(context.Background(), m, src, dst, exec.Options{})
	if err == nil || !strings.Contains(err.Error(), "is not empty (model-00001-of-00003.safetensors); pass --force") {
		t.Fatalf("non-empty destination: %v", err)
	}
	if _, err := os.Stat(old); err != nil {
		t.Fatal("destination changed")
	}
	if _, err := exec.ConvertHFToMCA(context.Background(), m, src, dst, exec.Options{Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("forced conversion kept the old content")
	}
	if !exec.IsMCA(dst) {
		t.Errorf("no MCA checkpoint in %s", dst)
	}
	// An empty destination directory is fine without force.
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)
	if _, err := exec.ConvertMCAToHF(context.Background(), m, dst, empty, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "rolltpl-tmp") {
			t.Errorf("temporary directory left: %s", e.Name())
		}
	}
	// The source itself, or a directory holding it, is never a destination.
	for _, d := range []string{src, dir} {
		if _, err := exec.ConvertHFToMCA(context.Background(), m, src, d, exec.Options{Force: true}); err == nil || !strings.Contains(err.Error(), "is or contains the source") {
			t.Errorf("destination %s: %v", d, err)
		}
	}
	// A cancelled conversion leaves nothing behind.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := filepath.Join(dir, "gone")
	if _, err := exec.ConvertHFToMCA(ctx, m, src, gone, exec.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cancelled conversion created %s", gone)
	}
}

// TestSharedStorageMCA converts back a rank file in which two keys hold
// one tensor (torch.save memoizes it; here the writer does the same for a
// shared *TensorSpec): both keys are converted.
func TestSharedStorageMCA(t *testing.T) {
	m := stdlibModel(t, "qwen2")
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthFor("qwen2", tensor.BF16).write(t, src, 1, 4)
	mca := filepath.Join(dir, "mca")
	if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	pt := filepath.Join(mca, "iter_0000001", "mp_rank_00", exec.MCACheckpointPT)
	editPT(t, pt, func(model *torchsave.Dict) {
		a, _ := model.Get("decoder.layers.0.mlp.linear_fc2.weight")
		for i, it := range model.Items {
			if it.Key == "decoder.layers.1.mlp.linear_fc2.weight" {
				model.Items[i].Value = a
			}
		}
	})
	f, err := torchsave.Open(pt)
	if err != nil {
		t.Fatal(err)
	}
	storages := 0
	for _, r := range f.Records() {
		if strings.HasPrefix(r.Name, "data/") {
			storages++
		}
	}
	if storages != len(f.Tensors())-1 {
		t.Errorf("%d storages for %d tensors: the edit did not share one", storages, len(f.Tensors()))
	}
	f.Close()
	back := filepath.Join(dir, "back")
	if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	sh, err := safetensors.OpenSharded(back)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	data := map[string][]byte{}
	for _, st := range sh.Tensors() {
		data[st.Name] = st.File.Data(st.TensorInfo)
	}
	d0, ok0 := data["model.layers.0.mlp.down_proj.weight"]
	d1, ok1 := data["model.layers.1.mlp.down_proj.weight"]
	if !ok0 || !ok1 || !bytes.Equal(d0, d1) {
		t.Errorf("down_proj of layers 0 and 1: present %v %v, equal %v", ok0, ok1, bytes.Equal(d0, d1))
	}
}

// TestSharedStorageTorch: a rank file torch.save wrote with one tensor
// under two keys (what a training script that ties two weights saves)
// converts back to HF with both weights.
func TestSharedStorageTorch(t *testing.T) { torchtest.Run(t, testSharedStorageTorch) }

func testSharedStorageTorch(t *testing.T, py string) {
	m := stdlibModel(t, "qwen2")
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthFor("qwen2", tensor.BF16).write(t, src, 1, 4)
	mca := filepath.Join(dir, "mca")
	if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	pt := filepath.Join(mca, "iter_0000001", "mp_rank_00", exec.MCACheckpointPT)
	script := `import sys, torch
sd = torch.load(sys.argv[1])
m = sd["model"]
m["decoder.layers.1.mlp.linear_fc2.weight"] = m["decoder.layers.0.mlp.linear_fc2.weight"]
torch.save(sd, sys.argv[1])
`
	if out, err := torchtest.Command(py, "-c", script, pt).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	back := filepath.Join(dir, "back")
	if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	sh, err := safetensors.OpenSharded(back)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	data := map[string][]byte{}
	for _, st := range sh.Tensors() {
		data[st.Name] = st.File.Data(st.TensorInfo)
	}
	d0, ok0 := data["model.layers.0.mlp.down_proj.weight"]
	d1, ok1 := data["model.layers.1.mlp.down_proj.weight"]
	if !ok0 || !ok1 || !bytes.Equal(d0, d1) {
		t.Errorf("down_proj of layers 0 and 1: present %v %v, equal %v", ok0, ok1, bytes.Equal(d0, d1))
	}
}

// TestStructureMergedRanks: MCA -> HF of a parallel layout checks the
// merged global weights: a final norm missing from the last pipeline
// stage, or a down projection with an extra row in one stage, is an
// error before anything is written.
func TestStructureMergedRanks(t *testing.T) {
	m := stdlibModel(t, "llama")
	for _, c := range []struct {
		name string
		edit func(model *torchsave.Dict)
		want string
	}{
		{"no final norm", func(model *torchsave.Dict) { deleteKey(model, "decoder.final_layernorm.weight") },
			`global weights: the checkpoint has no "decoder\.final_layernorm\.weight" of shape \[64\] \(hidden_size\)`},
		{"fc2 of hidden+1 rows", func(model *torchsave.Dict) {
			setSpec(model, "decoder.layers.0.mlp.linear_fc2.weight", func(s *torchsave.TensorSpec) { s.Shape = tensor.Shape{65, 160} })
		}, `decoder\.layers\.2\.mlp\.linear_fc2\.weight has shape \[65, 160\]; want \[64, 160\] \(hidden_size, ffn_hidden_size\)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "hf")
			s := synthWith("llama", tensor.BF16, func(d *dims, cfg map[string]any) { d.layers = 4 })
			s.write(t, src, 1, 2)
			mca := filepath.Join(dir, "mca")
			if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{Layout: exec.Layout{PP: 2}}); err != nil {
				t.Fatal(err)
			}
			ranks, _ := filepath.Glob(filepath.Join(mca, "iter_0000001", "*", exec.MCACheckpointPT))
			if len(ranks) != 2 {
				t.Fatalf("rank files %v", ranks)
			}
			editPT(t, ranks[1], c.edit) // the last stage: layers 2 and 3 (local 0 and 1), the final norm
			before := snapshot(t, dir)
			_, err := exec.ConvertMCAToHF(context.Background(), m, mca, filepath.Join(dir, "back"), exec.Options{})
			if err == nil || !regexp.MustCompile(c.want).MatchString(err.Error()) {
				t.Errorf("error %v, want %q", err, c.want)
			}
			if after := snapshot(t, dir); !slices.Equal(before, after) {
				t.Errorf("the directory changed:\nbefore %v\nafter  %v", before, after)
			}
			if perr := planVerdict(m, mca, exec.Layout{}); perr == nil || err == nil || perr.Error() != err.Error() {
				t.Errorf("PlanConversion gave %v, conversion %v", perr, err)
			}
		})
	}
}
