// Package rollname owns ROLL's naming rules, each in one place: shell
// globs as Python's fnmatch matches them (parallel classes, key-prefix
// exceptions), op lookup as ROLL's Template.get_conver_op does it, the
// ConverOp name patterns and target renaming, MCA name prefixes
// (remove_mca_weight_prefix and its inverse), pure names for
// classification (".bias" read as ".weight"), parallel classification in
// DistConverter.dist_convert's first-match order, and HF config key
// prefixing. The checker, the IR, the runtime and the LSP call it and keep
// no copy; the Python the emitter writes runs under ROLL, whose own
// fnmatch and re these rules restate (the tests check them against
// Python).
//
// It imports nothing of the project, so every layer may import it.
package rollname

import (
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// Glob is a compiled shell pattern matched against whole names like
// Python's fnmatch.fnmatchcase (fnmatch.fnmatch on POSIX, which is what
// ROLL calls): "*" is any run of characters, "/" and "." included, "**"
// the same as "*"; "?" is one character; "[seq]" and "[!seq]" a character
// class with ranges ("[a-z]"; an empty range such as "[z-a]" is dropped,
// a class left empty never matches); a "[" without a closing "]" is a
// literal "["; there is no escape character ("\" is literal, a
// metacharacter is quoted by a class: "[*]", "[[]", "[?]").
type Glob struct {
	pat string
	re  *regexp.Regexp // nil: the pattern has no metacharacter
}

// globCache holds compiled globs by pattern, like fnmatch's
// _compile_pattern cache; it is emptied when it reaches maxCached entries
// so that it stays bounded however many patterns a process sees.
var globCache struct {
	sync.Mutex
	m map[string]*Glob
}

const maxCached = 4096

// CompileGlob returns the compiled glob of pat, from the cache when pat
// was compiled before. Every pattern compiles: Python's translation
// never fails, and neither does this one.
func CompileGlob(pat string) *Glob {
	globCache.Lock()
	g, ok := globCache.m[pat]
	globCache.Unlock()
	if ok {
		return g
	}
	g = &Glob{pat: pat}
	if strings.ContainsAny(pat, "*?[") {
		// Translate quotes every literal and builds only valid
		// classes, so this does not fail; were it to, the pattern would
		// match itself only (never a panic on a user's pattern).
		if re, err := regexp.Compile(Translate(pat)); err == nil {
			g.re = re
		}
	}
	globCache.Lock()
	if globCache.m == nil || len(globCache.m) >= maxCached {
		globCache.m = make(map[string]*Glob)
	}
	globCache.m[pat] = g
	globCache.Unlock()
	return g
}

// Pattern returns the pattern g was compiled from.
func (g *Glob) Pattern() string { return g.pat }

// Match reports whether the whole name matches g.
func (g *Glob) Match(name string) bool {
	if g.re == nil {
		return name == g.pat
	}
	return g.re.MatchString(name)
}

// Fnmatch is Python's fnmatch.fnmatchcase(name, pat): whether the whole
// name matches the shell pattern pat.
func Fnmatch(name, pat string) bool { return CompileGlob(pat).Match(name) }

// NameMatch is ROLL's DistConverter.name_match: name is one of patterns,
// or fnmatches one of them.
func NameMatch(name string, patterns []string) bool {
	for _, p := range patterns {
		if p == name || Fnmatch(name, p) {
			return true
		}
	}
	return false
}

// Translate returns a Go regular expression matching exactly the names
// Python's fnmatch.translate(pat) matches (whole string, "." matching
// newlines). It follows Python 3's translate step by step: the bracket
// scan, the range chunks with empty ranges removed, the empty and
// negated-empty classes; stars need no atomic groups here because RE2
// does not backtrack.
func Translate(pat string) string {
	p := []rune(pat)
	var b strings.Builder
	b.WriteString(`\A(?s:`)
	n := len(p)
	for i := 0; i < n; {
		c := p[i]
		i++
		switch c {
		case '*':
			for i < n && p[i] == '*' {
				i++
			}
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '[':
			j := i
			if j < n && p[j] == '!' {
				j++
			}
			if j < n && p[j] == ']' {
				j++
			}
			for j < n && p[j] != ']' {
				j++
			}
			if j >= n {
				b.WriteString(`\[`)
				continue
			}
			b.WriteString(class(p, i, j))
			i = j + 1
		default:
			b.WriteString(quoteRune(c))
		}
	}
	b.WriteString(`)\z`)
	return b.String()
}

// class translates the bracket expression p[i:j] (without the brackets)
// as fnmatch.translate does: items are literal characters and ranges
// "a-z"; a leading "!" negates.
func class(p []rune, i, j int) string {
	// chunks are the runs between range hyphens; the last rune of one
	// chunk and the first of the next are a range's ends.
	var chunks [][]rune
	stuff := p[i:j]
	hasHyphen := false
	for _, r := range stuff {
		if r == '-' {
			hasHyphen = true
		}
	}
	if !hasHyphen {
		chunks = [][]rune{append([]rune(nil), stuff...)}
	} else {
		k := i + 1
		if p[i] == '!' {
			k = i + 2
		}
		for {
			k = indexRune(p, '-', k, j)
			if k < 0 {
				break
			}
			chunks = append(chunks, append([]rune(nil), p[i:k]...))
			i = k + 1
			k += 3
		}
		if chunk := p[i:j]; len(chunk) > 0 {
			chunks = append(chunks, append([]rune(nil), chunk...))
		} else {
			chunks[len(chunks)-1] = append(chunks[len(chunks)-1], '-')
		}
		// Remove empty ranges (invalid in a regexp).
		for k := len(chunks) - 1; k > 0; k-- {
			prev := chunks[k-1]
			if prev[len(prev)-1] > chunks[k][0] {
				chunks[k-1] = append(prev[:len(prev)-1:len(prev)-1], chunks[k][1:]...)
				chunks = append(chunks[:k], chunks[k+1:]...)
			}
		}
	}
	// The items: every rune literal except the hyphens joining chunks.
	type item struct {
		r       rune
		rangeOp bool
	}
	var items []item
	for ci, ch := range chunks {
		if ci > 0 {
			items = append(items, item{'-', true})
		}
		for _, r := range ch {
			items = append(items, item{r, false})
		}
	}
	if len(items) == 0 {
		return `[^\x00-\x{10FFFF}]` // empty class: never matches
	}
	negate := !items[0].rangeOp && items[0].r == '!'
	if negate {
		items = items[1:]
		if len(items) == 0 {
			return "." // negated empty class: any character
		}
	}
	var b strings.Builder
	b.WriteByte('[')
	if negate {
		b.WriteByte('^')
	}
	for _, it := range items {
		if it.rangeOp {
			b.WriteByte('-')
			continue
		}
		b.WriteString(quoteClassRune(it.r))
	}
	b.WriteByte(']')
	return b.String()
}

func indexRune(p []rune, r rune, from, to int) int {
	for k := from; k < to; k++ {
		if p[k] == r {
			return k
		}
	}
	return -1
}

// quoteRune quotes a rune outside a class.
func quoteRune(r rune) string {
	if r == utf8.RuneError {
		return `\x{FFFD}`
	}
	return regexp.QuoteMeta(string(r))
}

// quoteClassRune quotes a rune inside a class: ASCII punctuation is
// escaped (RE2 allows "\" before any of it), everything else is itself.
func quoteClassRune(r rune) string {
	switch {
	case r == utf8.RuneError:
		return `\x{FFFD}`
	case r < 0x80 && strings.ContainsRune("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", r):
		return `\` + string(r)
	}
	return string(r)
}
