package torchsave_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// A ROLL/Megatron "legacy" checkpoint: {"model": OrderedDict(name → tensor)}.
func Example() {
	dir, err := os.MkdirTemp("", "torchsave-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model_optim_rng.pt")

	model := &torchsave.Dict{Ordered: true, Items: []torchsave.Item{
		{Key: "embedding.word_embeddings.weight", Value: torchsave.TensorSpec{DType: tensor.BF16, Shape: tensor.Shape{4, 2}}},
		{Key: "decoder.final_layernorm.weight", Value: torchsave.TensorSpec{DType: tensor.F32, Shape: tensor.Shape{2}}},
	}}
	root := &torchsave.Dict{Items: []torchsave.Item{{Key: "model", Value: model}}}

	w, err := torchsave.Create(path, root, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Abort()
	emb := make([]byte, 16)
	// Bytes may come in several slices; they are written without copying.
	if err := w.WriteTensor("model/embedding.word_embeddings.weight", emb[:8], emb[8:]); err != nil {
		log.Fatal(err)
	}
	if err := w.WriteTensor("model/decoder.final_layernorm.weight", make([]byte, 8)); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	f, err := torchsave.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	fmt.Println("folder:", f.ArchiveName)
	for _, t := range f.Tensors() {
		fmt.Println(t.Name, t.DType, t.Shape, len(t.Data), "bytes in", "data/"+t.Storage)
	}
	// Output:
	// folder: model_optim_rng
	// model/embedding.word_embeddings.weight BF16 [4, 2] 16 bytes in data/0
	// model/decoder.final_layernorm.weight F32 [2] 8 bytes in data/1
}
