package exec

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/rollname"
)

// MCA-side prefixes (ROLL convert_utils.py, package rollname).
const (
	MCALayerPrefix  = rollname.MCALayerPrefix
	MCAExpertPrefix = rollname.MCAExpertPrefix
)

// prefixes are the layer prefix P and expert prefix M of one side.
type prefixes struct {
	layer, expert string
	// mtp, when set, reads the names of MTP layers (mtp.go); hf says
	// which side's names these are.
	mtp *mtpMap
	hf  bool
}

// weightPrefix is a parsed weight prefix: the bucket a tensor is buffered
// in (roll-converter-spec.md §3.2).
type weightPrefix struct {
	Prefix string // "" for a global weight
	Layer  int    // -1 for a global weight
	Expert int    // -1 unless a per-expert tensor
	Fused  bool   // the prefix ends in the expert prefix with no index
	// splitKeyed marks an MCA bucket holding all experts of a layer for a
	// split op, keyed "<e><pure name>".
	splitKeyed bool
	// mtp marks a bucket of MTP layer mtpIndex, whose Prefix and Layer
	// are canonical (mtp.go).
	mtp      bool
	mtpIndex int
}

// split returns the weight prefix of name and its pure name:
//
//   - a name not starting with P is global: prefix "", pure = name;
//   - else P<layer> must be followed by "." or the end;
//   - if M is set and the rest after P<layer> starts with M: P<layer>M<e>
//     when an expert index follows (a per-expert tensor), else P<layer>M (a
//     fused expert tensor holding all experts);
//   - else P<layer>.
//
// ROLL raises for a layer component that is not an integer; so does split.
func (p prefixes) split(name string) (weightPrefix, string, error) {
	if wp, pure, ok, err := p.splitMTP(name); ok || err != nil {
		return wp, pure, err
	}
	if !strings.HasPrefix(name, p.layer) {
		return weightPrefix{Layer: -1, Expert: -1}, name, nil
	}
	rest := name[len(p.layer):]
	comp, _, _ := strings.Cut(rest, ".")
	layer, ok := canonicalIndex(comp)
	if !ok {
		return weightPrefix{}, "", fmt.Errorf("the layer index %q after the layer prefix %q is not an integer", comp, p.layer)
	}
	wp := weightPrefix{Prefix: p.layer + comp, Layer: layer, Expert: -1}
	after := name[len(wp.Prefix):]
	if p.expert != "" && strings.HasPrefix(after, p.expert) {
		r2 := after[len(p.expert):]
		digits := leadingDigits(r2)
		if e, ok := canonicalIndex(digits); ok && (len(digits) == len(r2) || r2[len(digits)] == '.') {
			wp.Prefix += p.expert + digits
			wp.Expert = e
		} else {
			wp.Prefix += p.expert
			wp.Fused = true
		}
	}
	return wp, name[len(wp.Prefix):], nil
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// canonicalIndex parses a non-negative decimal index without sign or
// leading zeros (ROLL rebuilds prefixes from int(), so "07" would not
// round-trip).
func canonicalIndex(s string) (int, bool) {
	if s == "" || len(s) > 9 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// convertPrefix rewrites a weight prefix from one side's prefixes to the
// other's: the first occurrence of from.layer becomes to.layer and, when
// both sides have an expert prefix, the first occurrence of from.expert
// becomes to.expert (ROLL's convert_to_mca_prefix / convert_to_hf_prefix).
func convertPrefix(prefix string, from, to prefixes) string {
	if prefix == "" {
		return ""
	}
	prefix = strings.Replace(prefix, from.layer, to.layer, 1)
	if from.expert != "" && to.expert != "" {
		prefix = strings.Replace(prefix, from.expert, to.expert, 1)
	}
	return prefix
}
