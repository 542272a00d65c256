package format

import (
	"testing"

	"github.com/rolltpl/rolltpl/lang/langtest"
	"github.com/rolltpl/rolltpl/stdlib"
)

// benchFormat formats a generated file of size bytes made of renamed
// copies of the stdlib's llama template.
func benchFormat(b *testing.B, size int) {
	src, err := langtest.BigFile(stdlib.Templates(), "llama.rolltpl", size)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	var peak uint64
	for b.Loop() {
		peak = max(peak, langtest.PeakHeap(func() {
			if _, err := Source("big.rolltpl", src); err != nil {
				b.Fatal(err)
			}
		}))
	}
	b.ReportMetric(float64(peak)/1e6, "peak-heap-MB")
}

// BenchmarkFormat1MB and BenchmarkFormat10MB: formatting is linear, so
// both report about the same MB/s; the target is 10 MB in under 5 s, with
// a peak RSS under 500 MB (peak-heap-MB is the heap part of it; the
// source and the output are 20 MB of it).
func BenchmarkFormat1MB(b *testing.B)  { benchFormat(b, 1<<20) }
func BenchmarkFormat10MB(b *testing.B) { benchFormat(b, 10<<20) }
