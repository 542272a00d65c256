package lsp

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/format"
)

// definition answers with the declaration a `use`, `extends` or block name
// refers to (from resolve.Info.Uses and Defs), or the file an import loads.
func (s *Server) definition(raw json.RawMessage) (any, error) {
	d, off, err := s.positionDoc(raw)
	if err != nil {
		return nil, err
	}
	if d.file == nil {
		return nil, nil
	}
	chain := nodePath(d.file.AST, off)
	for i := len(chain) - 1; i >= 0; i-- {
		switch x := chain[i].(type) {
		case *ast.Ident:
			if sym := symbolAt(d, x); sym != nil {
				if loc, ok := s.location(d, sym.Ident.Span()); ok {
					return []Location{loc}, nil
				}
				return nil, nil
			}
		case *ast.Import:
			if f := importedFile(d, x); f != nil {
				if uri, ok := s.fileURI(f); ok {
					return []Location{{URI: uri}}, nil
				}
			}
			return nil, nil
		}
	}
	return nil, nil
}

// formatting answers with one edit replacing the whole document by
// `rolltplc fmt`'s output, none when it is already formatted, and an error
// when the document has syntax errors.
func (s *Server) formatting(raw json.RawMessage) (any, error) {
	p, err := decodeParams[DocumentFormattingParams](raw)
	if err != nil {
		return nil, err
	}
	d, err := s.lookupDoc(p.TextDocument.URI)
	if err != nil {
		return nil, err
	}
	out, err := format.Source(d.path, d.text)
	if err != nil {
		var se *format.SyntaxError
		if errors.As(err, &se) {
			msg := "cannot format: the document has syntax errors; fix them first"
			for _, dg := range se.Diags {
				if dg.Severity == diag.Error {
					msg += " (line " + strconv.Itoa(dg.Subject.Start.Line) + ": " + message(dg) + ")"
					break
				}
			}
			return nil, errorf(codeRequestFailed, "%s", msg)
		}
		return nil, errorf(codeRequestFailed, "cannot format: %v", err)
	}
	edits := []TextEdit{}
	if !bytes.Equal(out, d.text) {
		edits = append(edits, TextEdit{Range: Range{End: d.position(len(d.text))}, NewText: string(out)})
	}
	return edits, nil
}

// documentSymbol answers with the outline: templates with their sections
// and fields as children, and the named blocks.
func (s *Server) documentSymbol(raw json.RawMessage) (any, error) {
	p, err := decodeParams[DocumentSymbolParams](raw)
	if err != nil {
		return nil, err
	}
	d, err := s.lookupDoc(p.TextDocument.URI)
	if err != nil {
		return nil, err
	}
	out := []DocumentSymbol{}
	if d.file == nil {
		return out, nil
	}
	rng := func(n ast.Node) Range { sp := n.Span(); return tfRange(d.tf, sp.Start.Offset, sp.End.Offset) }
	for _, decl := range d.file.AST.Decls {
		switch n := decl.Node().(type) {
		case *ast.Import, *ast.BadDecl:
			continue
		case *ast.Template:
			if n.Name == nil {
				continue
			}
			sym := DocumentSymbol{Name: n.Name.Name, Detail: "template", Kind: SymbolClass, Range: rng(n), SelectionRange: rng(n.Name)}
			if n.Extends != nil {
				sym.Detail += " extends " + n.Extends.Name
			}
			for _, it := range n.Items {
				if it.Field != nil && it.Field.Key != nil {
					c := DocumentSymbol{Name: it.Field.Key.Name, Kind: SymbolField, Range: rng(it.Field), SelectionRange: rng(it.Field.Key)}
					if it.Field.Value != nil {
						c.Detail = strings.Join(strings.Fields(exprText(d, it.Field.Value)), " ")
						c.Detail = strings.Trim(c.Detail, "`")
					}
					sym.Children = append(sym.Children, c)
					continue
				}
				if kw, node, items := section(it); node != nil {
					sym.Children = append(sym.Children, DocumentSymbol{Name: kw, Detail: plural(items, "item"), Kind: SymbolNamespace,
						Range: rng(node), SelectionRange: rng(node)})
				}
			}
			out = append(out, sym)
		default:
			sym := declSymbol(d.file, n)
			if sym == nil {
				continue
			}
			out = append(out, DocumentSymbol{Name: sym.Name, Detail: string(sym.Kind) + " block", Kind: SymbolModule,
				Range: rng(n), SelectionRange: rng(sym.Ident)})
		}
	}
	return out, nil
}

// section returns the keyword, node and item count of a template section.
func section(it *ast.TemplateItem) (string, ast.Node, int) {
	switch {
	case it.Config != nil:
		return "config", it.Config, len(it.Config.Items)
	case it.Mca != nil:
		return "mca", it.Mca, len(it.Mca.Items)
	case it.Weights != nil:
		return "weights", it.Weights, len(it.Weights.Items)
	case it.Parallel != nil:
		return "parallel", it.Parallel, len(it.Parallel.Items)
	case it.Quant != nil:
		return "quant", it.Quant, len(it.Quant.Items)
	}
	return "", nil, 0
}

// declSymbol finds the symbol a top-level block declares, whatever its
// kind.
func declSymbol(f *resolve.File, n ast.Node) *resolve.Symbol {
	for _, byName := range f.Symbols {
		for _, sym := range byName {
			if sym.Decl == n {
				return sym
			}
		}
	}
	return nil
}
