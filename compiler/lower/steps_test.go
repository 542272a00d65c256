package lower_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/lower"
	"github.com/rolltpl/rolltpl/stdlib"
)

// stepString renders a lowered operand: a leaf as its HF name, a step as
// step(operands; arg=value, ...) with the args sorted.
func stepString(op *ir.Op, x *ir.TensorExpr) string {
	if x.Leaf() {
		return fmt.Sprintf("%q", op.HF[x.HF].Value)
	}
	var parts []string
	for _, o := range x.Operands {
		parts = append(parts, stepString(op, o))
	}
	var args []string
	for _, k := range x.ArgNames() {
		args = append(args, k+"="+x.Args[k].Python(ir.PyNames{MCA: "mca"}))
	}
	return x.Step + "(" + strings.Join(parts, ", ") + "; " + strings.Join(args, ", ") + ")"
}

// TestLowerSteps pins what tensor-step operands lower to: the leaves in
// Op.HF in order, the arguments bound (positional or named, dim defaulted
// to 0, transpose's two dims as dims), the op's input count, and the
// inverse arguments lowering infers from the steps (cat's sizes,
// reshape's from).
func TestLowerSteps(t *testing.T) {
	tests := []struct {
		op    string
		hf    []string
		parts int
		steps []string
	}{{
		op:    `qkv split(".qkv", [mca.num_attention_heads * 2, 3, 3]) -> ".m"`,
		hf:    []string{".qkv"},
		parts: 3,
		steps: []string{`split(".qkv"; dim=0, sizes=[getattr(mca, 'num_attention_heads', None) * 2, 3, 3])`},
	}, {
		op:    `stack chunk(".gu", parts = 2, dim = -1) -> ".m"`,
		hf:    []string{".gu"},
		parts: 2,
		steps: []string{`chunk(".gu"; dim=-1, parts=2)`},
	}, {
		op:    `rename cat(split(".a", [4, 5]), ".b", dim = 0) -> ".m"`,
		hf:    []string{".a", ".b"},
		parts: 1,
		// ".b"'s size is unknown: no sizes (check reports not-invertible).
		steps: []string{`cat(split(".a"; dim=0, sizes=[4, 5]), ".b"; dim=0)`},
	}, {
		op:    `rename cat(split(".a", [4, 5], dim = 1), dim = 1) -> ".m"`,
		hf:    []string{".a"},
		parts: 1,
		steps: []string{`cat(split(".a"; dim=1, sizes=[4, 5]); dim=1, sizes=[4, 5])`},
	}, {
		op:    `rename reshape(transpose(reshape(".w", [2, -1, 8], from = [-1, 8]), 0, 1), [-1, 8]) -> ".m"`,
		hf:    []string{".w"},
		parts: 1,
		steps: []string{`reshape(transpose(reshape(".w"; from=[-1, 8], shape=[2, -1, 8]); dims=[0, 1]); from=[-1, 2, 8], shape=[-1, 8])`},
	}, {
		op:    `copy split(".x", [1, 2]), ".y" -> ".m"`,
		hf:    []string{".x", ".y"},
		parts: 3,
		steps: []string{`split(".x"; dim=0, sizes=[1, 2])`, `".y"`},
	}, {
		op:    `rename slice(".s", 1, mca.hidden_size - 1, dim = 1) -> ".m"`,
		hf:    []string{".s"},
		parts: 1,
		steps: []string{`slice(".s"; dim=1, start=1, stop=getattr(mca, 'hidden_size', None) - 1)`},
	}}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "t.rolltpl")
			src := "template qwen2 {\n    layer_prefix = \"model.layers.\"\n    weights {\n        " + tt.op + "\n    }\n}\n"
			if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			res := compiler.Compile([]string{file}, compiler.Options{Lib: stdlib.Templates()})
			tm := res.Program.Template("qwen2")
			if tm == nil || len(tm.Ops) != 1 {
				t.Fatalf("no op lowered: %v", res.Diags)
			}
			op := tm.Ops[0]
			var hf, steps []string
			for _, n := range op.HF {
				hf = append(hf, n.Value)
			}
			for _, in := range op.Inputs {
				steps = append(steps, stepString(op, in))
			}
			if diff := cmp.Diff(tt.hf, hf); diff != "" {
				t.Errorf("HF names (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.steps, steps); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
			if got := ir.InputParts(op.Inputs); got != tt.parts {
				t.Errorf("parts = %d, want %d", got, tt.parts)
			}
		})
	}
}

// TestExprRejectsNamedArgs: outside tensor steps a call takes no named
// arguments; lower.Expr reports one rather than dropping it.
func TestExprRejectsNamedArgs(t *testing.T) {
	_, diags := lower.Expr(parseExpr(t, "len(mca.x, n = 1)"))
	if len(diags) != 1 || !strings.Contains(diags[0].Detail, "named argument n") {
		t.Errorf("want one diagnostic about the named argument, got %v", diags)
	}
}
