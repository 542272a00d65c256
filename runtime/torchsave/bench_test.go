package torchsave

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// BenchmarkWrite writes 8 tensors of 32 MiB from one reused buffer: the
// CRC pass plus write(2) into the page cache.
func BenchmarkWrite(b *testing.B) {
	const n, size = 8, 32 << 20
	model := &Dict{Ordered: true}
	for i := range n {
		model.Items = append(model.Items, Item{"layer." + strconv.Itoa(i), ts(tensor.BF16, size/2)})
	}
	root := dict("model", model)
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i * 13)
	}
	path := filepath.Join(b.TempDir(), "bench.pt")
	b.SetBytes(n * size)
	for b.Loop() {
		w, err := Create(path, root, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, ti := range w.Tensors() {
			if err := w.WriteTensor(ti.Name, buf); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen opens a file of 5000 small tensors: zip directory, pickle
// and tree resolution.
func BenchmarkOpen(b *testing.B) {
	model := &Dict{Ordered: true}
	for i := range 5000 {
		model.Items = append(model.Items, Item{"decoder.layers." + strconv.Itoa(i) + ".mlp.linear_fc1.weight", ts(tensor.BF16, 4, 4)})
	}
	root := dict("model", model)
	path := filepath.Join(b.TempDir(), "bench.pt")
	writeFile(b, path, root, fillData(b, root), nil)
	for b.Loop() {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if len(f.Tensors()) != 5000 {
			b.Fatal("wrong tensor count")
		}
		f.Close()
	}
}

// BenchmarkVerifyCRC checks the CRCs of a 256 MiB file in the page cache.
func BenchmarkVerifyCRC(b *testing.B) {
	root := dict("model", stateDict("w", ts(tensor.U8, 256<<20)))
	path := filepath.Join(b.TempDir(), "bench.pt")
	w, err := Create(path, root, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.WriteTensor("model/w", make([]byte, 256<<20)); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(256 << 20)
	for b.Loop() {
		if err := f.VerifyCRC(); err != nil {
			b.Fatal(err)
		}
	}
}
