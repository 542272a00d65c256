package exec

import "github.com/rolltpl/rolltpl/runtime/shard"

// ShardClassification exposes the classification the rank files are
// split by, for the torch cross-check.
func ShardClassification(m *Model) shard.Classification { return shardClassification(m) }

// SetRankBufferHook sets the hook called with the buffer use of every
// rank file written; nil removes it.
func SetRankBufferHook(f func(path string, peak int64, allocs int)) { rankBufferHook = f }
