package exec_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// TestMCAVocabRows: MCA -> HF refuses an embedding or output layer whose
// rows are not padded_vocab_size (they become config.json's vocab_size
// rows, which transformers requires of both), naming the tensor and the
// rank file, before anything is written; check --checkpoint's planner
// says the same. On main one extra row converted with exit 0, into an HF
// checkpoint whose embedding and LM head disagreed with each other and
// with vocab_size. At TP=2 the check is on the merged weight.
func TestMCAVocabRows(t *testing.T) {
	m := stdlibModel(t, "llama")
	for _, c := range []struct {
		name  string
		tp    int
		ranks []string
		key   string
	}{
		{"embedding", 1, []string{"mp_rank_00"}, "embedding.word_embeddings.weight"},
		{"output layer", 1, []string{"mp_rank_00"}, "output_layer.weight"},
		{"embedding shares at tp=2", 2, []string{"mp_rank_00", "mp_rank_01"}, "embedding.word_embeddings.weight"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "hf")
			synthFor("llama", tensor.BF16).write(t, src, 1, 3)
			mca := filepath.Join(dir, "mca")
			if _, err := exec.ConvertHFToMCA(context.Background(), m, src, mca, exec.Options{Layout: exec.Layout{TP: c.tp}}); err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				Vocab  int64 `json:"padded_vocab_size"`
				Hidden int64 `json:"hidden_size"`
			}
			if err := json.Unmarshal(readAll(t, filepath.Join(mca, exec.MCAConfigName)), &cfg); err != nil || cfg.Vocab == 0 {
				t.Fatalf("mca_config.json: %v %+v", err, cfg)
			}
			for _, r := range c.ranks {
				editPT(t, filepath.Join(mca, "iter_0000001", r, exec.MCACheckpointPT), func(model *torchsave.Dict) {
					setSpec(model, c.key, func(s *torchsave.TensorSpec) { s.Shape[0]++ })
				})
			}
			rows := cfg.Vocab + int64(len(c.ranks))
			before := snapshot(t, dir)
			_, err := exec.ConvertMCAToHF(context.Background(), m, mca, filepath.Join(dir, "back"), exec.Options{})
			want := fmt.Sprintf(`%s has shape \[%d, %d\]; want \[%d, %d\] \(padded_vocab_size, hidden_size\)`,
				regexp.QuoteMeta(c.key), rows, cfg.Hidden, cfg.Vocab, cfg.Hidden)
			if err == nil || !regexp.MustCompile(want).MatchString(err.Error()) || !regexp.MustCompile(c.ranks[0]+`/model_optim_rng\.pt`).MatchString(err.Error()) {
				t.Fatalf("error %v\nwant one matching %q and naming %s", err, want, c.ranks[0])
			}
			if after := snapshot(t, dir); fmt.Sprint(before) != fmt.Sprint(after) {
				t.Errorf("the directory changed:\nbefore %v\nafter  %v", before, after)
			}
			if perr := planVerdict(m, mca, exec.Layout{}); perr == nil || perr.Error() != err.Error() {
				t.Errorf("PlanConversion gave %v, conversion %v", perr, err)
			}
		})
	}
}

// TestHFVocabRows: HF -> MCA refuses an embedding or LM head whose rows
// are not config.json's vocab_size (Megatron's padded_vocab_size), naming
// the tensor and the file, before anything is written. On main it was a
// warning and the conversion wrote an MCA checkpoint Megatron cannot load.
func TestHFVocabRows(t *testing.T) {
	m := stdlibModel(t, "llama")
	for _, c := range []struct{ hf, mca string }{
		{"model.embed_tokens.weight", "embedding.word_embeddings.weight"},
		{"lm_head.weight", "output_layer.weight"},
	} {
		t.Run(c.hf, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "hf")
			synthFor("llama", tensor.BF16).write(t, src, 2, 3)
			var cfg struct {
				Vocab  int64 `json:"vocab_size"`
				Hidden int64 `json:"hidden_size"`
			}
			if err := json.Unmarshal(readAll(t, filepath.Join(src, "config.json")), &cfg); err != nil || cfg.Vocab == 0 {
				t.Fatalf("config.json: %v %+v", err, cfg)
			}
			reshapeTensor(t, src, c.hf, tensor.Shape{cfg.Vocab + 1, cfg.Hidden})
			before := snapshot(t, dir)
			_, err := exec.ConvertHFToMCA(context.Background(), m, src, filepath.Join(dir, "mca"), exec.Options{})
			want := fmt.Sprintf(`%s has shape \[%d, %d\]; want \[%d, %d\] \(padded_vocab_size, hidden_size\)(.|\n)*%q in \S+model-0000[12]-of-00002\.safetensors`,
				regexp.QuoteMeta(c.mca), cfg.Vocab+1, cfg.Hidden, cfg.Vocab, cfg.Hidden, c.hf)
			if err == nil || !regexp.MustCompile(want).MatchString(err.Error()) {
				t.Fatalf("error %v\nwant one matching %q", err, want)
			}
			if after := snapshot(t, dir); fmt.Sprint(before) != fmt.Sprint(after) {
				t.Errorf("the directory changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}
