package vocab

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestProducing pins which op kinds of the catalog produce each layout a
// weight can require (the layout-mismatch check names them).
func TestProducing(t *testing.T) {
	for _, tc := range []struct {
		want Layout
		ops  []string
	}{
		{Layout{Form: FormQKV}, []string{"qkv", "qkv_bias", "gated_qkv"}},
		{Layout{Form: FormStacked, Parts: 2}, []string{"stack", "split_stack_experts"}},
		{Layout{Form: FormStacked, Parts: 6}, []string{"stack", "next_gdn", "qwen3_5_gdn"}},
		{Layout{Form: FormStacked, Parts: 3}, []string{"stack", "gdn_conv1d"}},
		{Layout{Form: FormPlain}, []string{"rename", "copy", "concat", "drop", "zero_centered_rmsnorm", "split_experts"}},
	} {
		if diff := cmp.Diff(tc.ops, Producing(tc.want)); diff != "" {
			t.Errorf("Producing(%s) (-want +got):\n%s", tc.want, diff)
		}
	}
}

// TestLayoutOf pins the layout of a stack by its operands: N HF tensors
// into one MCA name are a stack of N along dim; one HF tensor into N MCA
// names hands plain tensors on.
func TestLayoutOf(t *testing.T) {
	stack := Op("stack")
	for _, tc := range []struct {
		hf, mca, dim int
		want         Layout
	}{
		{2, 1, 0, Layout{Form: FormStacked, Parts: 2}},
		{3, 1, 1, Layout{Form: FormStacked, Parts: 3, Dim: 1}},
		{1, 2, 0, Layout{Form: FormPlain}},
	} {
		if got := stack.LayoutOf(tc.hf, tc.mca, tc.dim); got != tc.want {
			t.Errorf("stack.LayoutOf(%d, %d, %d) = %+v, want %+v", tc.hf, tc.mca, tc.dim, got, tc.want)
		}
	}
	if got := Op("rename").LayoutOf(1, 1, 0); got.Satisfies(Layout{Form: FormQKV}) {
		t.Errorf("rename satisfies the fused QKV layout")
	}
	if got := Op("qkv").LayoutOf(0, 1, 0); !got.Satisfies(Layout{Form: FormQKV}) {
		t.Errorf("qkv with step operands does not satisfy the fused QKV layout")
	}
}
