package safetensors

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
)

// ShardTensor is a tensor of a [Sharded] checkpoint together with the file
// that holds it; read it with t.File.Data(t.TensorInfo).
type ShardTensor struct {
	TensorInfo
	File *File
}

// Sharded is a model directory opened by [OpenSharded]: one
// model.safetensors, or an index and all its shards.
type Sharded struct {
	// Index is the parsed index, or nil for a single model.safetensors.
	Index *Index
	// Files are the open files, in the order of Index.Shards().
	Files []*File

	tensors []ShardTensor
	byName  map[string]int
}

// OpenSharded opens the checkpoint in directory dir. Like transformers, it
// uses dir/model.safetensors if that exists and otherwise
// dir/model.safetensors.index.json and every shard it names. For an index,
// each tensor of weight_map must be in the shard it is mapped to, and each
// tensor in a shard must be mapped to that shard.
func OpenSharded(dir string) (*Sharded, error) {
	single := filepath.Join(dir, SingleFileName)
	if _, err := os.Stat(single); err == nil {
		f, err := Open(single)
		if err != nil {
			return nil, err
		}
		s := &Sharded{Files: []*File{f}}
		s.build()
		return s, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}

	indexPath := filepath.Join(dir, IndexFileName)
	if _, err := os.Stat(indexPath); errors.Is(err, os.ErrNotExist) {
		return nil, NoCheckpoint(dir)
	}
	ix, err := ReadIndex(indexPath)
	if err != nil {
		return nil, err
	}
	s := &Sharded{Index: ix}
	for _, shard := range ix.Shards() {
		f, err := Open(filepath.Join(dir, shard))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Files = append(s.Files, f)
		for _, t := range f.Tensors() {
			if want, ok := ix.WeightMap[t.Name]; !ok || want != shard {
				s.Close()
				if !ok {
					return nil, tensorErr(f.Path(), t.Name, "is not listed in the weight_map of %s", indexPath)
				}
				return nil, tensorErr(f.Path(), t.Name, "is mapped to shard %q by %s", want, indexPath)
			}
		}
	}
	s.build()
	if len(s.byName) == len(ix.WeightMap) {
		return s, nil // every tensor mapped is in its shard (checked above)
	}
	var missing []string
	for name := range ix.WeightMap {
		if _, ok := s.byName[name]; !ok {
			missing = append(missing, name)
		}
	}
	name := slices.Min(missing) // the first by name
	s.Close()
	return nil, tensorErr(indexPath, name, "is mapped to shard %q, which does not contain it", ix.WeightMap[name])
}

func (s *Sharded) build() {
	n := 0
	for _, f := range s.Files {
		n += len(f.Tensors())
	}
	s.byName = make(map[string]int, n)
	s.tensors = make([]ShardTensor, 0, n)
	for _, f := range s.Files {
		for _, t := range f.Tensors() {
			s.byName[t.Name] = len(s.tensors)
			s.tensors = append(s.tensors, ShardTensor{TensorInfo: t, File: f})
		}
	}
}

// Tensors returns all tensors, file by file in the order of Files and by
// offset within a file. The slice must not be modified.
func (s *Sharded) Tensors() []ShardTensor { return s.tensors }

// Lookup returns the tensor called name.
func (s *Sharded) Lookup(name string) (ShardTensor, bool) {
	i, ok := s.byName[name]
	if !ok {
		return ShardTensor{}, false
	}
	return s.tensors[i], true
}

// Close closes all files and returns the first error.
func (s *Sharded) Close() error {
	var first error
	for _, f := range s.Files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// NoCheckpoint is the error for a model directory with neither
// SingleFileName nor IndexFileName. When the weights are there as a
// pickle (pytorch_model.bin), it says so and how to get safetensors.
func NoCheckpoint(dir string) error {
	for _, bin := range []string{"pytorch_model.bin.index.json", "pytorch_model.bin"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err == nil {
			return fileErr(dir, "the weights are in %s (pickle), and rolltpl reads safetensors only: save the model again with transformers' save_pretrained(dir, safe_serialization=True) (its default), then convert that", bin)
		}
	}
	return fileErr(dir, "neither %s nor %s exists", SingleFileName, IndexFileName)
}
