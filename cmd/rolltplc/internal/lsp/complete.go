package lsp

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/parser"
)

// Completion reads the text before the cursor with the parser's own lexer,
// not the syntax tree: while a line is being typed the declaration around
// it usually does not parse. The braces before the cursor say which block
// it is in (the keyword before each `{`), the token before it what may
// follow.

// ctok is one token before the cursor.
type ctok struct {
	kind string // "Ident", "String", "Op", ... (the lexer's rule names)
	val  string
	// nl is set when a line break separates the token from the next one
	// (or from the cursor).
	nl bool
}

// cframe is an open bracket before the cursor: for `{`, the declaration or
// section keyword before it and the block's name.
type cframe struct {
	open    string // "{", "(" or "["
	keyword string
	name    string
	opKind  string // for "(": the identifier before it (an op kind)
}

type ccontext struct {
	frames   []cframe
	prev     *ctok // the token before the cursor (and its word), or nil
	prev2    *ctok
	inString bool // the cursor is inside a string literal
	template string
}

// block returns the innermost `{` frame, or nil at top level.
func (c *ccontext) block() *cframe {
	for i := len(c.frames) - 1; i >= 0; i-- {
		if c.frames[i].open == "{" {
			return &c.frames[i]
		}
	}
	return nil
}

func (c *ccontext) top() *cframe {
	if len(c.frames) == 0 {
		return nil
	}
	return &c.frames[len(c.frames)-1]
}

func (c *ccontext) prevIs(vals ...string) bool {
	return c.prev != nil && slices.Contains(vals, c.prev.val)
}

// continuation tokens expect more of the same item after them.
var continuation = map[string]bool{
	",": true, "->": true, "=": true, "(": true, "[": true, ".": true, "+": true, "-": true, "*": true,
	"/": true, "//": true, "%": true, "==": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true,
	"&&": true, "||": true, "!": true, ":": true, "|": true,
	"if": true, "else": true, "when": true, "unless": true, "use": true, "extends": true, "import": true,
	"set": true, "prefix": true, "ignore": true, "drop": true,
}

// itemStart reports whether the cursor is where a new item of the block
// begins.
func (c *ccontext) itemStart() bool {
	if t := c.top(); t != nil && t.open != "{" {
		return false
	}
	switch {
	case c.prev == nil, c.prevIs("{", "}"):
		return true
	case c.prev2 != nil && c.prev2.val == "use" && c.prev.kind == "Ident":
		return true // `parallel { use a  use b }`
	case c.prev.nl && !continuation[c.prev.val]:
		return true
	}
	return false
}

// completionContext lexes src up to off.
func completionContext(src []byte, off int) (ccontext, bool) {
	var c ccontext
	lx, err := parser.Lexer.LexString("", string(src[:off]))
	if err != nil {
		return c, false
	}
	syms := parser.Lexer.Symbols()
	names := map[any]string{}
	for n, t := range syms {
		names[t] = n
	}
	var toks []ctok
	var last struct {
		kind string
		end  int
	}
	for {
		t, err := lx.Next()
		if err != nil || t.EOF() {
			break
		}
		kind := names[t.Type]
		last.kind, last.end = kind, t.Pos.Offset+len(t.Value)
		switch kind {
		case "Whitespace":
			if strings.Contains(t.Value, "\n") && len(toks) > 0 {
				toks[len(toks)-1].nl = true
			}
			continue
		case "Comment":
			continue
		}
		toks = append(toks, ctok{kind: kind, val: t.Value})
	}
	if last.end == off {
		switch last.kind {
		case "Comment":
			return c, false
		case "Ident":
			toks = toks[:len(toks)-1] // the word being typed
		case "BadString":
			toks = toks[:len(toks)-1]
			c.inString = true
		}
	}
	for i, t := range toks {
		switch t.val {
		case "{":
			c.frames = append(c.frames, header(toks, i))
		case "(", "[":
			f := cframe{open: t.val}
			if i > 0 && toks[i-1].kind == "Ident" {
				f.opKind = toks[i-1].val
			}
			c.frames = append(c.frames, f)
		case "}", ")", "]":
			if len(c.frames) > 0 {
				c.frames = c.frames[:len(c.frames)-1]
			}
		}
	}
	if n := len(toks); n > 0 {
		c.prev = &toks[n-1]
		if n > 1 {
			c.prev2 = &toks[n-2]
		}
	}
	for _, f := range c.frames {
		if f.keyword == "template" {
			c.template = f.name
		}
	}
	return c, true
}

// header reads the keyword and name before the `{` at toks[i]:
// `KW {`, `KW NAME {` or `template NAME extends BASE {`.
func header(toks []ctok, i int) cframe {
	f := cframe{open: "{"}
	at := func(j int) string {
		if j >= 0 {
			return toks[j].val
		}
		return ""
	}
	isKW := func(s string) bool { return parser.DeclKeywords[s] && s != "import" }
	switch {
	case isKW(at(i - 1)):
		f.keyword = at(i - 1)
	case isKW(at(i-2)) && toks[i-1].kind == "Ident":
		f.keyword, f.name = at(i-2), at(i-1)
	case at(i-4) == "template" && at(i-2) == "extends":
		f.keyword, f.name = "template", at(i-3)
	}
	return f
}

var sectionDocs = map[string]string{
	"config":   "HF → MCA config key maps (`hf_key -> mca_key`), `use`, `prefix` rules",
	"mca":      "constant MCA config values (`key = value`)",
	"weights":  "weight ops in registration order (first match wins)",
	"parallel": "the parallel classification of MCA weight names",
	"quant":    "FP8 scale naming rules (`scale \"{}.weight\" -> \"{}.weight_scale_inv\"`, `use`); default: the stdlib's fp8_block",
}

func (s *Server) completion(raw json.RawMessage) (any, error) {
	d, off, err := s.positionDoc(raw)
	if err != nil {
		return nil, err
	}
	list := CompletionList{Items: []CompletionItem{}}
	c, ok := completionContext(d.text, off)
	if !ok {
		return list, nil
	}
	list.Items = append(list.Items, s.completions(d, &c)...)
	return list, nil
}

func (s *Server) completions(d *document, c *ccontext) []CompletionItem {
	blk := c.block()
	kw := ""
	if blk != nil {
		kw = blk.keyword
	}
	switch {
	case c.prevIs("use"):
		if blk == nil || kw == "" || kw == "template" {
			return nil
		}
		return s.blockNames(d, resolve.Kind(kw), blk.name)
	case c.prevIs("extends"):
		self := ""
		if c.prev2 != nil {
			self = c.prev2.val
		}
		return s.blockNames(d, resolve.KindTemplate, self)
	case c.prevIs("import"):
		return s.importNames(d, c.inString)
	case c.inString:
		return nil
	}
	if t := c.top(); t != nil && t.open == "(" && kw == "weights" && c.prevIs("(", ",") {
		if spec := vocab.Op(t.opKind); spec != nil {
			var items []CompletionItem
			for _, ps := range spec.Params {
				items = append(items, CompletionItem{Label: ps.Name, Kind: CompletionProperty, Detail: typeWords(ps.Type) + ", " + requiredWord(ps.Required),
					Documentation: markdown(ps.Doc + "."), InsertText: ps.Name + " = "})
			}
			return items
		}
	}
	if kw == "weights" && c.prevIs("if", "when", "&&", "||", "!") {
		return buildFlagItems()
	}
	if kw == "config" && c.prevIs("->") {
		return s.keyItems(d, c.template, "mca")
	}
	if kw == "schema" && c.prevIs(":", "|", "[") {
		return s.schemaTypeItems(d, blk.name)
	}
	if !c.itemStart() {
		return nil
	}
	switch kw {
	case "":
		var items []CompletionItem
		for _, k := range sortedKeys(parser.DeclKeywords) {
			items = append(items, CompletionItem{Label: k, Kind: CompletionKeyword, Detail: "declaration"})
		}
		return items
	case "template":
		var items []CompletionItem
		for _, k := range []string{"config", "mca", "weights", "parallel", "quant"} {
			items = append(items, CompletionItem{Label: k, Kind: CompletionKeyword, Detail: "section", Documentation: markdown(sectionDocs[k] + ".")})
		}
		for _, k := range sortedKeys(vocab.TemplateFields) {
			items = append(items, CompletionItem{Label: k, Kind: CompletionField, Detail: "template field (" + vocab.TemplateFieldType(k) + ")",
				Documentation: markdown(vocab.TemplateFields[k] + "."), InsertText: k + " = "})
		}
		return items
	case "weights":
		var items []CompletionItem
		for _, o := range vocab.Ops {
			items = append(items, CompletionItem{Label: o.Kind, Kind: CompletionFunction, Detail: opSignature(o), Documentation: markdown(opHover(o))})
		}
		return append(items, keywordItems("use", "ignore")...)
	case "parallel":
		var items []CompletionItem
		for _, k := range append(slices.Clone(ir.ParallelClasses), ir.ParallelMaps...) {
			items = append(items, CompletionItem{Label: k, Kind: CompletionEnumMem, Detail: "parallel class", Documentation: markdown(parallelClassHover(k))})
		}
		return append(items, keywordItems("use")...)
	case "mca":
		return append(s.keyItems(d, c.template, "mca"), keywordItems("use")...)
	case "quant":
		return keywordItems("use", "scale")
	case "config":
		return append(s.keyItems(d, c.template, "hf"), keywordItems("use", "prefix", "set")...)
	}
	return keywordItems("use")
}

func markdown(s string) *MarkupContent { return &MarkupContent{Kind: "markdown", Value: s} }

func keywordItems(kws ...string) []CompletionItem {
	var out []CompletionItem
	for _, k := range kws {
		out = append(out, CompletionItem{Label: k, Kind: CompletionKeyword, Detail: "keyword"})
	}
	return out
}

func buildFlagItems() []CompletionItem {
	var out []CompletionItem
	for _, k := range sortedKeys(vocab.BuildFlags) {
		out = append(out, CompletionItem{Label: k, Kind: CompletionConstant, Detail: "build flag", Documentation: markdown(vocab.BuildFlags[k] + ".")})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// blockNames lists the declarations of kind k visible from d, except self.
func (s *Server) blockNames(d *document, k resolve.Kind, self string) []CompletionItem {
	if d.file == nil || d.res.Info == nil {
		return nil
	}
	var items []CompletionItem
	for _, name := range d.res.Info.Visible(d.file, k) {
		if name == self {
			continue
		}
		sym := d.res.Info.Lookup(d.file, k, name)
		kind := CompletionModule
		if k == resolve.KindTemplate {
			kind = CompletionClass
		}
		item := CompletionItem{Label: name, Kind: kind, Detail: string(k)}
		if sym != nil {
			item.Detail = string(k) + " · " + displayName(d, sym.File.Path)
			item.Documentation = markdown(symbolHover(d, sym))
		}
		items = append(items, item)
	}
	return items
}

// importNames lists the library's files and the .rolltpl files beside d.
func (s *Server) importNames(d *document, inString bool) []CompletionItem {
	seen := map[string]string{}
	if s.opts.Lib != nil {
		if es, err := fs.ReadDir(s.opts.Lib, "."); err == nil {
			for _, e := range es {
				if n, ok := strings.CutSuffix(e.Name(), ".rolltpl"); ok && !e.IsDir() {
					seen[n] = "standard library"
				}
			}
		}
	}
	if filepath.IsAbs(d.path) {
		if es, err := os.ReadDir(filepath.Dir(d.path)); err == nil {
			for _, e := range es {
				if n, ok := strings.CutSuffix(e.Name(), ".rolltpl"); ok && !e.IsDir() && e.Name() != filepath.Base(d.path) {
					seen[n] = "beside this file"
				}
			}
		}
	}
	delete(seen, strings.TrimSuffix(filepath.Base(d.path), ".rolltpl"))
	var items []CompletionItem
	for _, n := range sortedKeys(seen) {
		it := CompletionItem{Label: n, Kind: CompletionFile, Detail: seen[n]}
		if !inString {
			it.InsertText = `"` + n + `"`
		}
		items = append(items, it)
	}
	return items
}

// stdlibKeys are the HF and MCA config keys the standard library mentions:
// the completion list until a config schema lists them all.
type stdlibKeys struct {
	hf, mca map[string]bool
}

func (s *Server) libKeys() stdlibKeys {
	s.keysOnce.Do(func() {
		s.keys = stdlibKeys{hf: map[string]bool{}, mca: map[string]bool{}}
		if s.opts.Lib == nil {
			return
		}
		paths, err := compiler.LibPaths(s.opts.Lib)
		if err != nil {
			s.log.Printf("listing the library: %v", err)
			return
		}
		res := compiler.Compile(paths, compiler.Options{Lib: s.opts.Lib})
		if res.Info != nil {
			for _, f := range res.Info.Files {
				collectKeys(f.AST, s.keys.hf, s.keys.mca)
			}
		}
		for _, o := range vocab.Ops {
			for _, k := range o.Reads {
				s.keys.mca[k] = true
			}
		}
	})
	return s.keys
}

// collectKeys adds the HF and MCA keys written in a file.
func collectKeys(f *ast.File, hf, mca map[string]bool) {
	if f == nil {
		return
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.ConfigMap:
			if x.HF != nil {
				hf[pathText(x.HF)] = true
			}
			if x.MCA != nil {
				mca[x.MCA.Name] = true
			}
		case *ast.McaItem:
			if x.Const != nil && x.Const.Key != nil {
				mca[x.Const.Key.Name] = true
			}
		}
		return true
	})
}

// keyItems lists config keys of one side: the stdlib's and d's own.
func (s *Server) keyItems(d *document, modelType, side string) []CompletionItem {
	lib := s.libKeys()
	keys := map[string]bool{}
	src := lib.hf
	if side == "mca" {
		src = lib.mca
	}
	for k := range src {
		keys[k] = true
	}
	// Every key the schema of the template's model type (or the MCA schema)
	// declares, as the document sees them (the user's own schemas too).
	if set := s.schemasOf(d); set != nil {
		name := modelType
		if side == "mca" {
			name = "mca"
		}
		if sc := set.Schema(name); sc != nil {
			for _, f := range sc.Order {
				keys[f] = true
			}
		}
	}
	if d.res != nil && d.res.Info != nil {
		hf, mca := map[string]bool{}, map[string]bool{}
		for _, f := range d.res.Info.Files {
			if !f.Lib {
				collectKeys(f.AST, hf, mca)
			}
		}
		own := hf
		if side == "mca" {
			own = mca
		}
		for k := range own {
			keys[k] = true
		}
	}
	detail := "HF config key"
	if side == "mca" {
		detail = "MCA config key"
	}
	var items []CompletionItem
	for _, k := range sortedKeys(keys) {
		it := CompletionItem{Label: k, Kind: CompletionProperty, Detail: detail}
		if doc, ok := s.keyDoc(d, modelType, side, k); ok && doc != "" {
			it.Documentation = markdown(doc)
		}
		items = append(items, it)
	}
	return items
}
