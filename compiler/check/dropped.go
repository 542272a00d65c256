package check

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

// dropped warns about `ignore` and `drop` of a name that an op of the
// program converts, in any build-flag mode: a real model weight. ROLL
// compares each HF name with the ignored names before any op (an input an
// op waits for is then never given to it) and a drop registered for a
// name discards the tensor; either way the weight is silently lost. A
// drop overlapping an op of its own template is left to duplicate-name
// and unreachable-op (ROLL looks exact names up first), so a drop is
// reported for names other templates convert.
func (c *checker) dropped(t *ir.Template) {
	conv := c.convertedNames()
	report := func(span token.Span, what, name string) {
		for _, n := range conv.candidates(name) {
			u := conv.by[n]
			if what == "drop" && u.tmpl == t {
				// ROLL looks exact names up first, so this template's
				// own op still gets an exact name; same names and
				// pattern order are duplicate-name and unreachable-op.
				continue
			}
			if !sameWeight(name, n, conv.re) {
				continue
			}
			where := "this template"
			if u.tmpl != t {
				where = fmt.Sprintf("template %s", u.tmpl.Name)
			}
			d := diag.Warningf(span, diag.DroppedWeight, "A real model weight is dropped",
				"%s %s discards %s, which op %s of %s converts: the weight is lost. Remove the %s, or narrow it to the names that are not weights.",
				what, name, n, u.op.Kind, where, what)
			d.Related = []diag.Related{{Span: u.op.Span, Message: "converted here"}}
			c.add(d)
			return
		}
	}
	for _, inv := range t.Invalid {
		report(inv.Span, "ignore", inv.Value)
	}
	for _, op := range t.Ops {
		if op.Kind != "drop" {
			continue
		}
		for mi := range c.modes(t) {
			hf, _ := c.resolved(t, op, mi)
			for _, n := range hf {
				report(op.Span, "drop", n)
			}
		}
	}
}

// converted indexes the HF names the ops of a program convert (drop
// aside), in every build-flag mode, each with its first op.
type converted struct {
	by       map[string]convUser
	names    []string // in program order
	patterns []string // the names with a {} wildcard
	re       map[string]*regexp.Regexp
}

type convUser struct {
	op   *ir.Op
	tmpl *ir.Template
}

// convertedNames builds the index once per Check.
func (c *checker) convertedNames() *converted {
	if c.conv != nil {
		return c.conv
	}
	cv := &converted{by: map[string]convUser{}, re: map[string]*regexp.Regexp{}}
	for _, u := range c.prog.Templates {
		for _, op := range u.Ops {
			if op.Kind == "drop" {
				continue
			}
			for mi := range c.modes(u) {
				hf, _ := c.resolved(u, op, mi)
				for _, n := range hf {
					if _, ok := cv.by[n]; ok {
						continue
					}
					cv.by[n] = convUser{op, u}
					cv.names = append(cv.names, n)
					if strings.Contains(n, "{}") {
						cv.patterns = append(cv.patterns, n)
					}
				}
			}
		}
	}
	c.conv = cv
	return cv
}

// candidates returns the converted names that may name the same weight as
// name: its exact match and the wildcard patterns, or every name when
// name itself has a wildcard.
func (cv *converted) candidates(name string) []string {
	if strings.Contains(name, "{}") {
		return cv.names
	}
	var out []string
	if _, ok := cv.by[name]; ok {
		out = append(out, name)
	}
	return append(out, cv.patterns...)
}

// sameWeight reports whether two weight names, either of which may hold
// `{}` wildcards, can name the same tensor; cache keeps the patterns.
func sameWeight(a, b string, cache map[string]*regexp.Regexp) bool {
	return a == b || wildcard(a, cache).MatchString(strings.ReplaceAll(b, "{}", "x")) || wildcard(b, cache).MatchString(strings.ReplaceAll(a, "{}", "x"))
}

// wildcard returns a's whole-name pattern: `{}` matches any text.
func wildcard(a string, cache map[string]*regexp.Regexp) *regexp.Regexp {
	if re, ok := cache[a]; ok {
		return re
	}
	parts := strings.Split(a, "{}")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	re := regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
	cache[a] = re
	return re
}
