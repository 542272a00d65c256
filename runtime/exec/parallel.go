package exec

import (
	"fmt"

	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// This file connects the conversions to runtime/shard, which owns the
// placement rules: the op results are joined into global MCA weights
// (shard.Stacks), which are split into the rank files of a parallel layout
// (HF → MCA); the rank files are merged back into global weights and cut
// into the components the inverse ops read (MCA → HF).

// Layout is the parallel layout of an MCA checkpoint: the layout of
// runtime/shard, where its rules live (sizes, divisibility, pipeline
// split, rank directory names). The zero value is the single rank file,
// a 1x1x1 layout.
type Layout = shard.Layout

// newStacks returns the stacked-weight rules (swiglu, gdn) of the model's
// classification at the layout mc records.
func newStacks(m *Model, mc *MCAConfig) (*shard.Stacks, error) {
	return shard.NewStacks(mc.Layout(), shardClassification(m))
}

// joinStack returns the global MCA weight name of an op result v: the
// components of a stacked swiglu or gdn result concatenated.
func joinStack(s *shard.Stacks, name string, v ops.Value) (tensor.Tensor, error) {
	return s.Join(name, v.Tensor, v.Stacked)
}

// cutStack returns the op input of the global MCA weight t: swiglu and
// gdn weights cut into their components.
func cutStack(s *shard.Stacks, name string, t tensor.Tensor) (ops.Value, error) {
	st, stacked, err := s.Cut(name, t)
	if err != nil || !stacked {
		return ops.TensorValue(t), err
	}
	return ops.StackedValue(st), nil
}

// shardClassification converts the template's effective parallel
// classification.
func shardClassification(m *Model) shard.Classification {
	e := m.Parallel
	maps := func(k string) []shard.MapEntry {
		var out []shard.MapEntry
		for _, me := range e.Maps[k] {
			out = append(out, shard.MapEntry{From: me.From, To: me.To})
		}
		return out
	}
	return shard.Classification{
		PreProcess:        e.Lists[rollname.KeyPreProcess],
		PostProcess:       e.Lists[rollname.KeyPostProcess],
		Duplicated:        e.Lists[rollname.KeyDuplicated],
		Column:            e.Lists[rollname.KeyColumn],
		Row:               e.Lists[rollname.KeyRow],
		Swiglu:            e.Lists[rollname.KeySwiglu],
		GDN:               e.Lists[rollname.KeyGDN],
		GroupedDuplicated: maps(rollname.KeyGroupedDuplicated),
		GroupedColumn:     maps(rollname.KeyGroupedColumn),
		GroupedRow:        maps(rollname.KeyGroupedRow),
		TEToLocal:         maps(rollname.KeyTEToLocal),
	}
}

func newSharder(m *Model, mc *MCAConfig) (*shard.Sharder, error) {
	// The megatron_llama set is already merged into m.Parallel (NewModel).
	sl := mc.Layout()
	if err := sl.Validate(); err != nil {
		return nil, fmt.Errorf("parallel layout: %w", err)
	}
	sh, err := shard.New(sl, shardClassification(m), nil)
	if err != nil {
		return nil, fmt.Errorf("parallel layout: %w", err)
	}
	return sh, nil
}
