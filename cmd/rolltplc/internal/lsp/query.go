package lsp

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/token"
)

// lookupDoc returns the open document for a position request, brought up to
// date.
func (s *Server) lookupDoc(uri string) (*document, error) {
	d := s.docs[uri]
	if d == nil {
		return nil, errorf(codeInvalidParams, "document not open: %s", uri)
	}
	return d, nil
}

// children returns the direct children of n in source order.
func children(n ast.Node) []ast.Node {
	var out []ast.Node
	first := true
	ast.Inspect(n, func(c ast.Node) bool {
		if first {
			first = false
			return true
		}
		out = append(out, c)
		return false
	})
	return out
}

// nodePath returns the chain of nodes from root down to the innermost node
// whose span contains off. A node counts when off is inside it or just past
// its end (a cursor after a word); inside wins.
func nodePath(root ast.Node, off int) []ast.Node {
	chain := []ast.Node{root}
	cur := root
	for {
		var pick ast.Node
		for _, c := range children(cur) {
			sp := c.Span()
			if !sp.IsValid() || sp.Start.Offset > off || off > sp.End.Offset {
				continue
			}
			if off < sp.End.Offset || sp.Start.Offset == sp.End.Offset {
				pick = c
				break
			}
			if pick == nil {
				pick = c
			}
		}
		if pick == nil {
			return chain
		}
		chain = append(chain, pick)
		cur = pick
	}
}

// enclosing returns the innermost node of type T in chain.
func enclosing[T ast.Node](chain []ast.Node) (T, bool) {
	for i := len(chain) - 1; i >= 0; i-- {
		if n, ok := chain[i].(T); ok {
			return n, true
		}
	}
	var zero T
	return zero, false
}

// modelType is the name of the template around the chain's end, or "".
func modelType(chain []ast.Node) string {
	if t, ok := enclosing[*ast.Template](chain); ok && t.Name != nil {
		return t.Name.Name
	}
	return ""
}

// docComment returns the comment lines right above the line where a
// declaration starts, without their '#'.
func docComment(src []byte, start int) string {
	tf := token.NewFile("", src)
	var lines []string
	for l := tf.Pos(start).Line - 1; l >= 1; l-- {
		t := strings.TrimSpace(tf.Line(l))
		if !strings.HasPrefix(t, "#") {
			break
		}
		lines = append(lines, strings.TrimSpace(strings.TrimPrefix(t, "#")))
	}
	for i, j := 0, len(lines)-1; i < j; i, j = i+1, j-1 {
		lines[i], lines[j] = lines[j], lines[i]
	}
	return strings.Join(lines, "\n")
}

// preview returns the first lines of a span's source.
func preview(src []byte, sp token.Span, max int) string {
	start, end := sp.Start.Offset, sp.End.Offset
	if start < 0 || end > len(src) || start > end {
		return ""
	}
	lines := strings.Split(string(src[start:end]), "\n")
	if len(lines) > max {
		lines = append(lines[:max], "    ...")
	}
	return strings.Join(lines, "\n")
}

// displayName names a file for hover text: library files by their library
// path, others relative to the document's folder when below it.
func displayName(d *document, name string) string {
	if name == d.path {
		return "this file"
	}
	if filepath.IsAbs(name) && filepath.IsAbs(d.path) {
		if rel, err := filepath.Rel(filepath.Dir(d.path), name); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.ToSlash(rel)
		}
	}
	return filepath.ToSlash(name)
}

func where(d *document, sp token.Span) string {
	return fmt.Sprintf("%s, line %d", displayName(d, sp.Start.Filename), sp.Start.Line)
}

// sameSpan reports whether two spans are the same source range.
func sameSpan(a, b token.Span) bool {
	return a.Start.Filename == b.Start.Filename && a.Start.Offset == b.Start.Offset && a.End.Offset == b.End.Offset
}

// templatesWith returns the compiled templates of d's program that contain
// an element with the given span, as found by has.
func templatesWith(d *document, has func(t *ir.Template) bool) []*ir.Template {
	if d.res == nil || d.res.Program == nil {
		return nil
	}
	var out []*ir.Template
	for _, t := range d.res.Program.Templates {
		if has(t) {
			out = append(out, t)
		}
	}
	return out
}

// hfKeyAfterPrefixes applies a template's key prefix rules to an HF key.
func hfKeyAfterPrefixes(t *ir.Template, key string) string { return t.EffectiveKey(key) }

// symbolAt returns the declaration an identifier names or declares.
func symbolAt(d *document, id *ast.Ident) *resolve.Symbol {
	if d.res == nil || d.res.Info == nil {
		return nil
	}
	if s := d.res.Info.Uses[id]; s != nil {
		return s
	}
	return d.res.Info.Defs[id]
}

// importedFile returns the file an import loaded, or nil.
func importedFile(d *document, im *ast.Import) *resolve.File {
	if d.file == nil || im.Path == nil {
		return nil
	}
	name := im.Path.Value + ".rolltpl"
	local := filepath.Join(filepath.Dir(d.path), filepath.FromSlash(name))
	for _, f := range d.file.Imports {
		if (!f.Lib && f.Path == local) || (f.Lib && f.Path == resolve.LibPrefix+path.Clean(name)) {
			return f
		}
	}
	return nil
}

func codeList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = "`" + s + "`"
	}
	return strings.Join(q, ", ")
}

func templateNames(ts []*ir.Template) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out
}
