package fp8

import (
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// BenchmarkDequantize measures the kernel on a [4096, 4096] weight to
// BF16 (bytes are the output's).
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
	b.SetBytes(int64(len(dst)))
	for b.Loop() {
		if err := l.Dequantize("w", dst, tensor.BF16, codes, 0, scales); err != nil {
			b.Fatal(err)
		}
	}
}
