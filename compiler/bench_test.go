package compiler_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/langtest"
	"github.com/rolltpl/rolltpl/stdlib"
)

// benchCheck compiles a generated file of size bytes made of renamed
// copies of the stdlib's llama template as `rolltplc check` does (load,
// resolve, lower, check against the stdlib schemas, the Python backend's
// check).
func benchCheck(b *testing.B, size int) {
	src, err := langtest.BigFile(stdlib.Templates(), "llama.rolltpl", size)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "big.rolltpl")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	b.ResetTimer()
	var peak uint64
	for b.Loop() {
		peak = max(peak, langtest.PeakHeap(func() {
			res := compiler.Compile([]string{path}, compiler.Options{Lib: stdlib.Templates(), SchemaLib: stdSchemas(), Backend: pyemit.Check, DropSyntax: true})
			if res.Diags.HasErrors() {
				b.Fatal(res.Diags[0])
			}
		}))
	}
	b.ReportMetric(float64(peak)/1e6, "peak-heap-MB")
}

// BenchmarkCheck1MB and BenchmarkCheck10MB: checking is linear, so both
// report about the same MB/s; the target is 10 MB in under 10 s, with a
// peak RSS under 500 MB (peak-heap-MB is the heap part of it).
func BenchmarkCheck1MB(b *testing.B)  { benchCheck(b, 1<<20) }
func BenchmarkCheck10MB(b *testing.B) { benchCheck(b, 10<<20) }

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestCheckLinear: what checking allocates grows linearly with the input
// (a structural stand-in for time, which a unit test must not measure):
// at 4 times the templates, at most 6 times the bytes.
func TestCheckLinear(t *testing.T) {
	size := func(n int) uint64 {
		src, err := langtest.BigFile(stdlib.Templates(), "llama.rolltpl", n)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "big.rolltpl")
		if err := os.WriteFile(path, src, 0o644); err != nil {
			t.Fatal(err)
		}
		return allocated(func() {
			res := compiler.Compile([]string{path}, compiler.Options{Lib: stdlib.Templates(), SchemaLib: stdSchemas(), Backend: pyemit.Check})
			if res.Diags.HasErrors() {
				t.Fatal(res.Diags[0])
			}
			var sb strings.Builder
			_ = (&diag.Printer{Sources: res.Sources()}).Text(&sb, res.Diags)
		})
	}
	small, large := size(64<<10), size(256<<10)
	if large > 6*small {
		t.Errorf("checking 256 KB allocated %d bytes, %.1f times the %d for 64 KB (linear: 4)", large, float64(large)/float64(small), small)
	}
}
