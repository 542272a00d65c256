package rollname

import "strings"

// MTPBlockWeights are the megatron-core (>= 0.16) names of a
// multi-token-prediction block's own weights, relative to
// mtp.layers.<i>: MultiTokenPredictionLayer's enorm, hnorm, eh_proj and
// final_layernorm. Every other weight of an MTP layer belongs to its
// transformer layer, mtp.layers.<i>.mtp_model_layer.
var MTPBlockWeights = []string{".enorm.weight", ".hnorm.weight", ".eh_proj.weight", ".final_layernorm.weight"}

// IsMTPBlockWeight reports whether a layer-relative MCA name is a weight
// (or bias) of an MTP block itself rather than of its transformer layer.
func IsMTPBlockWeight(pure string) bool {
	for _, w := range MTPBlockWeights {
		if strings.HasPrefix(pure, strings.TrimSuffix(w, "weight")) {
			return true
		}
	}
	return false
}

// MTPInner is ROLL's has_transformer_layer test
// (add_mca_mtp_layer_prefix): a layer-relative MCA name goes under
// mtp.layers.<i>.mtp_model_layer when it contains "self_attention",
// "mlp" or "input_layernorm". It agrees with [IsMTPBlockWeight] on every
// name megatron-core writes; a name for which neither holds is placed
// by ROLL outside the transformer layer where megatron-core has no such
// weight.
func MTPInner(pure string) bool {
	return strings.Contains(pure, "self_attention") || strings.Contains(pure, "mlp") || strings.Contains(pure, "input_layernorm")
}
