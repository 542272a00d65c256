package parser

// A hand-written scanner that finds declaration boundaries and comments
// without running participle's regular-expression lexer over the whole
// file. Its token boundaries are those of [Lexer]: comments, strings
// (terminated or not), numbers, identifiers and single characters. Only
// identifiers (declaration keywords) and brackets matter for the cut, so
// operators are scanned a character at a time.

// span is a byte range.
type span struct{ start, end int }

// scanned is what the scanner found: the declarations, each from its first
// token to the end of its last token, and the comments.
type scanned struct {
	decls    []span
	comments []span
}

func isIdentStart(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// digits returns the end of a run of digits starting at i.
func digits(src []byte, i int) int {
	for i < len(src) && isDigit(src[i]) {
		i++
	}
	return i
}

// exponent returns the end of `[eE][-+]?[0-9]+` at i, or i if there is none.
func exponent(src []byte, i int) int {
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		j := i + 1
		if j < len(src) && (src[j] == '-' || src[j] == '+') {
			j++
		}
		if k := digits(src, j); k > j {
			return k
		}
	}
	return i
}

// number returns the end of the Float or Int token at i (the lexer tries
// Float first).
func number(src []byte, i int) int {
	d := digits(src, i)
	if d < len(src) && src[d] == '.' {
		if f := digits(src, d+1); f > d+1 {
			return exponent(src, f)
		}
	}
	if e := exponent(src, d); e > d {
		return e
	}
	return d
}

// stringEnd returns the end of the string token at i: past the closing
// quote, or (unterminated) at the newline, end of file, or a backslash that
// escapes nothing.
func stringEnd(src []byte, i int) int {
	j := i + 1
	for j < len(src) {
		switch c := src[j]; {
		case c == '"':
			return j + 1
		case c == '\n':
			return j
		case c == '\\':
			if j+1 >= len(src) || src[j+1] == '\n' {
				return j
			}
			j += 2
		default:
			j++
		}
	}
	return j
}

// scan cuts src into declarations with the rules of the package doc: a
// declaration keyword at brace depth zero or at the start of a line begins
// a declaration (unless it follows another keyword on the same line, as in
// `schema mca`), and so does any token after a closing brace that brings the
// depth back to zero, except another closing brace.
func scan(src []byte) scanned {
	var out scanned
	start, depth, lastEnd := -1, 0, 0
	closed, prevKeyword := false, false
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
			continue
		case c == '#':
			j := i
			for j < len(src) && src[j] != '\n' {
				j++
			}
			end := j
			for end > i && (src[end-1] == ' ' || src[end-1] == '\t' || src[end-1] == '\r') {
				end--
			}
			out.comments = append(out.comments, span{i, end})
			i = j
			continue
		}
		tokStart := i
		atLineStart := i == 0 || src[i-1] == '\n'
		var tokEnd int
		ident := false
		switch {
		case c == '"':
			tokEnd = stringEnd(src, i)
		case isDigit(c):
			tokEnd = number(src, i)
		case isIdentStart(c):
			tokEnd = i + 1
			for tokEnd < len(src) && isIdentPart(src[tokEnd]) {
				tokEnd++
			}
			ident = true
		default:
			tokEnd = i + 1
		}
		word := ""
		if ident {
			word = string(src[tokStart:tokEnd])
		}
		isKeyword := ident && DeclKeywords[word]
		keyword := isKeyword && !(prevKeyword && !atLineStart)
		prevKeyword = isKeyword
		if (keyword && (depth == 0 || atLineStart)) || (closed && c != '}') {
			if start >= 0 {
				out.decls = append(out.decls, span{start, lastEnd})
			}
			start, depth = tokStart, 0
		} else if start < 0 {
			start = tokStart
		}
		if c != '}' {
			closed = false
		}
		switch c {
		case '{', '(', '[':
			depth++
		case '}', ')', ']':
			if depth > 0 {
				depth--
				closed = depth == 0 && c == '}'
			}
		}
		lastEnd = tokEnd
		i = tokEnd
	}
	if start >= 0 {
		out.decls = append(out.decls, span{start, lastEnd})
	}
	return out
}
