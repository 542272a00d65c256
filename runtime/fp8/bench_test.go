package fp8

import (
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// BenchmarkDequantize measures the kernel on a [4096, 4096] weight to
// BF16 (bytes are the output's), whole and in 2 MiB runs (the blocks of
// a streamed write, decoded into one reused 2 MiB buffer as a pipe's
// block is) through one Decoder; ns/element is reported.
func BenchmarkDequantize(b *testing.B) {
	shape := tensor.Shape{4096, 4096}
	l := NewLayout(shape, [2]int64{128, 128})
	codes := make([]byte, shape.NumElements())
	for i := range codes {
		codes[i] = byte(i*7) & 0x7E
	}
	scales := make([]float32, 32*32)
	for i := range scales {
		scales[i] = 0.001 * float32(i+1)
	}
	dst := make([]byte, 2*len(codes))
	b.Run("whole", func(b *testing.B) {
		b.SetBytes(int64(len(dst)))
		for b.Loop() {
			if err := l.Dequantize("w", dst, tensor.BF16, codes, 0, scales); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(codes)), "ns/element")
	})
	b.Run("runs", func(b *testing.B) {
		const run = 1 << 20 // codes per 2 MiB of BF16
		b.SetBytes(int64(len(dst)))
		for b.Loop() {
			d, err := l.NewDecoder("w", tensor.BF16, scales)
			if err != nil {
				b.Fatal(err)
			}
			for e := 0; e < len(codes); e += run {
				if err := d.Decode(dst[:2*run], codes[e:e+run], int64(e)); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(codes)), "ns/element")
	})
}
