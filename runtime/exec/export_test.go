package exec

import (
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// ShardClassification exposes the classification the rank files are
// split by, for the torch cross-check.
func ShardClassification(m *Model) shard.Classification { return shardClassification(m) }

// SetRankBufferHook sets the hook called with the buffer use of every
// rank file written; nil removes it.
func SetRankBufferHook(f func(path string, peak int64, allocs int)) { rankBufferHook = f }

// MCATensorMetas lists the model tensors of a rank file as the MCA reader
// sees them, for the fuzz targets' consistency checks.
func MCATensorMetas(f *torchsave.File) ([]TensorMeta, error) {
	_, metas, err := mcaTensors(f)
	return metas, err
}
