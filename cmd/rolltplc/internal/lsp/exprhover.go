package lsp

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/lower"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/lang/ast"
)

// exprNode returns n as a whole expression when n is a level of the
// expression grammar that has an operator of its own (a conditional, ||,
// &&, a comparison, + -, * / // %), nil otherwise: hovering anywhere in
// `mca.layer_types[layer] == "x"` shows that comparison, not the wrappers
// around it.
func exprNode(n ast.Node) *ast.Expr {
	wrapOr := func(o *ast.OrExpr) *ast.Expr { return &ast.Expr{Range: o.Range, Value: o} }
	wrapAnd := func(a *ast.AndExpr) *ast.Expr { return wrapOr(&ast.OrExpr{Range: a.Range, Left: a}) }
	wrapCmp := func(c *ast.CmpExpr) *ast.Expr { return wrapAnd(&ast.AndExpr{Range: c.Range, Left: c}) }
	wrapAdd := func(x *ast.AddExpr) *ast.Expr { return wrapCmp(&ast.CmpExpr{Range: x.Range, Left: x}) }
	switch x := n.(type) {
	case *ast.Expr:
		if x.Cond != nil {
			return x
		}
	case *ast.OrExpr:
		if len(x.Right) > 0 {
			return wrapOr(x)
		}
	case *ast.AndExpr:
		if len(x.Right) > 0 {
			return wrapAnd(x)
		}
	case *ast.CmpExpr:
		if x.Op != "" {
			return wrapCmp(x)
		}
	case *ast.AddExpr:
		if len(x.Rest) > 0 {
			return wrapAdd(x)
		}
	case *ast.MulExpr:
		if len(x.Rest) > 0 {
			return wrapAdd(&ast.AddExpr{Range: x.Range, Left: x})
		}
	}
	return nil
}

// anyKeys is the type environment of a hover: every config key is known
// and of any type (a block may be used by templates of several model
// types), `layer` is bound, the build flags are the language's.
type anyKeys struct{}

func (anyKeys) HFType(string) (ir.Type, bool)  { return ir.AnyType, true }
func (anyKeys) MCAType(string) (ir.Type, bool) { return ir.AnyType, true }
func (anyKeys) LayerBound() bool               { return true }
func (anyKeys) IsFlag(name string) bool        { _, ok := vocab.BuildFlags[name]; return ok }

// exprHover shows an expression's static type and the Python the backend
// prints for it (lang/spec.md §9).
func exprHover(e *ast.Expr) string {
	x, diags := lower.Expr(e)
	if diags.HasErrors() {
		return ""
	}
	typ, _ := x.Check(anyKeys{})
	return fmt.Sprintf("**expression** · type `%s`\n\nPython (generated template class):\n```python\n%s\n```", typ, x.Python(ir.DefaultPyNames))
}

// setHover shows a `set` statement as the generated template class
// applies it.
func setHover(s *ast.ConfigSet) string {
	if s.Side == nil || s.Key == nil || s.Value == nil {
		return ""
	}
	v, diags := lower.Expr(s.Value)
	if diags.HasErrors() {
		return ""
	}
	var parts []string
	for _, p := range s.Key.Parts {
		parts = append(parts, p.Name)
	}
	key := strings.Join(parts, ".")
	var b strings.Builder
	switch s.Side.Name {
	case "mca":
		fmt.Fprintf(&b, "**set** `mca.%s` · computed HF → MCA, after the config maps and constants\n\n", key)
	case "hf":
		fmt.Fprintf(&b, "**set** `hf.%s` · computed MCA → HF, winning over the config maps\n\n", key)
	default:
		return ""
	}
	b.WriteString("Python (generated template class):\n```python\n")
	ind := ""
	if s.When != nil {
		w, diags := lower.Expr(s.When)
		if diags.HasErrors() {
			return ""
		}
		fmt.Fprintf(&b, "if %s:\n", w.Python(ir.DefaultPyNames))
		ind = "    "
	}
	fmt.Fprintf(&b, "%skw_args[%s] = %s\n```", ind, strconv.Quote(key), v.Python(ir.DefaultPyNames))
	return b.String()
}

// exprKeyHover documents `hf.KEY` and `mca.KEY` in an expression: the
// key's schema doc and how a missing key reads.
func (s *Server) exprKeyHover(d *document, mt string, grand ast.Node, suf *ast.Suffix, id *ast.Ident) string {
	pf, ok := grand.(*ast.Postfix)
	if !ok || suf.Field != id || len(pf.Ops) == 0 || pf.Ops[0] != suf || pf.X == nil || pf.X.Ident == nil {
		return ""
	}
	side := *pf.X.Ident
	var what, obj string
	switch side {
	case "hf":
		what, obj = "HF config key", "hf_config"
	case "mca":
		what, obj = "MCA config key", "mca_config"
	default:
		return ""
	}
	return s.keyHeader(d, what, mt, side, id.Name) +
		fmt.Sprintf("\n\nRead by an expression; a missing key is null (`getattr(%s, '%s', None)`).", obj, id.Name)
}
