package safetensors

import (
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// benchFile writes a 64 MiB file of sixteen 4 MiB BF16 tensors.
func benchFile(b *testing.B) (string, int64) {
	b.Helper()
	var specs []Spec
	for i := range 16 {
		specs = append(specs, Spec{fmt.Sprintf("model.layers.%d.weight", i), tensor.BF16, tensor.Shape{1024, 2048}})
	}
	data, _ := sample(tensor.BF16, 1024*2048)
	path := filepath.Join(b.TempDir(), "bench.safetensors")
	err := WriteFile(path, specs, map[string]string{"format": "pt"}, func(w *Writer) error {
		for _, s := range specs {
			if err := w.WriteTensor(s.Name, data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return path, int64(len(specs) * len(data))
}

// BenchmarkRead streams through a file as a converter does: Data for each
// tensor, one pass over its bytes (a CRC), then Release.
func BenchmarkRead(b *testing.B) {
	path, size := benchFile(b)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		var crc uint32
		for _, t := range f.Tensors() {
			crc = crc32.Update(crc, crc32.IEEETable, f.Data(t))
			if err := f.Release(t); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
}

// BenchmarkCopy copies every tensor from a mapped file into a new file
// through a Writer, without staging buffers.
func BenchmarkCopy(b *testing.B) {
	path, size := benchFile(b)
	out := filepath.Join(b.TempDir(), "out.safetensors")
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		src, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		specs := make([]Spec, len(src.Tensors()))
		for i, t := range src.Tensors() {
			specs[i] = t.Spec()
		}
		err = WriteFile(out, specs, src.Metadata(), func(w *Writer) error {
			for _, t := range src.Tensors() {
				if err := w.WriteTensor(t.Name, src.Data(t)); err != nil {
					return err
				}
				src.Release(t)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		src.Close()
		os.Remove(out)
	}
}
