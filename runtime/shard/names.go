package shard

import (
	"fmt"
	"strconv"
	"strings"
)

// MCA name prefixes (roll-converter-spec.md §3.3, ROLL convert_utils.py).
const (
	layerPrefix     = "decoder.layers."
	expertPrefix    = ".mlp.experts.local_experts."
	mtpPrefix       = "mtp.layers."
	mtpExpertPrefix = ".mtp_model_layer.mlp.experts.local_experts."
	mtpModelLayer   = ".mtp_model_layer"

	// EmbeddingName is the word embedding; the first pipeline stage holds
	// it (and the last one too with tied embeddings or MTP).
	EmbeddingName = "embedding.word_embeddings.weight"
	// OutputLayerName is the LM head; with tied embeddings and PP > 1 the
	// last stage stores the embedding under this name.
	OutputLayerName = "output_layer.weight"
)

// mcaName is a parsed MCA name: which layer and expert it belongs to and
// its pure name (the name with the layer and expert prefix removed, the
// string the classification lists are matched against).
type mcaName struct {
	full   string
	mtp    bool   // starts with "mtp.layers."
	layer  int    // -1: no layer index (a global weight)
	expert int    // -1: not a per-expert name
	pure   string // for MTP names, ".mtp_model_layer" removed
}

// parseName splits an MCA name like ROLL's get_mca_layer_index,
// get_mca_moe_index and remove_mca_weight_prefix. It fails where ROLL
// raises: a name that starts with the layer prefix but has no integer
// after it, or that contains the expert prefix in the wrong place.
func parseName(name string) (mcaName, error) {
	n := mcaName{full: name, layer: -1, expert: -1}
	prefix, exPrefix := layerPrefix, expertPrefix
	if strings.HasPrefix(name, mtpPrefix) {
		n.mtp = true
		prefix, exPrefix = mtpPrefix, mtpExpertPrefix
	}
	if !strings.HasPrefix(name, prefix) {
		n.pure = name
		return n, nil
	}
	rest := name[len(prefix):]
	digits := leadingDigits(rest)
	if digits == "" {
		return mcaName{}, fmt.Errorf("%q: no layer index after %q", name, prefix)
	}
	layer, err := atoi(digits)
	if err != nil {
		return mcaName{}, fmt.Errorf("%q: layer index: %w", name, err)
	}
	after := rest[len(digits):]
	// get_layer_index requires "." or the end after the digits; otherwise
	// the name has no layer index but still gets a prefix removed below.
	if after == "" || after[0] == '.' {
		n.layer = layer
	}
	cut := len(prefix) + len(digits)
	if strings.Contains(name, exPrefix) {
		if !strings.HasPrefix(after, exPrefix) {
			return mcaName{}, fmt.Errorf("%q: %q is not right after the layer index", name, exPrefix)
		}
		r2 := after[len(exPrefix):]
		ed := leadingDigits(r2)
		cut += len(exPrefix) + len(ed)
		if ed != "" {
			e, err := atoi(ed)
			if err != nil {
				return mcaName{}, fmt.Errorf("%q: expert index: %w", name, err)
			}
			if r := r2[len(ed):]; r == "" || r[0] == '.' {
				n.expert = e
			}
		}
	}
	n.pure = name[cut:]
	if n.mtp {
		n.pure = strings.ReplaceAll(n.pure, mtpModelLayer, "")
	}
	return n, nil
}

// withPrefix re-adds a layer (and expert) prefix to a pure name like
// ROLL's add_mca_layer_prefix / add_mca_mtp_layer_prefix: names not
// starting with "." are global and returned unchanged; expert < 0 means
// none.
func withPrefix(pure string, mtp bool, layer, expert int) string {
	if !strings.HasPrefix(pure, ".") {
		return pure
	}
	if !mtp {
		if expert >= 0 {
			return layerPrefix + strconv.Itoa(layer) + expertPrefix + strconv.Itoa(expert) + pure
		}
		return layerPrefix + strconv.Itoa(layer) + pure
	}
	if expert >= 0 {
		pure = mtpExpertPrefix + strconv.Itoa(expert) + pure
	}
	inner := ""
	if !strings.Contains(pure, mtpModelLayer) &&
		(strings.Contains(pure, "self_attention") || strings.Contains(pure, "mlp") || strings.Contains(pure, "input_layernorm")) {
		inner = mtpModelLayer
	}
	return mtpPrefix + strconv.Itoa(layer) + inner + pure
}

// trailingDigits returns the decimal digits at the end of s (ROLL's
// extract_suffix_number), "" if none.
func trailingDigits(s string) string {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	return s[i:]
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// atoi parses a string of decimal digits, rejecting values that do not
// fit comfortably in an int.
func atoi(digits string) (int, error) {
	v, err := strconv.ParseInt(digits, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a valid index", digits)
	}
	return int(v), nil
}
