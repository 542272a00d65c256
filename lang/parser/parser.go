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
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"

	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

var options = []participle.Option{
	participle.Lexer(Lexer),
	participle.Elide("Comment", "Whitespace"),
	participle.Map(unquoteToken, "String"),
}

// unquoteToken replaces a String token's text with its value.
func unquoteToken(t lexer.Token) (lexer.Token, error) {
	v, err := unquote(t.Value)
	if err != nil {
		return t, participle.Errorf(t.Pos, "invalid quoted string %q: %s", t.Value, err.Error())
	}
	t.Value = v
	return t, nil
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
	"schema": true, "quant": true,
}

// MaxErrors caps the syntax errors reported for one file.
const MaxErrors = 50

// ParseFile parses src, naming positions after filename. It always returns a
// file; declarations that fail to parse are [ast.BadDecl]s, each with one
// diagnostic in the returned list.
func ParseFile(filename string, src []byte) (*ast.File, diag.List) {
	return (*Cache)(nil).ParseFile(filename, src)
}

// Cache makes re-parsing an edited file cheap: declarations whose text is
// unchanged since the previous parse of the same file name are reused, their
// positions moved in place, instead of parsed again. The trees a Cache
// returns belong to it: a later ParseFile of the same file name may move
// their positions, so keep only the latest result of each file (as a
// language server does). A nil *Cache parses everything afresh. It is safe
// for concurrent use.
type Cache struct {
	mu    sync.Mutex
	files map[string]map[string]cached // file name -> decl text -> decl
}

type cached struct {
	decl *ast.Decl
	base token.Pos // where the decl's text started when last placed
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{files: map[string]map[string]cached{}} }

// ParseFile is [ParseFile] with reuse of the unchanged declarations of the
// previous parse of filename.
func (c *Cache) ParseFile(filename string, src []byte) (f *ast.File, diags diag.List) {
	tf := token.NewFile(filename, src)
	f = &ast.File{Name: filename}
	f.Pos = tf.Pos(0)
	f.EndPos = tf.Pos(len(src))
	defer func() {
		if r := recover(); r != nil {
			diags.Add(&diag.Diagnostic{
				Severity: diag.Error, Code: diag.InternalError, Summary: "Internal parser error",
				Detail:  fmt.Sprintf("The parser failed unexpectedly (%v). Please report this with the file.", r),
				Subject: tf.Span(0, 0),
			})
		}
	}()
	sc := scan(src)
	for _, cm := range sc.comments {
		com := &ast.Comment{Text: string(src[cm.start:cm.end])}
		com.Pos, com.EndPos = tf.Pos(cm.start), tf.Pos(cm.end)
		f.Comments = append(f.Comments, com)
	}
	var old, used map[string]cached
	if c != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		old = c.files[filename]
		used = map[string]cached{}
	}
	// First the declarations the cache has and those too deep to parse,
	// then the others, in parallel, then all of them in order.
	slots := make([]slot, len(sc.decls))
	var todo []int
	taken := map[string]bool{}
	for i, ch := range sc.decls {
		sl := &slots[i]
		sl.text = src[ch.start:ch.end]
		sl.base = tf.Pos(ch.start)
		if e, ok := old[string(sl.text)]; ok && !taken[string(sl.text)] {
			taken[string(sl.text)] = true
			shift(e.decl, e.base, sl.base)
			sl.decl = e.decl
			continue
		}
		if ch.tooDeep.end > 0 {
			sl.decl = badDecl(tf, ch.span)
			sl.diag = &diag.Diagnostic{
				Severity: diag.Error, Code: diag.NestingTooDeep, Summary: "Nesting too deep",
				Detail: fmt.Sprintf("This declaration nests brackets, conditionals or prefix operators more than %d levels deep here; "+
					"it is not read. Split the expression up.", MaxNesting),
				Subject: tf.Span(ch.tooDeep.start, ch.tooDeep.end),
			}
			continue
		}
		todo = append(todo, i)
	}
	parseAll(filename, tf, sc.decls, slots, todo)
	for i := range slots {
		if len(diags) >= MaxErrors {
			break
		}
		sl := &slots[i]
		if sl.decl == nil {
			break // not parsed: after MaxErrors errors (see parseAll)
		}
		if sl.diag != nil {
			diags.Add(sl.diag)
		}
		if used != nil && sl.diag == nil {
			if _, dup := used[string(sl.text)]; !dup {
				used[string(sl.text)] = cached{sl.decl, sl.base}
			}
		}
		f.Decls = append(f.Decls, sl.decl)
	}
	if c != nil {
		c.files[filename] = used
	}
	return f, diags
}

// slot is one declaration of a file being parsed.
type slot struct {
	text []byte
	base token.Pos // where text starts
	decl *ast.Decl
	diag *diag.Diagnostic // its one error, if any
}

// parallelMin is the number of declarations from which ParseFile parses
// on several cores.
const parallelMin = 64

// parseAll parses the declarations slots[todo[...]] (their spans are in
// decls), each placed at its base, on up to GOMAXPROCS goroutines when
// there are many. Declarations are taken in order, and none is taken once
// MaxErrors of those taken failed: the first MaxErrors errors of the file
// are then known. A panic in the parser becomes an internal-error
// diagnostic of that declaration.
func parseAll(filename string, tf *token.File, decls []decl, slots []slot, todo []int) {
	var errs atomic.Int64
	one := func(i int) {
		defer func() {
			if slots[i].diag != nil {
				errs.Add(1)
			}
		}()
		sl := &slots[i]
		defer func() {
			if r := recover(); r != nil {
				sl.decl = badDecl(tf, decls[i].span)
				sl.diag = &diag.Diagnostic{
					Severity: diag.Error, Code: diag.InternalError, Summary: "Internal parser error",
					Detail:  fmt.Sprintf("The parser failed unexpectedly (%v). Please report this with the file.", r),
					Subject: tf.Span(decls[i].start, decls[i].start),
				}
			}
		}()
		if d, ok := parseAt(sl.text, sl.base); ok {
			sl.decl = d
			return
		}
		d, derr := parseChunk(filename, sl.text)
		if derr != nil {
			start := decls[i].start
			derr.Subject = token.Span{Start: tf.Pos(start + derr.Subject.Start.Offset), End: tf.Pos(start + derr.Subject.End.Offset)}
		}
		shift(d, token.Pos{Offset: 0, Line: 1, Column: 1}, sl.base)
		sl.decl, sl.diag = d, derr
	}
	workers := runtime.GOMAXPROCS(0)
	if len(todo) < parallelMin || workers < 2 {
		for _, i := range todo {
			if errs.Load() >= MaxErrors {
				return
			}
			one(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				if errs.Load() >= MaxErrors {
					return
				}
				k := int(next.Add(1)) - 1
				if k >= len(todo) {
					return
				}
				one(todo[k])
			}
		})
	}
	wg.Wait()
}

// parseAt parses the text of one declaration that starts at base, with the
// positions of the file, and reports whether it parsed. (A declaration
// that does not is parsed again by parseChunk, which makes the BadDecl and
// the diagnostic.)
func parseAt(text []byte, base token.Pos) (*ast.Decl, bool) {
	lx := Lexer.lexAt(string(text), lexer.Position(base), true)
	peek, err := lexer.Upgrade(lx, Lexer.comment, Lexer.whitespace)
	if err != nil {
		return nil, false
	}
	d, err := declParser.ParseFromLexer(peek)
	return d, err == nil
}

// parseChunk parses the text of one declaration with positions relative to
// its start (offset 0, line 1, column 1). A declaration that fails to parse
// becomes a BadDecl spanning the text.
func parseChunk(filename string, text []byte) (*ast.Decl, *diag.Diagnostic) {
	d, err := declParser.ParseBytes(filename, text)
	if err == nil {
		return d, nil
	}
	tf := token.NewFile(filename, text)
	bad := &ast.Decl{Bad: &ast.BadDecl{}}
	if d != nil && d.Node() != ast.Node(d) {
		bad.Bad.Partial = d
	}
	bad.Pos, bad.EndPos = tf.Pos(0), tf.Pos(len(text))
	bad.Bad.Range = bad.Range
	return bad, syntaxDiag(err, tf)
}

// badDecl returns a BadDecl spanning sp, with nothing parsed.
func badDecl(tf *token.File, sp span) *ast.Decl {
	bad := &ast.Decl{Bad: &ast.BadDecl{}}
	bad.Pos, bad.EndPos = tf.Pos(sp.start), tf.Pos(sp.end)
	bad.Bad.Range = bad.Range
	return bad
}

var rangeType = reflect.TypeOf(ast.Range{})

// shift moves every position in the tree of a declaration whose text started
// at from so that it starts at to. Columns change only on the first line.
func shift(n ast.Node, from, to token.Pos) {
	if from.Offset == to.Offset && from.Line == to.Line && from.Column == to.Column && from.Filename == to.Filename {
		return
	}
	move := func(p *token.Pos) {
		if p.Line == 0 {
			return // unset (a partial node)
		}
		if p.Line == from.Line {
			p.Column += to.Column - from.Column
		}
		p.Offset += to.Offset - from.Offset
		p.Line += to.Line - from.Line
		p.Filename = to.Filename
	}
	ast.Inspect(n, func(x ast.Node) bool {
		v := reflect.ValueOf(x)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() == reflect.Struct {
			if r := v.FieldByName("Range"); r.IsValid() && r.Type() == rangeType && r.CanAddr() {
				rg := r.Addr().Interface().(*ast.Range)
				move(&rg.Pos)
				move(&rg.EndPos)
			}
		}
		return true
	})
}

// syntaxDiag turns a participle error into a diagnostic whose subject is the
// offending token (positions relative to the chunk tf holds).
func syntaxDiag(err error, tf *token.File) *diag.Diagnostic {
	off := 0
	msg := err.Error()
	if pe, ok := err.(participle.Error); ok {
		off = pe.Position().Offset
		msg = pe.Message()
	}
	endOff := off
	if off < len(tf.Src) {
		switch c := tf.Src[off]; {
		case c == '"':
			var closed bool
			endOff, closed = stringToken(tf.Src, off)
			if !closed {
				msg = "string literal not terminated"
			}
		case isDigit(c):
			endOff = number(tf.Src, off)
		case isIdentStart(c):
			endOff = off + 1
			for endOff < len(tf.Src) && isIdentPart(tf.Src[endOff]) {
				endOff++
			}
		default:
			r, size := utf8.DecodeRune(tf.Src[off:])
			endOff = off + size
			for _, op := range []string{"->", "==", "!=", "<=", ">=", "//", "&&", "||"} {
				if strings.HasPrefix(string(tf.Src[off:]), op) {
					endOff = off + len(op)
				}
			}
			if !strings.ContainsRune("-+*/%<>=!(){}[],.:?|", r) {
				msg = fmt.Sprintf("unexpected character %q", string(r))
			}
		}
	}
	return &diag.Diagnostic{
		Severity: diag.Error, Code: diag.SyntaxError, Summary: "Syntax error",
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
