package shard

// stageVariants are the names global weight name takes on pipeline rank
// pp, stage vp. With tied embeddings and PP > 1 the last stage holds the
// embedding as the LM head, output_layer.weight (ROLL's DistConverter
// renames it); with MTP layers it also holds the embedding itself under
// its own name, which megatron-core's MTP layers read on that stage
// (GPTModel builds an embedding wherever mtp_process is set, and its
// output layer keeps its own weight there). ROLL's DistConverter writes
// only the renamed copy in that case, which a megatron-core model with
// MTP layers and tied embeddings cannot load; here both are written, and
// MCA -> HF checks each as a replica of the embedding.
func (g *geometry) stageVariants(name string, pp, vp int) []string {
	if !(g.TiedEmbeddings && g.PP > 1 && g.isLast(pp, vp) && name == EmbeddingName) {
		return []string{name}
	}
	if g.MTPNumLayers > 0 {
		return []string{OutputLayerName, EmbeddingName}
	}
	return []string{OutputLayerName}
}
