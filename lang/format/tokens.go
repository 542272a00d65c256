package format

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/parser"
)

// tok is one token of the source, white space left out, with what the
// syntax tree says about it.
type tok struct {
	text    string
	off     int  // byte offset in the source
	nl      int  // newlines in the white space before it
	comment bool // a `#` comment; text has no trailing white space
	match   int  // index of the matching bracket, or -1

	item       *item  // the item or declaration this token begins
	blockOpen  bool   // the `{` of a block body
	blockClose bool   // the `}` of a block body
	block      *block // for block braces
	inline     bool   // inside a one-line block
	unary      bool   // a prefix `-` or `!`
	group      bool   // the `(` of a parenthesized expression
	tight      bool   // a `[` with no space before: an index, `list[str]`
}

func (t *tok) opens() bool {
	return !t.comment && (t.text == "{" || t.text == "(" || t.text == "[")
}

func (t *tok) closes() bool {
	return !t.comment && (t.text == "}" || t.text == ")" || t.text == "]")
}

// block is the body of a template or of a config, mca, weights, parallel,
// quant or schema block.
type block struct {
	open, close int // token indexes of the braces
	items       int
	oneLine     bool
}

// item is a declaration or one item of a block body.
type item struct {
	first, last int // token indexes of its first and last token
	// shape names what the item aligns with ("" for nothing); cell is the
	// index of the token to align.
	shape string
	cell  int
	// neutral items (`use`) neither join nor end an alignment run.
	neutral bool
}

// printer holds the tokens of one file.
type printer struct {
	toks   []tok // in source order
	blocks []*block
}

func newPrinter(filename string, f *ast.File, src []byte) (*printer, error) {
	p := &printer{}
	if err := p.lex(filename, src); err != nil {
		return nil, err
	}
	if err := p.matchBrackets(); err != nil {
		return nil, err
	}
	var err error
	ast.Inspect(f, func(n ast.Node) bool {
		if err == nil {
			err = p.mark(n)
		}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	p.markOneLine()
	return p, nil
}

func (p *printer) lex(filename string, src []byte) error {
	sym := parser.Lexer.Symbols()
	commentType, wsType := sym["Comment"], sym["Whitespace"]
	base := 0
	if bytes.HasPrefix(src, []byte(parser.BOM)) {
		base = len(parser.BOM) // dropped: see the package doc
	}
	lx, err := parser.Lexer.Lex(filename, bytes.NewReader(src[base:]))
	if err != nil {
		return err
	}
	nl := 0
	for {
		t, err := lx.Next()
		if err != nil {
			return err
		}
		if t.EOF() {
			return nil
		}
		switch t.Type {
		case wsType:
			nl += strings.Count(t.Value, "\n")
			continue
		case commentType:
			p.toks = append(p.toks, tok{text: strings.TrimRight(t.Value, " \t\r\f\v"), off: base + t.Pos.Offset, nl: nl, comment: true, match: -1})
		default:
			p.toks = append(p.toks, tok{text: t.Value, off: base + t.Pos.Offset, nl: nl, match: -1})
		}
		nl = 0
	}
}

var closer = map[string]string{"{": "}", "(": ")", "[": "]"}

func (p *printer) matchBrackets() error {
	var stack []int
	for i := range p.toks {
		t := &p.toks[i]
		switch {
		case t.opens():
			stack = append(stack, i)
		case t.closes():
			if len(stack) == 0 || closer[p.toks[stack[len(stack)-1]].text] != t.text {
				return fmt.Errorf("unbalanced %q at offset %d", t.text, t.off)
			}
			o := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			t.match, p.toks[o].match = o, i
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q at offset %d", p.toks[stack[len(stack)-1]].text, p.toks[stack[len(stack)-1]].off)
	}
	return nil
}

// startingAt returns the index of the token (not a comment) that starts at
// byte offset off. The tokens are in source order, so it is a binary
// search (a map of every offset cost more than the tokens themselves).
func (p *printer) startingAt(off int) (int, bool) {
	i := sort.Search(len(p.toks), func(i int) bool { return p.toks[i].off >= off })
	return i, i < len(p.toks) && p.toks[i].off == off && !p.toks[i].comment
}

// endingAt returns the index of the token (not a comment) that ends at
// byte offset end.
func (p *printer) endingAt(end int) (int, bool) {
	i := sort.Search(len(p.toks), func(i int) bool { return p.toks[i].off+len(p.toks[i].text) >= end })
	return i, i < len(p.toks) && p.toks[i].off+len(p.toks[i].text) == end && !p.toks[i].comment
}

// at returns the index of the token that starts at the start of n.
func (p *printer) at(n ast.Node) (int, error) {
	s := n.Span()
	i, ok := p.startingAt(s.Start.Offset)
	if !ok {
		return 0, fmt.Errorf("no token at %s", s.Start)
	}
	return i, nil
}

// itemMark is what markItem is told about one item of a block: its
// shape (items of one shape align their cells), whether it is neutral
// (a `use` line, which neither starts nor breaks a run), and the text of
// its cell separator.
type itemMark struct {
	shape   string
	neutral bool
	cell    string
}

// markItems marks block n and each of its items, as how says.
func markItems[T ast.Node](p *printer, n ast.Node, items []T, how func(T) itemMark) error {
	if err := p.markBlock(n, len(items)); err != nil {
		return err
	}
	for _, it := range items {
		m := how(it)
		if err := p.markItem(it, m.shape, m.neutral, m.cell); err != nil {
			return err
		}
	}
	return nil
}

// mark records what n says about its tokens.
func (p *printer) mark(n ast.Node) error {
	switch n := n.(type) {
	case *ast.Decl:
		return p.markItem(n, "", false, "")
	case *ast.Template:
		return markItems(p, n, n.Items, func(it *ast.TemplateItem) itemMark {
			if it.Field != nil {
				return itemMark{shape: "field", cell: "="}
			}
			return itemMark{}
		})
	case *ast.ConfigBlock:
		return markItems(p, n, n.Items, func(it *ast.ConfigItem) itemMark {
			switch {
			case it.Use != nil:
				return itemMark{neutral: true}
			case it.Map != nil:
				return itemMark{shape: "map", cell: "->"}
			}
			return itemMark{}
		})
	case *ast.McaBlock:
		return markItems(p, n, n.Items, func(it *ast.McaItem) itemMark {
			switch {
			case it.Use != nil:
				return itemMark{neutral: true}
			case it.Const != nil:
				return itemMark{shape: "const", cell: "="}
			}
			return itemMark{}
		})
	case *ast.WeightsBlock:
		return markItems(p, n, n.Items, func(it *ast.WeightItem) itemMark {
			switch {
			case it.Use != nil:
				return itemMark{neutral: true}
			case it.Op != nil && it.Op.Kind != nil:
				return itemMark{shape: "op " + it.Op.Kind.Name, cell: "->"}
			}
			return itemMark{}
		})
	case *ast.ParallelBlock:
		return markItems(p, n, n.Items, func(it *ast.ParallelItem) itemMark { return itemMark{neutral: it.Use != nil} })
	case *ast.QuantBlock:
		return markItems(p, n, n.Items, func(it *ast.QuantItem) itemMark {
			if it.Use != nil {
				return itemMark{neutral: true}
			}
			return itemMark{shape: "scale", cell: "->"}
		})
	case *ast.SchemaBlock:
		return markItems(p, n, n.Items, func(it *ast.SchemaItem) itemMark { return itemMark{neutral: it.Use != nil} })
	case *ast.TypeAtom:
		if n.Elem != nil {
			i, err := p.at(n)
			if err != nil {
				return err
			}
			for i++; i < len(p.toks) && p.toks[i].comment; i++ {
			}
			if i == len(p.toks) || p.toks[i].text != "[" {
				return fmt.Errorf("no element type after %s", n.Span().Start)
			}
			p.toks[i].tight = true
		}
	case *ast.Unary:
		if n.Op != "" {
			i, err := p.at(n)
			if err != nil {
				return err
			}
			p.toks[i].unary = true
		}
	case *ast.Primary:
		if n.Paren != nil {
			i, err := p.at(n)
			if err != nil {
				return err
			}
			p.toks[i].group = true
		}
	case *ast.Suffix:
		if n.Index != nil {
			i, err := p.at(n)
			if err != nil {
				return err
			}
			p.toks[i].tight = true
		}
	}
	return nil
}

// markItem records the item n; cellText is the operator aligned for shape.
func (p *printer) markItem(n ast.Node, shape string, neutral bool, cellText string) error {
	first, err := p.at(n)
	if err != nil {
		return err
	}
	s := n.Span()
	last, ok := p.endingAt(s.End.Offset)
	if !ok || last < first {
		return fmt.Errorf("no token ends at %s", s.End)
	}
	it := &item{first: first, last: last, cell: -1, neutral: neutral}
	if shape != "" {
		for i := first; i <= last; i++ {
			if !p.toks[i].comment && p.toks[i].text == cellText {
				it.shape, it.cell = shape, i
				break
			}
		}
	}
	if p.toks[first].item == nil {
		p.toks[first].item = it
	}
	return nil
}

// markBlock records the braces of the block n, whose body is the first `{`
// after its start.
func (p *printer) markBlock(n ast.Node, items int) error {
	i, err := p.at(n)
	if err != nil {
		return err
	}
	for ; i < len(p.toks) && (p.toks[i].comment || p.toks[i].text != "{"); i++ {
	}
	if i == len(p.toks) || p.toks[i].match < 0 {
		return fmt.Errorf("no block body after %s", n.Span().Start)
	}
	b := &block{open: i, close: p.toks[i].match, items: items}
	p.toks[b.open].blockOpen, p.toks[b.open].block = true, b
	p.toks[b.close].blockClose, p.toks[b.close].block = true, b
	p.blocks = append(p.blocks, b)
	return nil
}

// markOneLine decides which blocks stay on one line, inner blocks first,
// and marks the tokens inside them.
func (p *printer) markOneLine() {
	sort.Slice(p.blocks, func(i, j int) bool { return p.blocks[i].open > p.blocks[j].open })
	for _, b := range p.blocks {
		b.oneLine = b.items <= 1
		for i := b.open + 1; i <= b.close && b.oneLine; i++ {
			t := &p.toks[i]
			if t.comment || (b.items > 0 && t.nl > 0) || (t.blockOpen && !t.block.oneLine) {
				b.oneLine = false
			}
		}
	}
	for _, b := range p.blocks {
		if b.oneLine {
			for i := b.open + 1; i < b.close; i++ {
				p.toks[i].inline = true
			}
		}
	}
}
