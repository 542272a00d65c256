package exec

import "github.com/rolltpl/rolltpl/runtime/shard"

// ShardClassification exposes the classification the rank files are
// split by, for the torch cross-check.
func ShardClassification(m *Model) shard.Classification { return shardClassification(m) }
