package ir

import "github.com/rolltpl/rolltpl/lang/token"

// MTP says where a template's HF checkpoints keep their
// multi-token-prediction (MTP) layers. MCA names them as megatron-core
// (>= 0.16) does: the MTP block's own weights at mtp.layers.<i>.<name>
// (enorm, hnorm, eh_proj, final_layernorm) and its transformer layer at
// mtp.layers.<i>.mtp_model_layer.<name>, converted by the template's
// layer-relative ops exactly like a decoder layer.
//
// Exactly one of FirstLayer and HFPrefix is set.
type MTP struct {
	// FirstLayer, when set, is the HF layer index of the first MTP layer:
	// HF keeps MTP layer i as layer FirstLayer+i under the template's
	// LayerPrefix (DeepSeek-V3, GLM-4.5: hf.num_hidden_layers).
	FirstLayer *Expr
	// HFPrefix, when set, is the HF prefix of the MTP weights (Qwen3.5:
	// "mtp."): HFPrefix+"layers.<i>.<rest>" is a name of MTP layer i's
	// transformer layer, any other name under HFPrefix a weight of the
	// MTP block (one MTP layer only: the block's weights carry no index).
	HFPrefix string
	// Span is the field's span (the first one written).
	Span token.Span
}

// HFLayers is the HF prefix of the MTP transformer layers of a
// prefix-style template (HFPrefix+"layers."); "" for FirstLayer.
func (m *MTP) HFLayers() string {
	if m == nil || m.HFPrefix == "" {
		return ""
	}
	return m.HFPrefix + "layers."
}
