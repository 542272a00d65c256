// Package fnmatch matches names against shell globs the way Python's
// fnmatch module does on POSIX (case-sensitive, "*" matching any run of
// characters, dots and slashes included), which is how ROLL matches
// weight names and config keys. It is the project's one glob translator.
package fnmatch

import (
	"regexp"
	"strings"
)

// Translate translates a shell glob to a regular expression as Python's
// fnmatch.translate does:
// "*" is any run of characters (including "." and "/"), "?" one
// character, "[seq]" / "[!seq]" a character class; the whole string must
// match.
func Translate(pat string) string {
	var b strings.Builder
	b.WriteString(`(?s)\A`)
	for i := 0; i < len(pat); {
		c := pat[i]
		i++
		switch c {
		case '*':
			for i < len(pat) && pat[i] == '*' {
				i++
			}
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '[':
			j := i
			if j < len(pat) && pat[j] == '!' {
				j++
			}
			if j < len(pat) && pat[j] == ']' {
				j++
			}
			for j < len(pat) && pat[j] != ']' {
				j++
			}
			if j >= len(pat) {
				b.WriteString(`\[`)
				continue
			}
			stuff := strings.ReplaceAll(pat[i:j], `\`, `\\`)
			i = j + 1
			switch {
			case strings.HasPrefix(stuff, "!"):
				stuff = "^" + stuff[1:]
			case strings.HasPrefix(stuff, "^"):
				stuff = `\` + stuff
			}
			stuff = strings.ReplaceAll(stuff, "[", `\[`)
			b.WriteString("[" + stuff + "]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`\z`)
	return b.String()
}

// Pattern is a compiled glob matched against whole names.
type Pattern struct {
	literal string
	re      *regexp.Regexp
}

// Compile compiles a glob; a pattern without "*", "?" or "[" matches
// only itself.
func Compile(pat string) (Pattern, error) {
	if !strings.ContainsAny(pat, "*?[") {
		return Pattern{literal: pat}, nil
	}
	re, err := regexp.Compile(Translate(pat))
	if err != nil {
		return Pattern{}, err
	}
	return Pattern{re: re}, nil
}

// Match reports whether name matches the whole pattern.
func (p Pattern) Match(name string) bool {
	if p.re == nil {
		return p.literal == name
	}
	return p.re.MatchString(name)
}
