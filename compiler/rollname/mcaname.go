package rollname

import (
	"fmt"
	"strconv"
	"strings"
)

// MCA name prefixes (ROLL convert_utils.py).
const (
	MCALayerPrefix     = "decoder.layers."
	MCAExpertPrefix    = ".mlp.experts.local_experts."
	MCAMTPPrefix       = "mtp.layers."
	MCAMTPExpertPrefix = ".mtp_model_layer.mlp.experts.local_experts."
	// MTPModelLayer is the infix of MTP layer names that
	// remove_mca_weight_prefix drops from their pure names.
	MTPModelLayer = ".mtp_model_layer"
)

// MCAName is a parsed MCA name: which layer and expert it belongs to and
// its pure name (the name with the layer and expert prefix removed, the
// string the parallel classes are matched against).
type MCAName struct {
	Full   string
	MTP    bool   // starts with "mtp.layers."
	Layer  int    // -1: no layer index (a global weight)
	Expert int    // -1: not a per-expert name
	Pure   string // for MTP names, ".mtp_model_layer" removed
}

// ParseMCAName splits an MCA name like ROLL's get_mca_layer_index,
// get_mca_moe_index and remove_mca_weight_prefix. It fails where ROLL
// raises: a name that starts with the layer prefix but has no integer
// after it, or that contains the expert prefix in the wrong place.
func ParseMCAName(name string) (MCAName, error) {
	n := MCAName{Full: name, Layer: -1, Expert: -1}
	prefix, exPrefix := MCALayerPrefix, MCAExpertPrefix
	if strings.HasPrefix(name, MCAMTPPrefix) {
		n.MTP = true
		prefix, exPrefix = MCAMTPPrefix, MCAMTPExpertPrefix
	}
	if !strings.HasPrefix(name, prefix) {
		n.Pure = name
		return n, nil
	}
	rest := name[len(prefix):]
	digits := leadingDigits(rest)
	if digits == "" {
		return MCAName{}, fmt.Errorf("%q: no layer index after %q", name, prefix)
	}
	layer, err := parseIndex(digits)
	if err != nil {
		return MCAName{}, fmt.Errorf("%q: layer index: %w", name, err)
	}
	after := rest[len(digits):]
	// get_layer_index requires "." or the end after the digits; otherwise
	// the name has no layer index but still gets a prefix removed below.
	if after == "" || after[0] == '.' {
		n.Layer = layer
	}
	cut := len(prefix) + len(digits)
	if strings.Contains(name, exPrefix) {
		if !strings.HasPrefix(after, exPrefix) {
			return MCAName{}, fmt.Errorf("%q: %q is not right after the layer index", name, exPrefix)
		}
		r2 := after[len(exPrefix):]
		ed := leadingDigits(r2)
		cut += len(exPrefix) + len(ed)
		if ed != "" {
			e, err := parseIndex(ed)
			if err != nil {
				return MCAName{}, fmt.Errorf("%q: expert index: %w", name, err)
			}
			if r := r2[len(ed):]; r == "" || r[0] == '.' {
				n.Expert = e
			}
		}
	}
	n.Pure = name[cut:]
	if n.MTP {
		n.Pure = strings.ReplaceAll(n.Pure, MTPModelLayer, "")
	}
	return n, nil
}

// AddMCAPrefix re-adds a layer (and expert) prefix to a pure name like
// ROLL's add_mca_layer_prefix / add_mca_mtp_layer_prefix: names not
// starting with "." are global and returned unchanged; expert < 0 means
// none.
func AddMCAPrefix(pure string, mtp bool, layer, expert int) string {
	if !strings.HasPrefix(pure, ".") {
		return pure
	}
	if !mtp {
		if expert >= 0 {
			return MCALayerPrefix + strconv.Itoa(layer) + MCAExpertPrefix + strconv.Itoa(expert) + pure
		}
		return MCALayerPrefix + strconv.Itoa(layer) + pure
	}
	if expert >= 0 {
		pure = MCAMTPExpertPrefix + strconv.Itoa(expert) + pure
	}
	inner := ""
	if !strings.Contains(pure, MTPModelLayer) && MTPInner(pure) {
		inner = MTPModelLayer
	}
	return MCAMTPPrefix + strconv.Itoa(layer) + inner + pure
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// parseIndex parses a string of decimal digits, rejecting values that do
// not fit comfortably in an int.
func parseIndex(digits string) (int, error) {
	v, err := strconv.ParseInt(digits, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a valid index", digits)
	}
	return int(v), nil
}
