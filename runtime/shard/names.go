package shard

import (
	"fmt"
	"strconv"
)

// Global MCA names.
const (
	// EmbeddingName is the word embedding; the first pipeline stage holds
	// it (and the last one too with tied embeddings or MTP).
	EmbeddingName = "embedding.word_embeddings.weight"
	// OutputLayerName is the LM head; with tied embeddings and PP > 1 the
	// last stage stores the embedding under this name.
	OutputLayerName = "output_layer.weight"
)

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
