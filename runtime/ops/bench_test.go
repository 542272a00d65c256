package ops

import (
	"fmt"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// The benchmarks report bytes/s of tensor data converted and allocations
// per op. For the row-permutation ops allocs/op and B/op are the same at
// every tensor size (they allocate piece lists, never data), which the
// small and large sub-benchmarks show side by side.

func zeros(b *testing.B, dt tensor.DType, shape ...int64) Value {
	b.Helper()
	x, err := tensor.New(dt, shape, make([]byte, tensor.Shape(shape).NumElements()*int64(dt.Size())))
	if err != nil {
		b.Fatal(err)
	}
	return TensorValue(x)
}

func valueBytes(vs []Value) int64 {
	var n int64
	for _, v := range vs {
		if v.Stacked != nil {
			for _, c := range v.Stacked.Components {
				n += c.Len()
			}
			continue
		}
		n += v.Tensor.Len()
	}
	return n
}

func benchOp(b *testing.B, op Op, cfg Config, in []Value) {
	b.Helper()
	b.Run("hf->mca", func(b *testing.B) {
		b.SetBytes(valueBytes(in))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := op.Apply(HFToMCA, cfg, in); err != nil {
				b.Fatal(err)
			}
		}
	})
	mca, err := op.Apply(HFToMCA, cfg, in)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("mca->hf", func(b *testing.B) {
		b.SetBytes(valueBytes(mca))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := op.Apply(MCAToHF, cfg, mca); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkQKV: Llama-3-8B attention (32 heads, 8 groups, d 128) at
// hidden sizes 64 and 4096 (the real one: 48 MiB of bf16 per layer).
func BenchmarkQKV(b *testing.B) {
	for _, h := range []int64{64, 4096} {
		b.Run(fmt.Sprintf("H=%d", h), func(b *testing.B) {
			cfg := Config{NumAttentionHeads: 32, NumQueryGroups: 8, KVChannels: 128, HiddenSize: h}
			benchOp(b, Op{Kind: KindQKV}, cfg, []Value{
				zeros(b, tensor.BF16, 4096, h), zeros(b, tensor.BF16, 1024, h), zeros(b, tensor.BF16, 1024, h)})
		})
	}
}

// BenchmarkGatedQKV: Qwen3-Next-like gated attention (16 heads, 2 groups,
// d 256).
func BenchmarkGatedQKV(b *testing.B) {
	for _, h := range []int64{64, 2048} {
		b.Run(fmt.Sprintf("H=%d", h), func(b *testing.B) {
			cfg := Config{NumAttentionHeads: 16, NumQueryGroups: 2, KVChannels: 256, HiddenSize: h}
			benchOp(b, Op{Kind: KindGatedQKV}, cfg, []Value{
				zeros(b, tensor.BF16, 8192, h), zeros(b, tensor.BF16, 512, h), zeros(b, tensor.BF16, 512, h)})
		})
	}
}

// BenchmarkStack: the SwiGLU gate/up pair of Llama-3-8B (2 × 14336 × H).
func BenchmarkStack(b *testing.B) {
	for _, h := range []int64{64, 4096} {
		b.Run(fmt.Sprintf("H=%d", h), func(b *testing.B) {
			benchOp(b, Op{Kind: KindStack, NumHF: 2, NumMCA: 1}, Config{}, []Value{
				zeros(b, tensor.BF16, 14336, h), zeros(b, tensor.BF16, 14336, h)})
		})
	}
}

// BenchmarkNextGDN: Qwen3-Next linear attention (16 key heads of 128, 32
// value heads of 128).
func BenchmarkNextGDN(b *testing.B) {
	for _, h := range []int64{64, 2048} {
		b.Run(fmt.Sprintf("H=%d", h), func(b *testing.B) {
			cfg := Config{LinearNumKeyHeads: 16, LinearNumValueHeads: 32, LinearKeyHeadDim: 128, LinearValueHeadDim: 128, HiddenSize: h}
			benchOp(b, Op{Kind: KindNextGDN}, cfg, []Value{
				zeros(b, tensor.BF16, 2*2048+2*4096, h), zeros(b, tensor.BF16, 64, h)})
		})
	}
}

// BenchmarkQwen35GDN: the same sizes in the Qwen3.5 layout.
func BenchmarkQwen35GDN(b *testing.B) {
	for _, h := range []int64{64, 2048} {
		b.Run(fmt.Sprintf("H=%d", h), func(b *testing.B) {
			cfg := Config{LinearNumKeyHeads: 16, LinearNumValueHeads: 32, LinearKeyHeadDim: 128, LinearValueHeadDim: 128}
			benchOp(b, Op{Kind: KindQwen3_5GDN}, cfg, []Value{
				zeros(b, tensor.BF16, 2*2048+4096, h), zeros(b, tensor.BF16, 4096, h),
				zeros(b, tensor.BF16, 32, h), zeros(b, tensor.BF16, 32, h)})
		})
	}
}

// BenchmarkSplitExperts: 128 experts, fused down_proj [E, H, F] of
// qwen3_5_moe (views only).
func BenchmarkSplitExperts(b *testing.B) {
	for _, h := range []int64{16, 1024} {
		b.Run(fmt.Sprintf("H=%d", h), func(b *testing.B) {
			benchOp(b, Op{Kind: KindSplitStackExperts}, Config{NumMoEExperts: 128}, []Value{
				zeros(b, tensor.BF16, 128, 2*384, h)})
		})
	}
}

// BenchmarkSplitExpertsTranspose: qwen3_vl_moe's transposing split, which
// has to move every byte; the output buffer is reused through Config.Alloc,
// as a converter with a staging area would.
func BenchmarkSplitExpertsTranspose(b *testing.B) {
	in := []Value{zeros(b, tensor.BF16, 64, 1024, 2*384)}
	buf := make([]byte, in[0].Tensor.Len())
	cfg := Config{NumMoEExperts: 64, Alloc: func(n int) []byte { return buf[:n] }}
	benchOp(b, Op{Kind: KindSplitStackExperts, Transpose: true}, cfg, in)
}

// BenchmarkZeroCenteredNorm: ±1 on a bf16 norm weight (arithmetic, new
// bytes through a reused buffer).
func BenchmarkZeroCenteredNorm(b *testing.B) {
	in := []Value{zeros(b, tensor.BF16, 1<<20)}
	buf := make([]byte, in[0].Tensor.Len())
	cfg := Config{Alloc: func(n int) []byte { return buf[:n] }}
	benchOp(b, Op{Kind: KindZeroCenteredRMSNorm}, cfg, in)
}
