package exec_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
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

// TestPlanStructure: the expected structure of MoE, biased and
// multimodal models, one planned checkpoint per case (both a defect the
// check finds and a variation it must accept).
func TestPlanStructure(t *testing.T) {
	for _, c := range []struct {
		name, model string
		edit        func(t *testing.T, src string)
		kind        exec.ProblemKind
		want        string // "" = no error
	}{
		{"an expert without w2", "mixtral", func(t *testing.T, src string) {
			dropTensor(t, src, "model.layers.1.block_sparse_moe.experts.2.w2.weight")
		}, exec.ProblemMissing, `layer 1 expert 2 \(model\.layers\.1\.block_sparse_moe\.experts\.2\): the checkpoint has no "model\.layers\.1\.block_sparse_moe\.experts\.2\.w2\.weight", which 7 experts of the same kind have`},
		{"a MoE layer without any expert", "qwen3_moe", func(t *testing.T, src string) {
			editShard(t, src, func(specs []safetensors.Spec, data map[string][]byte) []safetensors.Spec {
				return slices.DeleteFunc(specs, func(s safetensors.Spec) bool { return strings.HasPrefix(s.Name, "model.layers.1.mlp.experts.") })
			})
		}, exec.ProblemMissing, `layer 1 \(model\.layers\.1\): the layer has a router but the checkpoint has none of its 8 experts.*"model\.layers\.1\.mlp\.gate\.weight"`},
		{"expert down_proj of moe_intermediate_size+1", "qwen3_moe", func(t *testing.T, src string) {
			for e := range 8 {
				for l := range 2 {
					reshapeTensor(t, src, fmt.Sprintf("model.layers.%d.mlp.experts.%d.down_proj.weight", l, e), tensor.Shape{64, 33})
				}
			}
		}, exec.ProblemShape, `decoder\.layers\.0\.mlp\.experts\.local_experts\.0\.linear_fc2\.weight has shape \[64, 33\]; want \[64, 32\] \(hidden_size, moe_ffn_hidden_size\)`},
		{"shared expert gate_proj of the wrong size", "qwen2_moe", func(t *testing.T, src string) {
			for l := range 2 {
				for _, n := range []string{"gate_proj", "up_proj"} {
					reshapeTensor(t, src, fmt.Sprintf("model.layers.%d.mlp.shared_expert.%s.weight", l, n), tensor.Shape{95, 64})
				}
			}
		}, exec.ProblemShape, `shared_experts\.linear_fc1\.weight has shape \[190, 64\]; want \[192, 64\] \(2 × moe_shared_expert_intermediate_size \(swiglu\), hidden_size\)`},
		{"gate and up of intermediate_size+1", "llama", func(t *testing.T, src string) {
			for l := range 3 {
				for _, n := range []string{"gate_proj", "up_proj"} {
					reshapeTensor(t, src, fmt.Sprintf("model.layers.%d.mlp.%s.weight", l, n), tensor.Shape{161, 64})
				}
			}
		}, exec.ProblemShape, `decoder\.layers\.2\.mlp\.linear_fc1\.weight has shape \[322, 64\]; want \[320, 64\] \(2 × ffn_hidden_size \(swiglu\), hidden_size\)`},
		{"a router of the wrong width", "qwen2_moe", func(t *testing.T, src string) {
			for l := range 2 {
				reshapeTensor(t, src, fmt.Sprintf("model.layers.%d.mlp.gate.weight", l), tensor.Shape{4, 65})
			}
		}, exec.ProblemShape, `router\.weight has shape \[4, 65\]; want \[4, 64\] \(num_moe_experts, hidden_size\)`},
		{"q/k norms of the wrong size", "qwen3", func(t *testing.T, src string) {
			for l := range 2 {
				reshapeTensor(t, src, fmt.Sprintf("model.layers.%d.self_attn.k_norm.weight", l), tensor.Shape{64})
			}
		}, exec.ProblemShape, `k_layernorm\.weight has shape \[64\]; want \[16\] \(kv_channels\)`},
		{"biases in one layer only", "qwen2", func(t *testing.T, src string) {
			for _, n := range []string{"q", "k", "v"} {
				dropTensor(t, src, "model.layers.1.self_attn."+n+"_proj.bias")
			}
		}, exec.ProblemMissing, `layer 1 .*no "model\.layers\.1\.self_attn\.q_proj\.bias", "model\.layers\.1\.self_attn\.k_proj\.bias", "model\.layers\.1\.self_attn\.v_proj\.bias", which 1 layer of the same kind have`},
		{"biases in no layer (optional)", "qwen2", func(t *testing.T, src string) {
			for l := range 2 {
				for _, n := range []string{"q", "k", "v"} {
					dropTensor(t, src, fmt.Sprintf("model.layers.%d.self_attn.%s_proj.bias", l, n))
				}
			}
		}, "", ""},
		{"a vision model without its tower (optional)", "qwen2_vl", func(t *testing.T, src string) {
			editShard(t, src, func(specs []safetensors.Spec, data map[string][]byte) []safetensors.Spec {
				return slices.DeleteFunc(specs, func(s safetensors.Spec) bool { return strings.HasPrefix(s.Name, "visual.") })
			})
		}, "", ""},
		{"a vision model without its final norm", "qwen2_vl", func(t *testing.T, src string) {
			dropTensor(t, src, "model.norm.weight")
		}, exec.ProblemMissing, `no "model\.norm\.weight" of shape \[96\] \(hidden_size\)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := planFor(t, c.model, c.edit)
			if c.want == "" {
				if err := p.Err(); err != nil {
					t.Errorf("want no error, got %v", err)
				}
				return
			}
			wantProblem(t, p, c.kind, exec.Error, c.want)
		})
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
		wantProblem(t, p, exec.ProblemMissing, exec.Error, `no "lm_head\.weight" of shape \[384, 64\]`)
	})
	t.Run("tied without lm_head", func(t *testing.T) {
		p := planFor(t, "qwen2", func(t *testing.T, src string) { dropTensor(t, src, "lm_head.weight") })
		if err := p.Err(); err != nil {
			t.Errorf("tied embeddings need no lm_head: %v", err)
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

// TestProblemListCapped plans a shard with thousands of unmatched names:
// the text listing, the JSON report and the error string list 20
// problems of the kind and count the rest, while the totals count all.
func TestProblemListCapped(t *testing.T) {
	const n = 3000
	p := planFor(t, "llama", func(t *testing.T, src string) {
		editShard(t, src, func(specs []safetensors.Spec, data map[string][]byte) []safetensors.Spec {
			for i := range n {
				name := fmt.Sprintf("model.stray_%d.weight", i)
				data[name] = make([]byte, 2)
				specs = append(specs, safetensors.Spec{Name: name, DType: tensor.BF16, Shape: tensor.Shape{1}})
			}
			return specs
		})
	})
	var buf bytes.Buffer
	exec.WriteProblems(&buf, p.Problems)
	text := buf.String()
	if got := strings.Count(text, "error [unmatched]"); got != exec.MaxProblemsPerKind {
		t.Errorf("listed %d unmatched problems, want %d", got, exec.MaxProblemsPerKind)
	}
	if want := fmt.Sprintf("... and %d more [unmatched] problems (20 listed)\n", n-exec.MaxProblemsPerKind); !strings.Contains(text, want) {
		t.Errorf("no line %q in:\n%s", want, text)
	}
	if len(text) > 8<<10 {
		t.Errorf("%d bytes of problems for %d names", len(text), n)
	}
	var sum bytes.Buffer
	p.WriteSummary(&sum)
	if !strings.Contains(sum.String(), fmt.Sprintf("%d errors", n)) || sum.Len() > 10<<10 {
		t.Errorf("summary of %d bytes:\n%s", sum.Len(), sum.String())
	}
	r := p.Report()
	if r.Errors != n || len(r.Problems) != exec.MaxProblemsPerKind {
		t.Errorf("report: %d errors, %d problems listed", r.Errors, len(r.Problems))
	}
	if diff := cmp.Diff([]exec.KindCount{{Kind: exec.ProblemUnmatched, Count: n - exec.MaxProblemsPerKind}}, r.Omitted); diff != "" {
		t.Errorf("omitted (-want +got):\n%s", diff)
	}
	msg := p.Err().Error()
	if !strings.HasPrefix(msg, fmt.Sprintf("%d problems:", n)) || !strings.Contains(msg, fmt.Sprintf("and %d more [unmatched]", n-exec.MaxProblemsPerKind)) || len(msg) > 8<<10 {
		t.Errorf("error of %d bytes: %.300s", len(msg), msg)
	}
}

// TestProblemTensorsCapped: one problem with many tensors lists 12 of
// them, in text, in the error string and in the report.
func TestProblemTensorsCapped(t *testing.T) {
	pr := exec.Problem{Kind: exec.ProblemIncomplete, Severity: exec.Error, Msg: "m"}
	for i := range 100 {
		pr.Tensors = append(pr.Tensors, exec.ProblemTensor{Name: fmt.Sprintf("t%d", i), File: "f"})
	}
	if s := pr.Error(); strings.Count(s, `"t`) != exec.MaxProblemTensors || !strings.HasSuffix(s, " and 88 more") {
		t.Errorf("Error() = %s", s)
	}
	var buf bytes.Buffer
	exec.WriteProblems(&buf, []exec.Problem{pr})
	if strings.Count(buf.String(), `"t`) != exec.MaxProblemTensors || !strings.Contains(buf.String(), "... and 88 more") {
		t.Errorf("WriteProblems:\n%s", buf.String())
	}
}
