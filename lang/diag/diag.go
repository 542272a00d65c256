// Package diag defines diagnostics as values: a [Diagnostic] carries a
// severity, a stable code, a short summary, a detail that says how to fix
// the problem, and the exact source range it is about. A [List] sorts,
// de-duplicates and renders them as text with a caret snippet or as JSON.
package diag

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/lang/token"
)

// Severity says how bad a diagnostic is.
type Severity int

// The severities, most severe first.
const (
	Error Severity = iota
	Warning
	Info
)

// String returns "error", "warning" or "info".
func (s Severity) String() string {
	switch s {
	case Error:
		return "error"
	case Warning:
		return "warning"
	}
	return "info"
}

// Related is a secondary location that helps explain a diagnostic.
type Related struct {
	Span    token.Span
	Message string
}

// Diagnostic is one problem found in a source file.
type Diagnostic struct {
	Severity Severity
	// Code is a stable, kebab-case identifier such as "unknown-op-kind".
	Code string
	// Summary is a short noun phrase: "Unknown op kind".
	Summary string
	// Detail is one or two sentences saying what is wrong and how to fix it.
	Detail string
	// Subject is the tight range of the problem.
	Subject token.Span
	Related []Related
}

// Errorf returns an error diagnostic at span.
func Errorf(span token.Span, code, summary, detailFormat string, args ...any) *Diagnostic {
	return &Diagnostic{Severity: Error, Code: code, Summary: summary, Detail: fmt.Sprintf(detailFormat, args...), Subject: span}
}

// Warningf returns a warning diagnostic at span.
func Warningf(span token.Span, code, summary, detailFormat string, args ...any) *Diagnostic {
	return &Diagnostic{Severity: Warning, Code: code, Summary: summary, Detail: fmt.Sprintf(detailFormat, args...), Subject: span}
}

// Error formats d on one line: "file:line:col: error: summary: detail [code]".
func (d *Diagnostic) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s: %s", d.Subject.Start, d.Severity, d.Summary)
	if d.Detail != "" {
		fmt.Fprintf(&b, ": %s", d.Detail)
	}
	if d.Code != "" {
		fmt.Fprintf(&b, " [%s]", d.Code)
	}
	return b.String()
}

// List is a list of diagnostics.
type List []*Diagnostic

// Add appends d to the list.
func (l *List) Add(d *Diagnostic) { *l = append(*l, d) }

// Extend appends every diagnostic of other.
func (l *List) Extend(other List) { *l = append(*l, other...) }

// Span returns the zero span, for diagnostics not tied to a source range.
func (l List) Span() token.Span { return token.Span{} }

// HasErrors reports whether the list holds an error.
func (l List) HasErrors() bool {
	for _, d := range l {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// Errors returns the number of errors in the list.
func (l List) Errors() int {
	n := 0
	for _, d := range l {
		if d.Severity == Error {
			n++
		}
	}
	return n
}

// Sort orders the list by file, offset, then severity and code.
func (l List) Sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i].Subject.Start, l[j].Subject.Start
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		if a.Offset != b.Offset {
			return a.Offset < b.Offset
		}
		if l[i].Severity != l[j].Severity {
			return l[i].Severity < l[j].Severity
		}
		return l[i].Code < l[j].Code
	})
}

// Dedup sorts the list and removes exact repeats and any second syntax error
// reported on the same line (cascades), returning the shortened list.
func (l List) Dedup() List {
	l.Sort()
	out := l[:0]
	seen := map[string]bool{}
	syntaxLines := map[string]bool{}
	for _, d := range l {
		key := fmt.Sprintf("%s|%d|%d|%s|%s", d.Subject.Start.Filename, d.Subject.Start.Offset, d.Subject.End.Offset, d.Code, d.Summary)
		if seen[key] {
			continue
		}
		seen[key] = true
		if d.Code == SyntaxError {
			lk := fmt.Sprintf("%s|%d", d.Subject.Start.Filename, d.Subject.Start.Line)
			if syntaxLines[lk] {
				continue
			}
			syntaxLines[lk] = true
		}
		out = append(out, d)
	}
	return out
}

// Err returns nil when the list has no errors, else an error whose message
// lists them one per line.
func (l List) Err() error {
	if !l.HasErrors() {
		return nil
	}
	var errs []error
	for _, d := range l {
		if d.Severity == Error {
			errs = append(errs, d)
		}
	}
	return errors.Join(errs...)
}
