package shard_test

import (
	"fmt"

	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

func Example() {
	l := shard.Layout{TP: 2, PP: 2, NumLayers: 4}
	cls := shard.Classification{
		PreProcess: []string{"embedding.word_embeddings.weight"},
		Column:     []string{"embedding.word_embeddings.weight", ".self_attention.linear_qkv.weight"},
		Row:        []string{".self_attention.linear_proj.weight"},
	}
	s, err := shard.New(l, cls, nil)
	if err != nil {
		panic(err)
	}
	w, _ := tensor.New(tensor.BF16, tensor.Shape{8, 4}, make([]byte, 8*4*2))
	pieces, err := s.Split("decoder.layers.3.self_attention.linear_proj.weight", w)
	if err != nil {
		panic(err)
	}
	for _, p := range pieces {
		fmt.Println(shard.RankDir(p.Rank, l), shard.StageKey(p.Stage, l), p.Name, p.Data.Shape)
	}
	// Output:
	// mp_rank_00_001 model decoder.layers.1.self_attention.linear_proj.weight [8, 2]
	// mp_rank_01_001 model decoder.layers.1.self_attention.linear_proj.weight [8, 2]
}
