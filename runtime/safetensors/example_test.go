package safetensors_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// Example writes a file with a tensor given as two slices, then reads it
// back without copying.
func Example() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.safetensors")

	specs := []safetensors.Spec{
		{Name: "embed.weight", DType: tensor.U8, Shape: tensor.Shape{2, 3}},
		{Name: "scale", DType: tensor.U8, Shape: tensor.Shape{}},
	}
	err = safetensors.WriteFile(path, specs, map[string]string{"format": "pt"}, func(w *safetensors.Writer) error {
		if err := w.WriteTensor("embed.weight", []byte{1, 2, 3}, []byte{4, 5, 6}); err != nil {
			return err
		}
		return w.WriteTensor("scale", []byte{7})
	})
	if err != nil {
		log.Fatal(err)
	}

	f, err := safetensors.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	fmt.Println(f.Metadata())
	for _, t := range f.Tensors() {
		fmt.Println(t.Name, t.DType, t.Shape, t.Offset, f.Data(t))
		f.Release(t)
	}
	// Output:
	// map[format:pt]
	// embed.weight U8 [2, 3] 160 [1 2 3 4 5 6]
	// scale U8 [] 166 [7]
}
