package rollname

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Op lookup is ROLL's Template.get_conver_op: a weight's pure name is
// looked up in the op table (hf_name_to_converter or
// mca_name_to_converter, keys in first-registration order) by exact key
// first; otherwise the first key, in order, whose regular expression
// key.replace("{}", "(.*?)") matches at the start of the name (Python
// re.match) wins. Dots in a key are not escaped there, so "." matches any
// character, and a "|" in a key alternates over the whole key, every
// alternative anchored at the start: "a.{}|b" matches "b.x" but not
// "x.b".

// keyCache holds compiled lookup keys by key, bounded like globCache.
var keyCache struct {
	sync.Mutex
	m map[string]keyEntry
}

type keyEntry struct {
	re  *regexp.Regexp
	err error
}

// LookupRegexp returns the regular expression ROLL's op lookup matches a
// table key with, anchored at the start only (re.match). A key using
// Python regexp syntax Go's RE2 lacks (look-arounds, back-references) is
// an error, and such a key matches no name here.
func LookupRegexp(key string) (*regexp.Regexp, error) {
	keyCache.Lock()
	e, ok := keyCache.m[key]
	keyCache.Unlock()
	if ok {
		return e.re, e.err
	}
	src := strings.ReplaceAll(key, "{}", "(.*?)")
	re, err := regexp.Compile(src) // for an error about the key itself
	if err == nil {
		re, err = regexp.Compile(`\A(?:` + src + `)`)
	}
	if err != nil {
		err = fmt.Errorf("op name %q is not a regular expression ROLL's lookup can use: %v", key, err)
		re = nil
	}
	keyCache.Lock()
	if keyCache.m == nil || len(keyCache.m) >= maxCached {
		keyCache.m = make(map[string]keyEntry)
	}
	keyCache.m[key] = keyEntry{re, err}
	keyCache.Unlock()
	return re, err
}

// KeyMatches reports whether the op-table key's pattern matches name
// (re.match, the non-exact step of the lookup). A key that does not
// compile matches nothing.
func KeyMatches(key, name string) bool {
	re, err := LookupRegexp(key)
	return err == nil && re.MatchString(name)
}

// OpTable is an op table's keys in registration order, for lookup.
type OpTable struct {
	keys  []string
	exact map[string]bool
	res   []*regexp.Regexp // per key; nil for a key that does not compile
}

// NewOpTable returns the table of keys; a repeated key keeps its first
// position (a Python dict assignment to an existing key).
func NewOpTable(keys []string) *OpTable {
	t := &OpTable{exact: make(map[string]bool, len(keys))}
	for _, k := range keys {
		if !t.exact[k] {
			t.exact[k] = true
			t.keys = append(t.keys, k)
			re, _ := LookupRegexp(k)
			t.res = append(t.res, re)
		}
	}
	return t
}

// Keys returns the table's keys in lookup order.
func (t *OpTable) Keys() []string { return t.keys }

// Lookup returns the key whose op converts name: name itself when it is
// a key, else the first key whose pattern matches at the start of name.
func (t *OpTable) Lookup(name string) (key string, ok bool) {
	if t.exact[name] {
		return name, true
	}
	for i, re := range t.res {
		if re != nil && re.MatchString(name) {
			return t.keys[i], true
		}
	}
	return "", false
}

// OpNameRegexp is ROLL's ConverOp._name_to_pattern: a declared op name
// with dots escaped and "{}" a greedy group. anchored gives the
// start-anchored form is_required_name uses (pattern.match); otherwise
// it is unanchored, as _to_names_and_weights' re.findall uses it.
func OpNameRegexp(name string, anchored bool) (*regexp.Regexp, error) {
	s := strings.ReplaceAll(strings.ReplaceAll(name, ".", `\.`), "{}", "(.*)")
	re, err := regexp.Compile(s)
	if err == nil && anchored {
		re, err = regexp.Compile(`\A(?:` + s + ")")
	}
	if err != nil {
		return nil, fmt.Errorf("op name %q is not a regular expression ROLL can use: %v", name, err)
	}
	return re, nil
}

// FormatNames is the renaming at the end of ROLL's
// ConverOp._to_names_and_weights: with captures (the values the "{}" of
// a gathered name matched), every target name gets them substituted into
// its "{}" placeholders in order, as Python's
// to_name.format(*captures) does; without captures the names are
// unchanged. A name with more "{}" than captures is an error.
func FormatNames(names []string, captures []string) ([]string, error) {
	if len(captures) == 0 {
		return names, nil
	}
	out := make([]string, len(names))
	for i, n := range names {
		var b strings.Builder
		k := 0
		for {
			j := strings.Index(n, "{}")
			if j < 0 {
				b.WriteString(n)
				break
			}
			if k >= len(captures) {
				return nil, fmt.Errorf("target %q has more {} than the %d captured values", names[i], len(captures))
			}
			b.WriteString(n[:j])
			b.WriteString(captures[k])
			k++
			n = n[j+2:]
		}
		out[i] = b.String()
	}
	return out, nil
}
