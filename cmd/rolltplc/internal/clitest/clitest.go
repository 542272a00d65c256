// Package clitest holds what the rolltplc command's tests share: the test
// binary standing in for rolltplc (so that a test can run the command as
// a separate process), and synthetic Hugging Face checkpoints written as
// real safetensors files with an index.
package clitest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// StandInEnv, set to "1", makes a test binary whose TestMain calls [Main]
// run as rolltplc instead of running its tests.
const StandInEnv = "ROLLTPLC_TEST_MAIN"

// Main is a TestMain: with StandInEnv set it runs rolltplc (run, given the
// command-line arguments after the program name) and exits with its
// status; otherwise it runs the tests.
func Main(m *testing.M, run func(args []string) int) {
	if os.Getenv(StandInEnv) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// Command returns the test binary started as rolltplc with args (see
// [Main]).
func Command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), StandInEnv+"=1")
	return cmd
}

// Checkpoint is a synthetic HF checkpoint: a config.json, other files
// beside it (tokenizer files), and bf16 tensors drawn from a seeded
// normal distribution (σ 0.02, finite like initialised weights).
type Checkpoint struct {
	Config map[string]any
	// Files are written beside config.json, by name.
	Files map[string]string
	// Specs are the tensors, in the order they are written.
	Specs []safetensors.Spec
	// Skip names tensors Add leaves out.
	Skip []string
	// Seed seeds the weights (rand.NewPCG(Seed[0], Seed[1])).
	Seed [2]uint64
}

// Add appends a bf16 tensor unless its name is in c.Skip.
func (c *Checkpoint) Add(name string, shape ...int64) {
	if slices.Contains(c.Skip, name) {
		return
	}
	c.Specs = append(c.Specs, safetensors.Spec{Name: name, DType: tensor.BF16, Shape: tensor.Shape(shape)})
}

// Write writes c into dir (created if needed): config.json (indented),
// c.Files, and the tensors in two shards, the first half of c.Specs in
// model-00001-of-00002.safetensors, with the index.
func (c *Checkpoint) Write(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(c.Config, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("config.json", b)
	names := make([]string, 0, len(c.Files))
	for name := range c.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		write(name, []byte(c.Files[name]))
	}
	rng := rand.New(rand.NewPCG(c.Seed[0], c.Seed[1]))
	half := len(c.Specs) / 2
	weightMap := map[string]string{}
	var total int64
	for i, part := range [][]safetensors.Spec{c.Specs[:half], c.Specs[half:]} {
		name := fmt.Sprintf("model-%05d-of-00002.safetensors", i+1)
		err := safetensors.WriteFile(filepath.Join(dir, name), part, map[string]string{"format": "pt"}, func(w *safetensors.Writer) error {
			for _, s := range part {
				data := make([]byte, 2*s.Shape.NumElements())
				for j := 0; j < len(data); j += 2 {
					binary.LittleEndian.PutUint16(data[j:], tensor.F32ToBF16(float32(rng.NormFloat64()*0.02)))
				}
				if err := w.WriteTensor(s.Name, data); err != nil {
					return err
				}
				weightMap[s.Name] = name
				total += int64(len(data))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := safetensors.WriteIndex(filepath.Join(dir, safetensors.IndexFileName), weightMap, total); err != nil {
		t.Fatal(err)
	}
}

// LlamaShape is the size of a synthetic Llama model.
type LlamaShape struct {
	Vocab, Hidden, Inter, Heads, KVHeads, Layers int64
}

// Llama is a Llama-shaped checkpoint (untied embeddings, bf16, GQA as
// s's head counts say) with a tokenizer.json; skip names tensors to leave
// out. Set Seed before writing it.
func Llama(s LlamaShape, skip ...string) *Checkpoint {
	hd := s.Hidden / s.Heads
	c := &Checkpoint{
		Config: map[string]any{
			"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "vocab_size": s.Vocab, "hidden_size": s.Hidden,
			"intermediate_size": s.Inter, "num_hidden_layers": s.Layers, "num_attention_heads": s.Heads, "num_key_value_heads": s.KVHeads,
			"rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
			"max_position_embeddings": 2048,
		},
		Files: map[string]string{"tokenizer.json": `{"version": "1.0"}`},
		Skip:  skip,
	}
	V, H, I := s.Vocab, s.Hidden, s.Inter
	c.Add("model.embed_tokens.weight", V, H)
	c.Add("lm_head.weight", V, H)
	c.Add("model.norm.weight", H)
	for l := range s.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		c.Add(p+"input_layernorm.weight", H)
		c.Add(p+"post_attention_layernorm.weight", H)
		c.Add(p+"self_attn.q_proj.weight", s.Heads*hd, H)
		c.Add(p+"self_attn.k_proj.weight", s.KVHeads*hd, H)
		c.Add(p+"self_attn.v_proj.weight", s.KVHeads*hd, H)
		c.Add(p+"self_attn.o_proj.weight", H, s.Heads*hd)
		c.Add(p+"mlp.gate_proj.weight", I, H)
		c.Add(p+"mlp.up_proj.weight", I, H)
		c.Add(p+"mlp.down_proj.weight", H, I)
	}
	return c
}
