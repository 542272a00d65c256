// Package parser turns .rolltpl source into an [ast.File] with participle.
//
// [ParseFile] always returns a file. It recovers at declaration boundaries:
// the token stream is first cut into declarations (a declaration keyword at
// brace depth zero, or at the start of a line, begins a new one), then each
// declaration is parsed on its own. A declaration that fails to parse becomes
// an [ast.BadDecl] and one "syntax-error" diagnostic, and parsing goes on
// with the next, so independent mistakes are all reported.
//
// The lexer never fails: a character outside the language, or a string
// without its closing quote, becomes a token the grammar rejects.
package parser

import (
	"fmt"
	"strings"

	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"

	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

// Lexer is the token definition shared by the parser and the formatter.
// Comment and Whitespace tokens are elided by the parser.
var Lexer = lexer.MustSimple([]lexer.SimpleRule{
	{Name: "Comment", Pattern: `#[^\n]*`},
	{Name: "Whitespace", Pattern: `[ \t\r\n]+`},
	{Name: "String", Pattern: `"(\\.|[^"\\\n])*"`},
	{Name: "BadString", Pattern: `"(\\.|[^"\\\n])*`},
	{Name: "Float", Pattern: `[0-9]+\.[0-9]+([eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+`},
	{Name: "Int", Pattern: `[0-9]+`},
	{Name: "Ident", Pattern: `[A-Za-z_][A-Za-z0-9_]*`},
	{Name: "Op", Pattern: `->|==|!=|<=|>=|//|&&|\|\||[-+*/%<>=!(){}\[\],.:?|]`},
	{Name: "Bad", Pattern: `[\s\S]`},
})

var options = []participle.Option{
	participle.Lexer(Lexer),
	participle.Elide("Comment", "Whitespace"),
	participle.Unquote("String"),
}

var (
	fileParser = participle.MustBuild[ast.File](options...)
	declParser = participle.MustBuild[ast.Decl](options...)
)

// Grammar returns the grammar in EBNF, as participle prints it.
func Grammar() string { return fileParser.String() }

// DeclKeywords are the words that begin a top-level declaration.
var DeclKeywords = map[string]bool{
	"import": true, "template": true, "config": true, "mca": true, "weights": true, "parallel": true,
	"schema": true,
}

// MaxErrors caps the syntax errors reported for one file.
const MaxErrors = 50

// ParseFile parses src, naming positions after filename. It always returns a
// file; declarations that fail to parse are [ast.BadDecl]s, each with one
// diagnostic in the returned list.
func ParseFile(filename string, src []byte) (f *ast.File, diags diag.List) {
	tf := token.NewFile(filename, src)
	f = &ast.File{Name: filename}
	f.Pos = tf.Pos(0)
	f.EndPos = tf.Pos(len(src))
	defer func() {
		if r := recover(); r != nil {
			diags.Add(&diag.Diagnostic{
				Severity: diag.Error, Code: "internal-error", Summary: "Internal parser error",
				Detail:  fmt.Sprintf("The parser failed unexpectedly (%v). Please report this with the file.", r),
				Subject: tf.Span(0, 0),
			})
		}
	}()
	toks, err := fileParser.Lex(filename, strings.NewReader(string(src)))
	if err != nil {
		// The lexer has a catch-all rule, so this only happens on I/O errors.
		diags.Add(diag.Errorf(tf.Span(0, 0), "syntax-error", "Cannot read file", "%v", err))
		return f, diags
	}
	for _, t := range toks {
		if t.Type == Lexer.Symbols()["Comment"] {
			c := &ast.Comment{Text: strings.TrimRight(t.Value, " \t\r")}
			c.Pos, c.EndPos = tf.Pos(t.Pos.Offset), tf.Pos(t.Pos.Offset+len(c.Text))
			f.Comments = append(f.Comments, c)
		}
	}
	for _, c := range splitDecls(toks) {
		if len(diags) >= MaxErrors {
			break
		}
		end := len(src)
		if c[1] < len(toks) {
			end = toks[c[1]].Pos.Offset
		}
		d, derr := parseChunk(toks[c[0]:c[1]], end, tf)
		if derr != nil {
			diags.Add(derr)
		}
		f.Decls = append(f.Decls, d)
	}
	return f, diags
}

func isTrivia(t lexer.Token) bool {
	return t.Type == Lexer.Symbols()["Comment"] || t.Type == Lexer.Symbols()["Whitespace"]
}

// splitDecls cuts the token stream (EOF excluded) into declarations, each a
// [start, end) range of token indexes without trailing trivia.
func splitDecls(toks []lexer.Token) [][2]int {
	identType := Lexer.Symbols()["Ident"]
	var chunks [][2]int
	start, depth := -1, 0
	lastLine := 0
	closed := false
	prevKeyword := false
	for i, t := range toks {
		if t.EOF() {
			break
		}
		if isTrivia(t) {
			continue
		}
		atLineStart := t.Pos.Column == 1 && t.Pos.Line != lastLine
		lastLine = t.Pos.Line
		// A keyword right after a declaration keyword is a name (`schema mca`).
		keyword := t.Type == identType && DeclKeywords[t.Value] && !(prevKeyword && !atLineStart)
		prevKeyword = t.Type == identType && DeclKeywords[t.Value]
		// A stray closing brace after a complete declaration stays with it
		// (one diagnostic, not a cascade).
		if (keyword && (depth == 0 || atLineStart)) || (closed && t.Value != "}") {
			if start >= 0 {
				chunks = append(chunks, trimTrivia(toks, start, i))
			}
			start, depth = i, 0
		} else if start < 0 {
			start = i
		}
		if t.Value != "}" {
			closed = false
		}
		switch t.Value {
		case "{", "(", "[":
			depth++
		case "}", ")", "]":
			if depth > 0 {
				depth--
				// A declaration's closing brace ends it: what follows
				// starts a new one, even if it is not a keyword.
				closed = depth == 0 && t.Value == "}"
			}
		}
	}
	if start >= 0 {
		end := len(toks)
		if end > 0 && toks[end-1].EOF() {
			end--
		}
		chunks = append(chunks, trimTrivia(toks, start, end))
	}
	return chunks
}

func trimTrivia(toks []lexer.Token, start, end int) [2]int {
	for end > start && isTrivia(toks[end-1]) {
		end--
	}
	return [2]int{start, end}
}

type sliceLexer struct {
	toks []lexer.Token
	i    int
}

func (l *sliceLexer) Next() (lexer.Token, error) {
	t := l.toks[l.i]
	if l.i < len(l.toks)-1 {
		l.i++
	}
	return t, nil
}

// parseChunk parses the tokens of one declaration, which ends at byte end.
func parseChunk(chunk []lexer.Token, end int, tf *token.File) (*ast.Decl, *diag.Diagnostic) {
	first := chunk[0]
	eof := lexer.EOFToken(lexer.Position(tf.Pos(end)))
	toks := append(append([]lexer.Token(nil), chunk...), eof)
	peek, err := lexer.Upgrade(&sliceLexer{toks: toks}, Lexer.Symbols()["Comment"], Lexer.Symbols()["Whitespace"])
	if err == nil {
		var d *ast.Decl
		d, err = declParser.ParseFromLexer(peek)
		if err == nil {
			return d, nil
		}
		bad := &ast.Decl{Bad: &ast.BadDecl{Partial: d}}
		bad.Pos, bad.EndPos = tf.Pos(first.Pos.Offset), tf.Pos(end)
		bad.Bad.Range = bad.Range
		return bad, syntaxDiag(err, tf, toks)
	}
	bad := &ast.Decl{Bad: &ast.BadDecl{}}
	bad.Pos, bad.EndPos = tf.Pos(first.Pos.Offset), tf.Pos(end)
	bad.Bad.Range = bad.Range
	return bad, syntaxDiag(err, tf, toks)
}

// syntaxDiag turns a participle error into a diagnostic whose subject is the
// offending token.
func syntaxDiag(err error, tf *token.File, toks []lexer.Token) *diag.Diagnostic {
	off := 0
	msg := err.Error()
	if pe, ok := err.(participle.Error); ok {
		off = pe.Position().Offset
		msg = pe.Message()
	}
	endOff := off
	for i, t := range toks {
		if t.Pos.Offset == off && !t.EOF() {
			endOff = toks[i+1].Pos.Offset
			switch t.Type {
			case Lexer.Symbols()["BadString"]:
				msg = "string literal not terminated"
			case Lexer.Symbols()["Bad"]:
				msg = fmt.Sprintf("unexpected character %q", t.Value)
			}
			break
		}
	}
	return &diag.Diagnostic{
		Severity: diag.Error, Code: "syntax-error", Summary: "Syntax error",
		Detail:  friendly(msg) + ".",
		Subject: tf.Span(off, endOff),
	}
}

func friendly(msg string) string {
	for _, r := range [][2]string{
		{`Expr ("," Expr)*`, "a name"},
		{"Ident", "a name"},
		{"Expr", "a value"},
		{"<ident>", "a name"},
		{"<string>", "a string"},
		{`unexpected token "<EOF>"`, "unexpected end of declaration"},
	} {
		msg = strings.ReplaceAll(msg, r[0], r[1])
	}
	return msg
}
