package parser

import (
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"
)

// regexLexer is the token definition as regular expressions, in
// participle's notation. It is the reference [Lexer] follows (a test
// compares them) and the source of the token types.
var regexLexer = lexer.MustSimple([]lexer.SimpleRule{
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

// Lexer is the token definition shared by the parser, the formatter and
// the language server: the rules of regexLexer (the first that matches
// wins), scanned by hand in linear time without regular expressions.
// Comment and Whitespace tokens are elided by the parser.
var Lexer = newDefinition()

// definition is a participle lexer.Definition for the rules of regexLexer.
type definition struct {
	symbols map[string]lexer.TokenType
	comment, whitespace, str, badString,
	float, integer, ident, op, bad lexer.TokenType
}

func newDefinition() *definition {
	sym := regexLexer.Symbols()
	return &definition{
		symbols: sym,
		comment: sym["Comment"], whitespace: sym["Whitespace"], str: sym["String"], badString: sym["BadString"],
		float: sym["Float"], integer: sym["Int"], ident: sym["Ident"], op: sym["Op"], bad: sym["Bad"],
	}
}

// Symbols returns the token types by name.
func (d *definition) Symbols() map[string]lexer.TokenType { return d.symbols }

// Lex reads r whole and lexes it.
func (d *definition) Lex(filename string, r io.Reader) (lexer.Lexer, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return d.LexString(filename, string(b))
}

// LexBytes lexes b.
func (d *definition) LexBytes(filename string, b []byte) (lexer.Lexer, error) {
	return d.LexString(filename, string(b))
}

// LexString lexes s.
func (d *definition) LexString(filename string, s string) (lexer.Lexer, error) {
	return d.lexAt(s, lexer.Position{Filename: filename, Line: 1, Column: 1}, false), nil
}

// lexAt returns a lexer of src whose first byte is at pos; with unquote,
// String tokens carry their value rather than their text.
func (d *definition) lexAt(src string, pos lexer.Position, unquote bool) *lexState {
	return &lexState{def: d, src: src, pos: pos, unquote: unquote}
}

// lexState is one run of the lexer over a text.
type lexState struct {
	def     *definition
	src     string
	i       int // next byte of src
	pos     lexer.Position
	unquote bool
}

// Next returns the next token, or EOF at the end.
func (l *lexState) Next() (lexer.Token, error) {
	if l.i >= len(l.src) {
		return lexer.EOFToken(l.pos), nil
	}
	d, src, i := l.def, l.src, l.i
	var typ lexer.TokenType
	end := i + 1
	switch c := src[i]; {
	case c == '#':
		typ = d.comment
		end = i + strings.IndexByte(src[i:]+"\n", '\n')
	case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		typ = d.whitespace
		for end < len(src) && (src[end] == ' ' || src[end] == '\t' || src[end] == '\r' || src[end] == '\n') {
			end++
		}
	case c == '"':
		var closed bool
		end, closed = stringToken(src, i)
		typ = d.badString
		if closed {
			typ = d.str
		}
	case isDigit(c):
		end = number(src, i)
		typ = d.integer
		if end > digits(src, i) {
			typ = d.float
		}
	case isIdentStart(c):
		typ = d.ident
		for end < len(src) && isIdentPart(src[end]) {
			end++
		}
	default:
		typ = d.bad
		if strings.IndexByte("-+*/%<>=!(){}[],.:?|", c) >= 0 {
			typ = d.op
			if i+1 < len(src) {
				switch src[i : i+2] {
				case "->", "==", "!=", "<=", ">=", "//", "&&", "||":
					end = i + 2
				}
			}
		} else if c == '&' && strings.HasPrefix(src[i:], "&&") {
			typ, end = d.op, i+2
		} else {
			_, size := utf8.DecodeRuneInString(src[i:])
			end = i + size
		}
	}
	text := src[i:end]
	t := lexer.Token{Type: typ, Value: text, Pos: l.pos}
	l.i = end
	l.pos.Advance(text)
	if typ == d.str && l.unquote {
		v, err := unquote(text)
		if err != nil {
			return t, participle.Errorf(t.Pos, "invalid quoted string %q: %s", text, err.Error())
		}
		t.Value = v
	}
	return t, nil
}

// unquote returns the value of a string literal (with its quotes): the
// escapes of strconv.UnquoteChar, each value appended as a rune, as
// participle.Unquote does but in linear time (participle's builds the value
// by string concatenation, quadratic in the literal's length).
func unquote(lit string) (string, error) {
	s := lit[1 : len(lit)-1]
	if strings.IndexByte(s, '\\') < 0 && utf8.ValidString(s) {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for s != "" {
		value, _, tail, err := strconv.UnquoteChar(s, '"')
		if err != nil {
			return "", err
		}
		s = tail
		b.WriteRune(value)
	}
	return b.String(), nil
}
