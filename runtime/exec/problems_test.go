package exec_test

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// planFor writes the synthetic checkpoint of mt after edit and plans it
// from the headers.
func planFor(t *testing.T, mt string, edit func(t *testing.T, src string)) *exec.Plan {
	t.Helper()
	src := filepath.Join(t.TempDir(), "hf")
	synthFor(mt, tensor.BF16).write(t, src, 2, 1)
	if edit != nil {
		edit(t, src)
	}
	hc, err := exec.ReadHFCheckpoint(src)
	if err != nil {
		t.Fatal(err)
	}
	m := stdlibModel(t, mt)
	mc, err := exec.BuildMCAConfig(m, hc.ConfigText, hc.ConfigPath, src, exec.Layout{})
	if err != nil {
		t.Fatal(err)
	}
	return exec.PlanHFToMCA(m, mc, hc.Tensors)
}

func wantProblem(t *testing.T, p *exec.Plan, kind exec.ProblemKind, sev exec.Severity, pattern string) {
	t.Helper()
	re := regexp.MustCompile(pattern)
	for _, pr := range p.Problems {
		if pr.Kind == kind && pr.Severity == sev && re.MatchString(pr.Error()) {
			return
		}
	}
	t.Errorf("no %v %s problem matching %q; problems:", sev, kind, pattern)
	for _, pr := range p.Problems {
		t.Errorf("  %v %s: %v", pr.Severity, pr.Kind, pr.Error())
	}
}

func TestPlanProblems(t *testing.T) {
	t.Run("q rows = heads × head_dim", func(t *testing.T) {
		p := planFor(t, "qwen3", func(t *testing.T, src string) {
			setJSONKey(t, filepath.Join(src, "config.json"), "head_dim", 12)
		})
		wantProblem(t, p, exec.ProblemShape, exec.Error,
			`q has shape \[128, 64\].*want \[96, 64\] \(num_attention_heads × kv_channels.*"model\.layers\.0\.self_attn\.q_proj\.weight" in \S+\.safetensors`)
	})
	t.Run("expert count", func(t *testing.T) {
		p := planFor(t, "qwen3_moe", func(t *testing.T, src string) {
			setJSONKey(t, filepath.Join(src, "config.json"), "num_experts", 10)
		})
		wantProblem(t, p, exec.ProblemExperts, exec.Error, `layer 0 has 8 of 10 experts \(num_moe_experts\); missing expert 8, 9`)
	})
	t.Run("expert beyond num_experts", func(t *testing.T) {
		p := planFor(t, "mixtral", func(t *testing.T, src string) {
			setJSONKey(t, filepath.Join(src, "config.json"), "num_local_experts", 3)
		})
		wantProblem(t, p, exec.ProblemExperts, exec.Error, `layer 1 expert 3 is beyond num_moe_experts 3.*block_sparse_moe\.experts\.3\.w1\.weight`)
	})
	t.Run("untied without lm_head", func(t *testing.T) {
		p := planFor(t, "llama", func(t *testing.T, src string) { dropTensor(t, src, "lm_head.weight") })
		wantProblem(t, p, exec.ProblemConfig, exec.Warning, `no tensor becomes output_layer\.weight`)
		if p.Err() != nil {
			t.Errorf("a warning made the plan fail: %v", p.Err())
		}
	})
	t.Run("ignored key", func(t *testing.T) {
		p := planFor(t, "llama", nil)
		if len(p.Ignored) != 3 {
			t.Errorf("ignored %d tensors, want the 3 rotary inv_freq buffers", len(p.Ignored))
		}
		if err := p.Err(); err != nil {
			t.Error(err)
		}
	})
	t.Run("flag-dependent names", func(t *testing.T) {
		m, err := exec.NewModel(stdlibProgram(t), "qwen3", map[string]bool{"megatron_llama": true})
		if err != nil {
			t.Fatal(err)
		}
		src := filepath.Join(t.TempDir(), "hf")
		synthFor("qwen3", tensor.BF16).write(t, src, 1, 1)
		hc, _ := exec.ReadHFCheckpoint(src)
		mc, _ := exec.BuildMCAConfig(m, hc.ConfigText, hc.ConfigPath, src, exec.Layout{})
		p := exec.PlanHFToMCA(m, mc, hc.Tensors)
		if err := p.Err(); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, o := range p.Outputs() {
			if o.Name == "decoder.layers.0.input_layernorm.weight" {
				found = true
			}
		}
		if !found {
			t.Errorf("megatron_llama: no decoder.layers.0.input_layernorm.weight")
		}
	})
	t.Run("layout divisibility", func(t *testing.T) {
		p := planFor(t, "qwen2", nil)
		probs := exec.LayoutProblems(p.Config, exec.Layout{TP: 4, PP: 3})
		if len(probs) != 3 { // 14 heads, 2 groups by 4; 2 layers by 3
			t.Errorf("problems: %v", probs)
		}
	})
}
