package parser

// A hand-written scanner that finds declaration boundaries and comments
// without running participle's regular-expression lexer over the whole
// file. Its token boundaries are those of [Lexer]: comments, strings
// (terminated or not), numbers, identifiers and single characters. Only
// identifiers (declaration keywords) and brackets matter for the cut, so
// operators are scanned a character at a time.

// span is a byte range.
type span struct{ start, end int }

// decl is one declaration the scanner cut: its text and, when it nests
// deeper than [MaxNesting], the token where it first does (tooDeep.end > 0).
type decl struct {
	span
	tooDeep span
}

// scanned is what the scanner found: the declarations, each from its first
// token to the end of its last token, and the comments.
type scanned struct {
	decls    []decl
	comments []span
}

// MaxNesting is how deeply a declaration may nest. Each open bracket,
// brace or parenthesis counts one level, each `if` one more until the
// expression it belongs to ends (at a `,`, `=`, `->`, `:`, `when` or the
// closing bracket), and each prefix `!` or `-` one more until its operand
// ends. A deeper declaration is not parsed: it gets a "nesting-too-deep"
// diagnostic, so that no recursive pass over the tree (the parser itself,
// the formatter, resolve, lower, check, the language server) can exhaust
// the stack.
const MaxNesting = 100

// BOM is the UTF-8 byte order mark, ignored at the start of a file.
const BOM = "\uFEFF"

// bomLen returns 3 when src starts with a UTF-8 byte order mark, else 0.
func bomLen(src []byte) int {
	if len(src) >= 3 && src[0] == 0xEF && src[1] == 0xBB && src[2] == 0xBF {
		return 3
	}
	return 0
}

// twoCharOps are the operators of two characters, as [Lexer] reads them.
var twoCharOps = [...]string{"->", "==", "!=", "<=", ">=", "//", "&&", "||"}

// nesting measures how deeply the tokens of one declaration nest (see
// [MaxNesting]). It may over-count but never under-counts: every level the
// recursive-descent parser enters for a construct is counted.
type nesting struct {
	nestLevel
	outer   []nestLevel // the state outside each open bracket
	operand bool        // the previous token ended an operand
}

// nestLevel is the nesting inside one pair of brackets.
type nestLevel struct {
	base  int // the nesting at the bracket
	ifs   int // `if`s in the current expression
	unary int // prefix operators waiting for their operand
}

// token accounts for one token (its text, or "" for a string or number;
// ident tells identifiers) and returns the nesting after it.
func (n *nesting) token(text string, ident bool) int {
	operand := false
	switch text {
	case "{", "(", "[":
		n.outer = append(n.outer, n.nestLevel)
		n.nestLevel = nestLevel{base: n.level() + 1}
	case "}", ")", "]":
		if k := len(n.outer); k > 0 {
			n.nestLevel = n.outer[k-1]
			n.outer = n.outer[:k-1]
		}
		operand = true
	case ",", "=", "->", ":", "when":
		n.ifs, n.unary = 0, 0
	case "if":
		n.ifs++
		n.unary = 0
	case "else":
		n.unary = 0
	case "!":
		n.unary++
	case "-":
		if n.operand {
			n.unary = 0 // binary: the operand of the prefix operators ended
		} else {
			n.unary++
		}
	case "+", "*", "/", "//", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "|":
		n.unary = 0
	default:
		operand = ident || text == ""
	}
	n.operand = operand
	return n.level()
}

// level is the nesting at the current token.
func (n *nesting) level() int { return n.base + n.ifs + n.unary }

func isIdentStart(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// digits returns the end of a run of digits starting at i.
func digits[S ~string | ~[]byte](src S, i int) int {
	for i < len(src) && isDigit(src[i]) {
		i++
	}
	return i
}

// exponent returns the end of `[eE][-+]?[0-9]+` at i, or i if there is none.
func exponent[S ~string | ~[]byte](src S, i int) int {
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
func number[S ~string | ~[]byte](src S, i int) int {
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
func stringEnd[S ~string | ~[]byte](src S, i int) int {
	end, _ := stringToken(src, i)
	return end
}

// stringToken is stringEnd that also tells whether the string is
// terminated (a String token rather than a BadString).
func stringToken[S ~string | ~[]byte](src S, i int) (end int, closed bool) {
	j := i + 1
	for j < len(src) {
		switch c := src[j]; {
		case c == '"':
			return j + 1, true
		case c == '\n':
			return j, false
		case c == '\\':
			if j+1 >= len(src) || src[j+1] == '\n' {
				return j, false
			}
			j += 2
		default:
			j++
		}
	}
	return min(j, len(src)), false
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
	var nest nesting
	var tooDeep span
	i := bomLen(src)
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
			for _, op := range twoCharOps {
				if i+1 < len(src) && src[i] == op[0] && src[i+1] == op[1] {
					tokEnd = i + 2
				}
			}
		}
		word := ""
		if ident || c != '"' && !isDigit(c) {
			word = string(src[tokStart:tokEnd])
		}
		isKeyword := ident && DeclKeywords[word]
		keyword := isKeyword && !(prevKeyword && !atLineStart)
		prevKeyword = isKeyword
		if (keyword && (depth == 0 || atLineStart)) || (closed && c != '}') {
			if start >= 0 {
				out.decls = append(out.decls, decl{span{start, lastEnd}, tooDeep})
			}
			start, depth = tokStart, 0
			nest, tooDeep = nesting{}, span{}
		} else if start < 0 {
			start = tokStart
		}
		if nest.token(word, ident) > MaxNesting && tooDeep.end == 0 {
			tooDeep = span{tokStart, tokEnd}
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
		out.decls = append(out.decls, decl{span{start, lastEnd}, tooDeep})
	}
	return out
}

// LineCuts returns the offsets in src, in increasing order, of the starts
// of the lines on which a top-level declaration begins with only white
// space before it on its line and after the previous declaration's line,
// and with a declaration keyword.
// Cutting a file that parses without errors at any of these offsets gives
// pieces that each parse to whole declarations of the file, so a tool may
// work on the pieces one at a time (the formatter does, to bound its
// memory by the piece rather than the file).
func LineCuts(src []byte) []int {
	sc := scan(src)
	var cuts []int
	prevEnd := bomLen(src)
	for _, d := range sc.decls {
		ls := d.start
		for ls > 0 && (src[ls-1] == ' ' || src[ls-1] == '\t' || src[ls-1] == '\r') {
			ls--
		}
		if ls > prevEnd && src[ls-1] == '\n' && startsWithKeyword(src[d.start:d.end]) {
			cuts = append(cuts, ls)
		}
		prevEnd = d.end
	}
	return cuts
}

// startsWithKeyword reports whether text starts with a declaration keyword.
func startsWithKeyword(text []byte) bool {
	i := 0
	for i < len(text) && isIdentPart(text[i]) {
		i++
	}
	return i > 0 && DeclKeywords[string(text[:i])]
}
