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
	for b.Loop() {
		if _, err := Source("big.rolltpl", src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFormat1MB and BenchmarkFormat10MB: formatting is linear, so
// both report about the same MB/s; the target is 10 MB in under 5 s.
func BenchmarkFormat1MB(b *testing.B)  { benchFormat(b, 1<<20) }
func BenchmarkFormat10MB(b *testing.B) { benchFormat(b, 10<<20) }
