package exec

import (
	"fmt"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// ShardClassification exposes the classification the rank files are
// split by, for the torch cross-check.
func ShardClassification(m *Model) shard.Classification { return shardClassification(m) }

// SetRankBufferHook sets the hook called with the buffer use of every
// rank file written; nil removes it.
func SetRankBufferHook(f func(path string, peak int64, allocs int)) { rankBufferHook = f }

// SetFP8DecodeHook sets the hook called with every run of an FP8 weight
// decoded as it is written and every weight decoded whole; nil removes
// it.
func SetFP8DecodeHook(f func(name string, bytes int64, whole bool)) { fp8DecodeHook = f }

// MCATensorMetas lists the model tensors of a rank file as the MCA reader
// sees them, for the fuzz targets' consistency checks.
func MCATensorMetas(f *torchsave.File) ([]TensorMeta, error) {
	root, ok := f.Root.(*torchsave.Dict)
	if !ok {
		return nil, fmt.Errorf("%s: the checkpoint is not a dict", f.Path)
	}
	if err := checkStateDicts(f.Path, root); err != nil {
		return nil, err
	}
	var metas []TensorMeta
	for _, t := range f.Tensors() {
		if name, ok := strings.CutPrefix(t.Name, "model/"); ok {
			metas = append(metas, TensorMeta{Name: name, DType: t.DType, Shape: t.Shape, Size: int64(len(t.Data)), File: f.Path})
		}
	}
	return metas, nil
}
