package rollname

import "strings"

// Wildcard is the "{}" of a name pattern (lang/spec.md §7): a whole
// sub-tree of the name, carried from one side of a rule to the other.
const Wildcard = "{}"

// SplitWildcard splits a pattern with exactly one "{}" into the text
// before and after it; ok is false when pat has none or more than one.
func SplitWildcard(pat string) (before, after string, ok bool) {
	if strings.Count(pat, Wildcard) != 1 {
		return "", "", false
	}
	i := strings.Index(pat, Wildcard)
	return pat[:i], pat[i+len(Wildcard):], true
}

// MatchWildcard matches a whole name against a pattern with exactly one
// "{}", every other character literal (a dot is a dot), and returns what
// the "{}" stands for, which is never empty. A pattern without exactly
// one "{}" matches nothing.
func MatchWildcard(pat, name string) (capture string, ok bool) {
	before, after, ok := SplitWildcard(pat)
	if !ok || len(name) <= len(before)+len(after) || !strings.HasPrefix(name, before) || !strings.HasSuffix(name, after) {
		return "", false
	}
	return name[len(before) : len(name)-len(after)], true
}

// FillWildcard returns pat with its "{}" replaced by capture (the
// renaming of [FormatNames] with one captured value).
func FillWildcard(pat, capture string) string {
	return strings.Replace(pat, Wildcard, capture, 1)
}

// RewriteWildcard maps a name matched by the pattern from to the name
// the pattern to gives the same capture: with from "{}.weight" and to
// "{}.weight_scale_inv", "a.b.weight" becomes "a.b.weight_scale_inv".
func RewriteWildcard(from, to, name string) (string, bool) {
	c, ok := MatchWildcard(from, name)
	if !ok {
		return "", false
	}
	return FillWildcard(to, c), true
}

// WildcardsOverlap reports whether some name matches both patterns (each
// with exactly one "{}", which stands for a non-empty text): their texts
// before the "{}" must be one a prefix of the other and their texts
// after it one a suffix of the other; a long enough middle then makes a
// name both match.
func WildcardsOverlap(p, q string) bool {
	pb, pa, ok1 := SplitWildcard(p)
	qb, qa, ok2 := SplitWildcard(q)
	if !ok1 || !ok2 {
		return false
	}
	prefixes := strings.HasPrefix(pb, qb) || strings.HasPrefix(qb, pb)
	suffixes := strings.HasSuffix(pa, qa) || strings.HasSuffix(qa, pa)
	return prefixes && suffixes
}
