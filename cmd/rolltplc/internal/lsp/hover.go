package lsp

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/token"
)

func (s *Server) hover(raw json.RawMessage) (any, error) {
	d, off, err := s.positionDoc(raw)
	if err != nil {
		return nil, err
	}
	if d.file == nil {
		return nil, nil
	}
	chain := nodePath(d.file.AST, off)
	text, sp := s.hoverText(d, chain)
	if text == "" {
		return nil, nil // null: nothing to show
	}
	r := tfRange(d.tf, sp.Start.Offset, sp.End.Offset)
	return Hover{Contents: MarkupContent{Kind: "markdown", Value: text}, Range: &r}, nil
}

// hoverText returns the markdown for the innermost node of chain that has
// something to say, and that node's span.
func (s *Server) hoverText(d *document, chain []ast.Node) (string, token.Span) {
	n := len(chain)
	parent := func(i int) ast.Node {
		if i > 0 {
			return chain[i-1]
		}
		return nil
	}
	for i := n - 1; i >= 0; i-- {
		switch x := chain[i].(type) {
		case *ast.Ident:
			if t := s.identHover(d, chain[:i+1], x, parent(i)); t != "" {
				return t, x.Span()
			}
		case *ast.Primary:
			if x.Ident != nil {
				if doc, ok := vocab.BuildFlags[*x.Ident]; ok {
					return fmt.Sprintf("**build flag** `%s`\n\n%s.", *x.Ident, doc), x.Span()
				}
			}
			if x.String != nil {
				if t := s.nameHover(d, chain[:i+1], *x.String); t != "" {
					return t, x.Span()
				}
			}
		case *ast.String:
			if t := s.stringHover(d, chain[:i+1], x, parent(i)); t != "" {
				return t, x.Span()
			}
		case *ast.ConfigSet:
			if t := setHover(x); t != "" {
				return t, x.Span()
			}
		default:
			if e := exprNode(x); e != nil {
				if t := exprHover(e); t != "" {
					return t, x.Span()
				}
			}
		}
	}
	return "", token.Span{}
}

func (s *Server) identHover(d *document, chain []ast.Node, id *ast.Ident, parent ast.Node) string {
	if sym := symbolAt(d, id); sym != nil {
		return symbolHover(d, sym)
	}
	grand := ast.Node(nil)
	if len(chain) >= 3 {
		grand = chain[len(chain)-3]
	}
	mt := modelType(chain)
	switch p := parent.(type) {
	case *ast.Op:
		if p.Kind == id {
			if spec := vocab.Op(id.Name); spec != nil {
				return opHover(spec)
			}
		}
	case *ast.Param:
		op, _ := grand.(*ast.Op)
		if p.Name == id && op != nil && op.Kind != nil {
			if spec := vocab.Op(op.Kind.Name); spec != nil {
				if ps := spec.Param(id.Name); ps != nil {
					return fmt.Sprintf("**parameter** `%s` of `%s` (%s, %s)\n\n%s.", ps.Name, spec.Kind, typeWords(ps.Type), requiredWord(ps.Required), ps.Doc)
				}
			}
		}
	case *ast.Field:
		if p.Key != id {
			break
		}
		switch grand.(type) {
		case *ast.TemplateItem:
			if doc, ok := vocab.TemplateFields[id.Name]; ok {
				return fmt.Sprintf("**template field** `%s` (%s)\n\n%s.", id.Name, vocab.TemplateFieldType(id.Name), doc)
			}
		case *ast.McaItem:
			return s.mcaKeyHover(d, mt, id.Name, p)
		}
	case *ast.ParallelClass:
		if p.Kind == id {
			return parallelClassHover(id.Name)
		}
	case *ast.Suffix:
		return s.exprKeyHover(d, mt, grand, p, id)
	case *ast.ConfigMap:
		if p.MCA == id {
			return s.mcaKeyHover(d, mt, id.Name, nil)
		}
	case *ast.Path:
		switch g := grand.(type) {
		case *ast.ConfigMap:
			return s.hfKeyHover(d, mt, g)
		case *ast.ConfigSet:
			side := ""
			if g.Side != nil {
				side = g.Side.Name
			}
			key := pathText(p)
			if side == "mca" {
				return s.mcaKeyHover(d, mt, key, nil)
			}
			return s.keyHeader(d, "HF config key", mt, "hf", key) + "\n\nComputed with `set` (lang/spec.md §5)."
		}
	}
	return ""
}

func pathText(p *ast.Path) string {
	parts := make([]string, len(p.Parts))
	for i, id := range p.Parts {
		parts[i] = id.Name
	}
	return strings.Join(parts, ".")
}

func requiredWord(req bool) string {
	if req {
		return "required"
	}
	return "optional"
}

func typeWords(t string) string {
	switch t {
	case "int?":
		return "int or null"
	}
	return t
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// opSignature writes an op kind's shape: `qkv(hidden_size = int?) hf, hf, hf -> mca`.
func opSignature(o *vocab.OpSpec) string {
	var b strings.Builder
	b.WriteString(o.Kind)
	if len(o.Params) > 0 {
		var ps []string
		for _, p := range o.Params {
			ps = append(ps, p.Name+" = "+p.Type)
		}
		b.WriteString("(" + strings.Join(ps, ", ") + ")")
	}
	names := func(side string, n int) string {
		if n == 1 {
			return side
		}
		var out []string
		for i := 1; i <= n; i++ {
			out = append(out, fmt.Sprintf("%s%d", side, i))
		}
		return strings.Join(out, ", ")
	}
	switch o.Arity {
	case vocab.Fixed:
		fmt.Fprintf(&b, " %s -> %s", names("hf", o.HF), names("mca", o.MCA))
	case vocab.OneSide:
		b.WriteString(" hf -> mca, ...  |  hf, ... -> mca")
	case vocab.DropArity:
		b.WriteString(" hf, ...")
	}
	return b.String()
}

func arityWords(o *vocab.OpSpec) string {
	switch o.Arity {
	case vocab.Fixed:
		return plural(o.HF, "HF name") + " → " + plural(o.MCA, "MCA name")
	case vocab.OneSide:
		return "1 HF name → N MCA names, or N → 1"
	}
	return "1 or more HF names, no MCA names"
}

func opHover(o *vocab.OpSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "```rolltpl\n%s\n```\n", opSignature(o))
	fmt.Fprintf(&b, "**op** `%s` · %s · ROLL `%s`\n\n%s", o.Kind, arityWords(o), o.ROLLClass, o.Doc)
	if len(o.Params) > 0 {
		b.WriteString("\n\nParameters:")
		for _, p := range o.Params {
			fmt.Fprintf(&b, "\n- `%s` (%s, %s): %s", p.Name, typeWords(p.Type), requiredWord(p.Required), p.Doc)
		}
	}
	if len(o.Reads) > 0 {
		fmt.Fprintf(&b, "\n\nReads MCA config: %s", codeList(o.Reads))
	}
	if len(o.LossyIn) > 0 {
		fmt.Fprintf(&b, "\n\nLossy in %s: a round trip may not give the same bytes back; `verify` compares its tensors with their own round trip", codeList(o.LossyIn))
	}
	return b.String()
}

func parallelClassHover(name string) string {
	doc, ok := vocab.ParallelClassDoc[name]
	if !ok {
		return ""
	}
	shape := "list of MCA name patterns"
	if slices.Contains(ir.ParallelMaps, name) {
		shape = "map: `\"from\" -> \"to\"` pairs"
	}
	return fmt.Sprintf("**parallel class** `%s` (%s)\n\n%s.", name, shape, doc)
}

// symbolHover shows a declaration: its kind and name, where it is, its doc
// comment and its first lines.
func symbolHover(d *document, sym *resolve.Symbol) string {
	var b strings.Builder
	sp := sym.Decl.Span()
	if pv := preview(sym.File.Src, sp, 10); pv != "" {
		fmt.Fprintf(&b, "```rolltpl\n%s\n```\n", pv)
	}
	kind := string(sym.Kind)
	if sym.Kind != resolve.KindTemplate {
		kind += " block"
	}
	fmt.Fprintf(&b, "**%s** `%s` · %s", kind, sym.Name, where(d, sym.Ident.Span()))
	if doc := docComment(sym.File.Src, sp.Start.Offset); doc != "" {
		b.WriteString("\n\n" + doc)
	}
	return b.String()
}

func (s *Server) keyHeader(d *document, what, modelType, side, key string) string {
	h := fmt.Sprintf("**%s** `%s`", what, key)
	if doc, ok := s.keyDoc(d, modelType, side, key); ok && doc != "" {
		h += "\n\n" + doc
	}
	return h
}

// hfKeyHover documents the HF side of a config map and where it is mapped.
func (s *Server) hfKeyHover(d *document, mt string, m *ast.ConfigMap) string {
	key := pathText(m.HF)
	var b strings.Builder
	b.WriteString(s.keyHeader(d, "HF config key", mt, "hf", key))
	if m.MCA != nil {
		fmt.Fprintf(&b, "\n\nMapped to MCA key `%s` here (%s): copied HF → MCA on load and back on save.", m.MCA.Name, where(d, m.Span()))
	}
	ts := templatesWith(d, func(t *ir.Template) bool {
		return slices.ContainsFunc(t.Config, func(e ir.ConfigEntry) bool { return sameSpan(e.Span, m.Span()) })
	})
	for _, t := range ts {
		if full := hfKeyAfterPrefixes(t, key); full != key {
			fmt.Fprintf(&b, "\n\nIn template `%s` the HF key read is `%s` (key prefix rules).", t.Name, full)
		}
	}
	if len(ts) > 0 {
		fmt.Fprintf(&b, "\n\nUsed by templates: %s", codeList(templateNames(ts)))
	}
	return b.String()
}

// mcaKeyHover documents an MCA config key: its constant value when c is
// set, which HF key maps to it and which ops read it.
func (s *Server) mcaKeyHover(d *document, mt, key string, c *ast.Field) string {
	var b strings.Builder
	b.WriteString(s.keyHeader(d, "MCA config key", mt, "mca", key))
	if c != nil {
		fmt.Fprintf(&b, "\n\nConstant (ROLL's constant_mca_config): merged last, so it wins over mapped values.")
	}
	type mapping struct{ tmpl, hf string }
	var maps []mapping
	var consts []string
	if d.res != nil && d.res.Program != nil {
		for _, t := range d.res.Program.Templates {
			for _, e := range t.Config {
				if e.MCA == key {
					maps = append(maps, mapping{t.Name, hfKeyAfterPrefixes(t, e.HF)})
				}
			}
			for _, k := range t.Constants {
				if k.Key == key {
					consts = append(consts, fmt.Sprintf("`%s` = `%s`", t.Name, valueText(k.Value)))
				}
			}
		}
	}
	for _, m := range maps {
		fmt.Fprintf(&b, "\n\nIn template `%s`: mapped from HF key `%s`.", m.tmpl, m.hf)
	}
	if len(consts) > 0 {
		fmt.Fprintf(&b, "\n\nConstant in templates: %s", strings.Join(consts, ", "))
	}
	var readers []string
	for _, o := range vocab.Ops {
		if slices.Contains(o.Reads, key) {
			readers = append(readers, o.Kind)
		}
	}
	if len(readers) > 0 {
		fmt.Fprintf(&b, "\n\nRead at run time by ops: %s", codeList(readers))
	}
	return b.String()
}

// nameHover documents a weight name written in an op: which op consumes
// (HF side) or produces (MCA side) it, and what else mentions it.
func (s *Server) nameHover(d *document, chain []ast.Node, name string) string {
	var op *ast.Op
	var side string
	var index int
	for i := len(chain) - 1; i >= 0 && op == nil; i-- {
		switch x := chain[i].(type) {
		case *ast.Op:
			if i+1 < len(chain) {
				if j := slices.Index(x.HF, exprOf(chain[i+1])); j >= 0 {
					op, side, index = x, "hf", j
				} else if j := slices.Index(x.MCA, exprOf(chain[i+1])); j >= 0 {
					op, side, index = x, "mca", j
				}
			}
		case *ast.Drop:
			return fmt.Sprintf("**HF weight name** `%s` %s\n\nDropped on purpose by `drop`.", name, nameScope(name))
		case *ast.Field, *ast.Param:
			return ""
		}
	}
	if op == nil || op.Kind == nil {
		return ""
	}
	var b strings.Builder
	kind := op.Kind.Name
	others := func(es []*ast.Expr) string {
		var out []string
		for _, e := range es {
			out = append(out, exprText(d, e))
		}
		return strings.Join(out, ", ")
	}
	if side == "hf" {
		fmt.Fprintf(&b, "**HF weight name** `%s` %s\n\nConsumed by `%s` (HF name %d of %d), which produces %s.", name, nameScope(name), kind, index+1, len(op.HF), others(op.MCA))
	} else {
		fmt.Fprintf(&b, "**MCA weight name** `%s` %s\n\nProduced by `%s` (MCA name %d of %d) from %s.", name, nameScope(name), kind, index+1, len(op.MCA), others(op.HF))
	}
	ts := templatesWith(d, func(t *ir.Template) bool {
		return slices.ContainsFunc(t.Ops, func(o *ir.Op) bool { return sameSpan(o.Span, op.Span()) })
	})
	if side == "mca" {
		for _, t := range ts {
			if cls := parallelClassesOf(d.res.Program, t, name); len(cls) > 0 {
				fmt.Fprintf(&b, "\n\nIn template `%s`: parallel %s", t.Name, strings.Join(cls, ", "))
			}
		}
	}
	if len(ts) > 0 {
		fmt.Fprintf(&b, "\n\nUsed by templates: %s", codeList(templateNames(ts)))
	}
	return b.String()
}

// exprOf returns n as an *ast.Expr, or nil.
func exprOf(n ast.Node) *ast.Expr {
	e, _ := n.(*ast.Expr)
	return e
}

func exprText(d *document, e *ast.Expr) string {
	sp := e.Span()
	if sp.Start.Offset < 0 || sp.End.Offset > len(d.text) || sp.Start.Offset > sp.End.Offset {
		return "?"
	}
	return "`" + strings.Join(strings.Fields(string(d.text[sp.Start.Offset:sp.End.Offset])), " ") + "`"
}

func nameScope(name string) string {
	switch {
	case strings.Contains(name, "{}"):
		return "(with a `{}` wildcard for a whole sub-tree)"
	case strings.HasPrefix(name, "."):
		return "(layer-relative)"
	}
	return "(global)"
}

// parallelClassesOf describes how a template's parallel set places an
// MCA name, by ROLL's rules (rollname): the pipeline-stage classes it is
// in ("class `pre_process`"), then the one tensor-parallel class ROLL
// converts it by (".bias" read as ".weight", first match), noting the
// class it falls back to without grouped GEMM or swiglu, then
// `te_to_local` when the name is renamed for transformer_impl=local.
func parallelClassesOf(prog *ir.Program, t *ir.Template, name string) []string {
	if prog == nil || t.Parallel == nil {
		return nil
	}
	eff := prog.Effective(t.Parallel)
	var out []string
	for _, c := range []string{rollname.KeyPreProcess, rollname.KeyPostProcess} {
		if rollname.NameMatch(name, eff.Lists[c]) {
			out = append(out, fmt.Sprintf("class `%s`", c))
		}
	}
	cl := rollname.NewClassifier(eff.ClassLists())
	if c := cl.Classify(name, true, true); c != rollname.Unclassified {
		s := fmt.Sprintf("class `%s`", c.Key())
		var other rollname.Class
		var without string
		switch {
		case c <= rollname.GroupedRow:
			other, without = cl.Classify(name, false, true), "grouped GEMM"
		case c == rollname.Swiglu:
			other, without = cl.Classify(name, false, false), "swiglu"
		}
		if without != "" {
			if other == rollname.Unclassified {
				s += fmt.Sprintf(" (unclassified without %s)", without)
			} else {
				s += fmt.Sprintf(" (`%s` without %s)", other.Key(), without)
			}
		}
		out = append(out, s)
	}
	for _, m := range eff.Maps[rollname.KeyTEToLocal] {
		if m.From == name || m.To == name {
			out = append(out, "class `te_to_local`")
			break
		}
	}
	return out
}

// stringHover documents string literals outside ops: imports, ignored
// names and parallel entries.
func (s *Server) stringHover(d *document, chain []ast.Node, str *ast.String, parent ast.Node) string {
	switch p := parent.(type) {
	case *ast.Import:
		f := importedFile(d, p)
		if f == nil {
			return ""
		}
		where := displayName(d, f.Path)
		if f.Lib {
			where += " (standard library)"
		}
		var decls []string
		kinds := make([]string, 0, len(f.Symbols))
		for k := range f.Symbols {
			kinds = append(kinds, string(k))
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			decls = append(decls, plural(len(f.Symbols[resolve.Kind(k)]), k+" block"))
		}
		text := fmt.Sprintf("**import** `%s` → `%s`", str.Value, where)
		if len(decls) > 0 {
			text += "\n\nDeclares " + strings.Join(decls, ", ") + "."
		}
		return text
	case *ast.ScaleRule:
		if p.Weight == nil || p.Scale == nil {
			return ""
		}
		if str == p.Weight {
			return fmt.Sprintf("**HF weight name pattern** `%s` (whole name, one `{}`)\n\nAn F8_E4M3 weight it matches is paired with the scale grid `%s` names for the same `{}`; the FP8 pre-pass dequantizes it before any op runs.", p.Weight.Value, p.Scale.Value)
		}
		return fmt.Sprintf("**HF scale name pattern** `%s` (whole name, one `{}`)\n\nThe block scale grid of the weight `%s` names for the same `{}`; consumed by the FP8 pre-pass, never by an op.", p.Scale.Value, p.Weight.Value)
	case *ast.Ignore:
		return fmt.Sprintf("**HF weight name** `%s` %s\n\nIgnored on purpose (ROLL's hf_invalid_keys): skipped without a warning.", str.Value, nameScope(str.Value))
	case *ast.ParallelEntry:
		cls, _ := enclosing[*ast.ParallelClass](chain)
		if cls == nil || cls.Kind == nil {
			return ""
		}
		var b strings.Builder
		role := "MCA name pattern"
		if p.To != nil {
			role = "MCA name"
		}
		fmt.Fprintf(&b, "**%s** `%s` in parallel class `%s`", role, str.Value, cls.Kind.Name)
		if doc, ok := vocab.ParallelClassDoc[cls.Kind.Name]; ok {
			b.WriteString(": " + doc + ".")
		}
		if d.res != nil && d.res.Program != nil {
			// ROLL's name_match; tensor-parallel classes see ".bias" as
			// ".weight", the pipeline-stage ones the name as is.
			matches := func(n string) bool {
				if cls.Kind.Name != rollname.KeyPreProcess && cls.Kind.Name != rollname.KeyPostProcess {
					n = rollname.PureName(n)
				}
				return rollname.NameMatch(n, []string{str.Value})
			}
			var producers []string
			for _, t := range d.res.Program.Templates {
				for _, o := range t.Ops {
					for _, flags := range []map[string]bool{{}, {"megatron_llama": true}} {
						_, mca := o.Resolved(flags)
						if slices.ContainsFunc(mca, matches) {
							producers = append(producers, fmt.Sprintf("`%s` in template `%s` (%s)", o.Kind, t.Name, where(d, o.Span)))
							break
						}
					}
				}
			}
			producers = slices.Compact(producers)
			if len(producers) > 0 {
				b.WriteString("\n\nProduced by " + strings.Join(producers, "; ") + ".")
			}
		}
		return b.String()
	}
	return ""
}

// valueText writes a constant as the language writes it.
func valueText(v ir.Value) string {
	switch v.Kind {
	case ir.Null:
		return "null"
	case ir.Bool:
		if v.Bool {
			return "true"
		}
		return "false"
	case ir.String:
		return strconv.Quote(v.Text)
	case ir.List:
		parts := make([]string, len(v.Elems))
		for i, e := range v.Elems {
			parts[i] = valueText(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return v.Text
}
