package diag

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/rolltpl/rolltpl/lang/token"
)

// Sources maps a file name, as it appears in positions, to its contents. The
// text renderer uses it to print the offending line under each diagnostic.
type Sources map[string][]byte

// Printer renders diagnostics.
type Printer struct {
	// Sources supplies the text for caret snippets; files missing from it
	// are printed without a snippet.
	Sources Sources
	// Cwd, when set, makes absolute file names relative to it.
	Cwd string
	// MaxPerFile, when positive, caps the text rendering: at most this
	// many diagnostics of each severity are printed for one file, followed
	// by one line counting the ones left out. JSON is never capped.
	MaxPerFile int
}

// DefaultMaxPerFile is the cap the command line puts on the diagnostics
// of each severity it prints as text for one file.
const DefaultMaxPerFile = 100

func (p *Printer) name(n string) string {
	if p.Cwd != "" && filepath.IsAbs(n) {
		if rel, err := filepath.Rel(p.Cwd, n); err == nil && !strings.HasPrefix(rel, "..") {
			n = rel
		}
	}
	return filepath.ToSlash(n)
}

// Text writes each diagnostic as "path:line:col: severity: summary [code]",
// the source line with carets under the subject, and the detail. Each
// file's line table is built once, so the time is linear in the size of
// the sources plus the number of diagnostics. With MaxPerFile set, the
// diagnostics over the cap are counted instead, one line per file:
// "path: N more errors and M more warnings not shown (--diags json lists
// them all)".
func (p *Printer) Text(w io.Writer, l List) error {
	files := map[string]*token.File{}
	type key struct {
		file string
		sev  Severity
	}
	shown := map[key]int{}
	type omitted struct{ n [Info + 1]int }
	var skipped map[string]*omitted
	var skippedOrder []string
	for _, d := range l {
		s := d.Subject.Start
		if p.MaxPerFile > 0 {
			k := key{s.Filename, d.Severity}
			if shown[k] >= p.MaxPerFile {
				if skipped == nil {
					skipped = map[string]*omitted{}
				}
				o := skipped[s.Filename]
				if o == nil {
					o = &omitted{}
					skipped[s.Filename] = o
					skippedOrder = append(skippedOrder, s.Filename)
				}
				if d.Severity >= Error && d.Severity <= Info {
					o.n[d.Severity]++
				}
				continue
			}
			shown[k]++
		}
		fmt.Fprintf(w, "%s:%d:%d: %s: %s", p.name(s.Filename), s.Line, s.Column, d.Severity, d.Summary)
		if d.Code != "" {
			fmt.Fprintf(w, " [%s]", d.Code)
		}
		fmt.Fprintln(w)
		if src, ok := p.Sources[s.Filename]; ok && token.Valid(s) {
			f := files[s.Filename]
			if f == nil {
				f = token.NewFile(s.Filename, src)
				files[s.Filename] = f
			}
			p.snippet(w, f, d.Subject)
		}
		if d.Detail != "" {
			for _, line := range strings.Split(d.Detail, "\n") {
				fmt.Fprintf(w, "  %s\n", line)
			}
		}
		for _, r := range d.Related {
			fmt.Fprintf(w, "  %s:%d:%d: note: %s\n", p.name(r.Span.Start.Filename), r.Span.Start.Line, r.Span.Start.Column, r.Message)
		}
	}
	for _, name := range skippedOrder {
		var parts []string
		for sev, n := range skipped[name].n {
			if n > 0 {
				parts = append(parts, fmt.Sprintf("%d more %s%s", n, Severity(sev), plural(n)))
			}
		}
		fmt.Fprintf(w, "%s: %s not shown (--diags json lists them all)\n", p.name(name), strings.Join(parts, " and "))
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func (p *Printer) snippet(w io.Writer, f *token.File, sp token.Span) {
	line := sp.Start.Line
	if line > f.LineCount() {
		return
	}
	text := f.Line(line)
	start := f.LineStart(line)
	col := utf8.RuneCountInString(safeSlice(text, 0, sp.Start.Offset-start))
	width := 1
	if sp.End.Offset > sp.Start.Offset {
		endInLine := sp.End.Offset - start
		if endInLine > len(text) {
			endInLine = len(text)
		}
		width = utf8.RuneCountInString(safeSlice(text, sp.Start.Offset-start, endInLine))
		if width < 1 {
			width = 1
		}
	}
	gutter := fmt.Sprintf("%d", line)
	pad := strings.Repeat(" ", len(gutter))
	fmt.Fprintf(w, " %s | %s\n", gutter, strings.ReplaceAll(text, "\t", " "))
	fmt.Fprintf(w, " %s | %s%s\n", pad, strings.Repeat(" ", col), strings.Repeat("^", width))
}

func safeSlice(s string, i, j int) string {
	if i < 0 {
		i = 0
	}
	if j > len(s) {
		j = len(s)
	}
	if i > j {
		return ""
	}
	return s[i:j]
}

// JSONPos is a position in the JSON rendering: 1-based line and column (in
// runes) and the byte offset.
type JSONPos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Offset int `json:"offset"`
}

// JSONDiagnostic is one diagnostic in the JSON rendering.
type JSONDiagnostic struct {
	Path     string  `json:"path"`
	Severity string  `json:"severity"`
	Code     string  `json:"code"`
	Summary  string  `json:"summary"`
	Detail   string  `json:"detail,omitempty"`
	Start    JSONPos `json:"start"`
	End      JSONPos `json:"end"`
}

// ToJSON converts the list to its JSON form (file names as Printer prints them).
func (p *Printer) ToJSON(l List) []JSONDiagnostic {
	out := make([]JSONDiagnostic, 0, len(l))
	for _, d := range l {
		s, e := d.Subject.Start, d.Subject.End
		out = append(out, JSONDiagnostic{
			Path: p.name(s.Filename), Severity: d.Severity.String(), Code: d.Code,
			Summary: d.Summary, Detail: d.Detail,
			Start: JSONPos{s.Line, s.Column, s.Offset},
			End:   JSONPos{e.Line, e.Column, e.Offset},
		})
	}
	return out
}

// JSON writes the list as an indented JSON array.
func (p *Printer) JSON(w io.Writer, l List) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p.ToJSON(l))
}
