package shard

import (
	"fmt"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// A Llama-2-7B decoder layer in BF16: H 4096, FFN 11008, 32 heads
// (≈ 386 MiB).
const (
	llamaH   = 4096
	llamaFFN = 11008
)

type benchLayer struct {
	plain   []gw // name + tensor
	fc1     tensor.Stacked
	bytes   int64
	sharder map[int]*Sharder
}

var llamaLayer *benchLayer

func getLlamaLayer(b *testing.B) *benchLayer {
	b.Helper()
	if llamaLayer != nil {
		return llamaLayer
	}
	mk := func(shape ...int64) tensor.Tensor {
		n := tensor.Shape(shape).NumElements() * 2
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		t, err := tensor.New(tensor.BF16, shape, buf)
		if err != nil {
			b.Fatal(err)
		}
		return t
	}
	p := "decoder.layers.0"
	l := &benchLayer{sharder: map[int]*Sharder{}}
	l.plain = []gw{
		{name: p + ".self_attention.linear_qkv.layer_norm_weight", t: mk(llamaH)},
		{name: p + ".self_attention.linear_qkv.weight", t: mk(3*llamaH, llamaH)},
		{name: p + ".self_attention.linear_proj.weight", t: mk(llamaH, llamaH)},
		{name: p + ".mlp.linear_fc1.layer_norm_weight", t: mk(llamaH)},
		{name: p + ".mlp.linear_fc2.weight", t: mk(llamaH, llamaFFN)},
	}
	st, err := tensor.NewStacked(0, mk(llamaFFN, llamaH), mk(llamaFFN, llamaH))
	if err != nil {
		b.Fatal(err)
	}
	l.fc1 = st
	for _, w := range l.plain {
		l.bytes += w.t.Len()
	}
	l.bytes += 2 * st.Components[0].Len()
	llamaLayer = l
	return l
}

func (l *benchLayer) get(b *testing.B, tp int, opts *Options) *Sharder {
	if opts == nil {
		if s := l.sharder[tp]; s != nil {
			return s
		}
	}
	s, err := New(Layout{TP: tp, NumLayers: 1, Swiglu: true}, rollDefault(), opts)
	if err != nil {
		b.Fatal(err)
	}
	if opts == nil {
		l.sharder[tp] = s
	}
	return s
}

func (l *benchLayer) split(b *testing.B, s *Sharder, each func(Piece)) {
	for _, w := range l.plain {
		ps, err := s.Split(w.name, w.t)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range ps {
			each(p)
		}
	}
	ps, err := s.SplitStacked("decoder.layers.0.mlp.linear_fc1.weight", l.fc1)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range ps {
		each(p)
	}
}

// BenchmarkSplitLlamaLayer measures Split alone: making the views of every
// rank's share. It does not depend on the bytes, only on the number of
// pieces (row shares have one piece per matrix row).
func BenchmarkSplitLlamaLayer(b *testing.B) {
	l := getLlamaLayer(b)
	for _, tp := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("TP%d", tp), func(b *testing.B) {
			s := l.get(b, tp, nil)
			b.ReportAllocs()
			for b.Loop() {
				l.split(b, s, func(Piece) {})
			}
		})
	}
}

// BenchmarkShardLlamaLayer is what a writer pays: Split, then stream every
// piece into its rank file's buffer (here, memory standing in for the page
// cache). Every byte of the layer is copied once whatever the TP size, so
// TP4 costs about what TP1 costs. Throughput is the layer size per
// iteration.
func BenchmarkShardLlamaLayer(b *testing.B) {
	l := getLlamaLayer(b)
	out := make([]byte, 0, 2*l.bytes)
	for _, mode := range []struct {
		name string
		opts *Options
	}{{"views", nil}, {"contiguous_rows", &Options{ContiguousRows: true}}} {
		for _, tp := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/TP%d", mode.name, tp), func(b *testing.B) {
				s := l.get(b, tp, mode.opts)
				// Duplicated norms are written once per rank.
				want := l.bytes + int64(tp-1)*(l.plain[0].t.Len()+l.plain[3].t.Len())
				b.SetBytes(l.bytes)
				for b.Loop() {
					dst := out[:0]
					l.split(b, s, func(p Piece) { dst = p.Data.AppendTo(dst) })
					if int64(len(dst)) != want {
						b.Fatalf("wrote %d bytes, want %d", len(dst), want)
					}
				}
			})
		}
	}
}

// BenchmarkRowSplit isolates the row-parallel fc2 weight [4096, 11008] at
// TP4: views (4096 pieces per rank, copied by the writer) versus
// ContiguousRows (copied by Split into new buffers).
func BenchmarkRowSplit(b *testing.B) {
	l := getLlamaLayer(b)
	fc2 := l.plain[4]
	out := make([]byte, fc2.t.Len())
	for _, mode := range []struct {
		name string
		opts *Options
	}{{"views", nil}, {"contiguous_rows", &Options{ContiguousRows: true}}} {
		b.Run(mode.name+"/split", func(b *testing.B) {
			s := l.get(b, 4, mode.opts)
			b.SetBytes(fc2.t.Len())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Split(fc2.name, fc2.t); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(mode.name+"/split+write", func(b *testing.B) {
			s := l.get(b, 4, mode.opts)
			b.SetBytes(fc2.t.Len())
			for b.Loop() {
				ps, err := s.Split(fc2.name, fc2.t)
				if err != nil {
					b.Fatal(err)
				}
				dst := out[:0]
				for _, p := range ps {
					dst = p.Data.AppendTo(dst)
				}
			}
		})
	}
}

// BenchmarkPlanLargeMoE plans the write and the read of a Qwen3-235B-like
// model (94 layers, 128 experts, metadata only) on TP4 × PP4 × EP8 = 128
// rank files.
func BenchmarkPlanLargeMoE(b *testing.B) {
	const layers, experts, h, f = 94, 128, 4096, 1536
	l := Layout{TP: 4, PP: 4, EP: 8, NumLayers: layers, NumExperts: experts, Swiglu: true,
		AccountForEmbedding: true, AccountForLoss: true}
	s, err := New(l, testClassification(), nil)
	if err != nil {
		b.Fatal(err)
	}
	bf := tensor.BF16
	g := []GlobalTensor{{Name: EmbeddingName, DType: bf, Shape: tensor.Shape{151936, h}}}
	for i := range layers {
		p := fmt.Sprintf("decoder.layers.%d", i)
		g = append(g,
			GlobalTensor{Name: p + ".self_attention.linear_qkv.layer_norm_weight", DType: bf, Shape: tensor.Shape{h}},
			GlobalTensor{Name: p + ".self_attention.linear_qkv.weight", DType: bf, Shape: tensor.Shape{9216, h}},
			GlobalTensor{Name: p + ".self_attention.q_layernorm.weight", DType: bf, Shape: tensor.Shape{128}},
			GlobalTensor{Name: p + ".self_attention.linear_proj.weight", DType: bf, Shape: tensor.Shape{h, 8192}},
			GlobalTensor{Name: p + ".pre_mlp_layernorm.weight", DType: bf, Shape: tensor.Shape{h}},
			GlobalTensor{Name: p + ".mlp.router.weight", DType: bf, Shape: tensor.Shape{experts, h}})
		for e := range experts {
			x := fmt.Sprintf("%s.mlp.experts.local_experts.%d", p, e)
			g = append(g,
				GlobalTensor{Name: x + ".linear_fc1.weight", DType: bf, Shape: tensor.Shape{2 * f, h}, Components: []int64{f, f}},
				GlobalTensor{Name: x + ".linear_fc2.weight", DType: bf, Shape: tensor.Shape{h, f}})
		}
	}
	g = append(g, GlobalTensor{Name: "decoder.final_layernorm.weight", DType: bf, Shape: tensor.Shape{h}},
		GlobalTensor{Name: OutputLayerName, DType: bf, Shape: tensor.Shape{151936, h}})
	b.ReportMetric(float64(len(g)), "globals")
	for b.Loop() {
		wp, err := s.PlanWrite(g)
		if err != nil {
			b.Fatal(err)
		}
		var files []RankFile
		for _, f := range wp.Files {
			rf := RankFile{Rank: f.Rank, Keys: StageKeys(l)}
			for _, e := range f.Entries {
				rf.Tensors = append(rf.Tensors, LocalTensor{Stage: e.Stage, Name: e.Name, DType: e.DType, Shape: e.Shape})
			}
			files = append(files, rf)
		}
		rp, err := s.PlanRead(files)
		if err != nil {
			b.Fatal(err)
		}
		var n int
		for _, gr := range rp.Groups {
			n += len(gr.Globals)
		}
		if n != len(g) {
			b.Fatalf("read plan has %d globals, want %d", n, len(g))
		}
	}
}
