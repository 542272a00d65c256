package stdlib_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// ROLL looks an op up by name (roll-converter-spec.md §3.1): an exact key
// first, otherwise the first key, in registration order, whose pattern
// matches at the start of the name, the pattern being the key with "{}"
// turned into a lazy group "(.*?)" and nothing escaped (Python
// re.match(key.replace("{}", "(.*?)"), name)). The order of two ops
// therefore matters only when one name can be taken by a key of each: the
// two keys' patterns overlap. The functions below decide that exactly for
// the regular expressions ROLL's keys are: literal characters, "." (any
// character), "{}" and a "*" after either.

// lookupAtom is one element of a lookup key's pattern: a literal character
// or any character, repeated zero or more times when star is set.
type lookupAtom struct {
	any  bool
	c    rune
	star bool
}

// parseLookupKey turns a table key into the atoms of the pattern ROLL
// builds from it. Regular-expression syntax beyond ".", "{}" and "*" is an
// error rather than a guess, so that a key using it cannot make the
// overlap check silently wrong.
func parseLookupKey(key string) ([]lookupAtom, error) {
	var atoms []lookupAtom
	rs := []rune(key)
	for i := 0; i < len(rs); i++ {
		switch c := rs[i]; {
		case c == '{' && i+1 < len(rs) && rs[i+1] == '}':
			atoms = append(atoms, lookupAtom{any: true, star: true})
			i++
		case c == '*':
			if len(atoms) == 0 || atoms[len(atoms)-1].star {
				return nil, fmt.Errorf("key %q: %q at %d repeats nothing", key, c, i)
			}
			atoms[len(atoms)-1].star = true
		case c == '.':
			atoms = append(atoms, lookupAtom{any: true})
		case strings.ContainsRune(`\^$+?{}[]|()`, c) || c == '\n':
			return nil, fmt.Errorf("key %q: %q at %d is regular-expression syntax the overlap check does not model", key, c, i)
		default:
			atoms = append(atoms, lookupAtom{c: c})
		}
	}
	return atoms, nil
}

// lookupOverlap reports whether some name is matched at its start by both
// keys' patterns, i.e. whether ROLL's op lookup can have to choose between
// them by registration order. Because the end of a match is not anchored,
// that holds exactly when a string of one pattern's language is a prefix
// of a string of the other's: the search walks both patterns over a common
// string, one character at a time, and succeeds as soon as either pattern
// is complete (every remaining atom of the other can still be matched, so
// the other completes on a longer name).
func lookupOverlap(a, b string) (bool, error) {
	pa, err := parseLookupKey(a)
	if err != nil {
		return false, err
	}
	pb, err := parseLookupKey(b)
	if err != nil {
		return false, err
	}
	// closure lists the positions reachable from i by skipping starred
	// atoms (which match the empty string).
	closure := func(p []lookupAtom, i int) []int {
		out := []int{i}
		for i < len(p) && p[i].star {
			i++
			out = append(out, i)
		}
		return out
	}
	type state struct{ i, j int }
	seen := map[state]bool{{0, 0}: true}
	queue := []state{{0, 0}}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, i := range closure(pa, s.i) {
			for _, j := range closure(pb, s.j) {
				if i == len(pa) || j == len(pb) {
					return true, nil
				}
				x, y := pa[i], pb[j]
				if !x.any && !y.any && x.c != y.c {
					continue // no character matches both atoms
				}
				next := state{i, j}
				if !x.star {
					next.i++
				}
				if !y.star {
					next.j++
				}
				if !seen[next] {
					seen[next] = true
					queue = append(queue, next)
				}
			}
		}
	}
	return false, nil
}

// lookupRegexp compiles a key the way ROLL's lookup does, for checking
// lookupOverlap against real matching: Go's RE2 agrees with Python's re on
// the syntax lookup keys use.
func lookupRegexp(key string) *regexp.Regexp {
	return regexp.MustCompile(`^(?:` + strings.ReplaceAll(key, "{}", "(.*?)") + `)`)
}

func TestLookupOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"lm_head.weight", "lm_head.weight", true},
		{"lm_head.weight", "model.embed_tokens.weight", false},
		// A key whose language is a prefix of the other's: ROLL's prefix
		// match lets the shorter take the longer's names.
		{".gate_proj.weight", ".gate_proj.weight_scale_inv", true},
		{".gate_proj.weight_scale_inv", ".gate_proj.weight", true},
		{".mlp.gate.weight", ".mlp.gate", true},
		// Dots are not escaped: "." matches any character.
		{"a.c", "abc", true},
		{"abc", "a.c", true},
		{"a.c", "abd", false},
		{".down_proj.weight", "Xdown_proj.weight_scale", true},
		{".down_proj.weight", ".mlp.down_proj.weight", false},
		{".linear_fc1.weight", ".mlp.linear_fc1.weight", false},
		{".self_attention.linear_qkv.weight", ".self_attention.linear_qkv.layer_norm_weight", false},
		// "{}" is any string, anywhere in the key.
		{"vision_model.{}", "vision_model.blocks.0.attn.qkv.weight", true},
		{"visual.{}", "vision_model.{}", false},
		{"model.visual.{}", "model.embed_tokens.weight", false},
		{"model.visual.{}", "model.{}", true},
		{"{}x", "y", true},
		{"a{}b", "ac", true},
		{"a{}b", "b", false},
		{"ab", "a{}", true},
		{"{}", "anything", true},
		{"", "anything", true},
		// "*" repeats the atom before it ("mtp.*" is "mtp" then anything).
		{"mtp.*", "mtp", true},
		{"mtp.*", "mt", true},
		{"mtp.*", "mtp.layers.0.enorm.weight", true},
		{"mtp.*", "model.norm.weight", false},
		{"ab*c", "ac", true},
		{"ab*c", "abbbc", true},
		{"ab*c", "ad", false},
		{"ab*c", "abd", false},
		{"xa*", "xb", true}, // "x" is a prefix of "xb"
		{"xa*y", "xby", false},
	} {
		got, err := lookupOverlap(tc.a, tc.b)
		if err != nil {
			t.Errorf("lookupOverlap(%q, %q): %v", tc.a, tc.b, err)
			continue
		}
		if got != tc.want {
			t.Errorf("lookupOverlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if back, _ := lookupOverlap(tc.b, tc.a); back != got {
			t.Errorf("lookupOverlap(%q, %q) = %v, not symmetric", tc.b, tc.a, back)
		}
	}
	for _, bad := range []string{`a\.b`, "a+", "a?", "(a)", "[ab]", "a|b", "^a", "a$", "*a", "a**", "a{2}", "a{"} {
		if _, err := lookupOverlap(bad, "a"); err == nil {
			t.Errorf("lookupOverlap(%q, ...) accepted syntax it does not model", bad)
		}
	}
}

// TestLookupOverlapAgreesWithRegexp compares lookupOverlap with brute
// force on every pair of small keys: two keys overlap exactly when some
// string (up to a length that bounds the shortest witness) is matched at
// its start by both compiled patterns.
func TestLookupOverlapAgreesWithRegexp(t *testing.T) {
	// Keys of up to three atoms over a, b, ".", "{}" and a starred a.
	atoms := []string{"a", "b", ".", "{}", "a*"}
	keys := []string{""}
	for n, prev := 0, []string{""}; n < 3; n++ {
		var next []string
		for _, p := range prev {
			for _, a := range atoms {
				next = append(next, p+a)
			}
		}
		keys, prev = append(keys, next...), next
	}
	// Every step of a shortest witness advances one of the two keys by a
	// non-starred atom, so 6 characters suffice for keys of 3 atoms.
	var names []string
	for n, prev := 0, []string{""}; n <= 6; n++ {
		names = append(names, prev...)
		var next []string
		for _, p := range prev {
			for _, c := range "abc" {
				next = append(next, p+string(c))
			}
		}
		prev = next
	}
	matches := make([][]bool, len(keys))
	for k, key := range keys {
		re := lookupRegexp(key)
		matches[k] = make([]bool, len(names))
		for n, name := range names {
			matches[k][n] = re.MatchString(name)
		}
	}
	for i := range keys {
		for j := i; j < len(keys); j++ {
			brute := false
			for n := range names {
				if matches[i][n] && matches[j][n] {
					brute = true
					break
				}
			}
			got, err := lookupOverlap(keys[i], keys[j])
			if err != nil {
				t.Fatal(err)
			}
			if got != brute {
				t.Errorf("lookupOverlap(%q, %q) = %v, brute force %v", keys[i], keys[j], got, brute)
			}
		}
	}
}
