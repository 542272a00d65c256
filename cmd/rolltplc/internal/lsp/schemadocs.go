package lsp

import (
	"fmt"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/check"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/compiler/schema"
)

// schemasOf returns the config schemas document d sees, as its last
// compilation scoped them (the stdlib's, d's own and its imports'); nil
// before d is compiled or when there are none.
func (s *Server) schemasOf(d *document) *schema.Set {
	if d == nil || d.res == nil {
		return nil
	}
	return d.res.Schemas.For(d.path)
}

// keyDoc documents a config key for hover and completion: through
// Options.KeyDocs when set, else from the schemas d sees.
func (s *Server) keyDoc(d *document, modelType, side, key string) (string, bool) {
	if s.opts.KeyDocs != nil {
		return s.opts.KeyDocs(modelType, side, key)
	}
	return SchemaKeyDoc(s.schemasOf(d), modelType, side, key)
}

// SchemaKeyDoc documents a config key from set: type, default and the
// field's doc comment, as markdown. HF keys are looked up in the schema of
// the template's model type (dotted paths descend into nested configs),
// MCA keys in the MCA schema. ok is false for a key set does not declare.
func SchemaKeyDoc(set *schema.Set, modelType, side, key string) (doc string, ok bool) {
	var f *schema.Field
	switch side {
	case "mca":
		f = set.Schema(check.MCASchema).Field(key)
	case "hf":
		if root := set.Schema(modelType); root != nil {
			f, _, _ = set.Resolve(root, strings.Split(key, "."))
		}
	}
	if f == nil {
		return "", false
	}
	doc = fmt.Sprintf("`%s: %s`", f.Name, f.Type)
	if f.Default != "" {
		doc = fmt.Sprintf("`%s: %s = %s`", f.Name, f.Type, f.Default)
	}
	if f.Doc != "" {
		doc += "\n\n" + f.Doc
	}
	return doc, true
}

// schemaTypeItems lists what a schema field's type can name: the basic
// types and the schemas d sees (a nested config), except self.
func (s *Server) schemaTypeItems(d *document, self string) []CompletionItem {
	var items []CompletionItem
	for _, k := range sortedKeys(schema.BasicTypes) {
		items = append(items, CompletionItem{Label: k, Kind: CompletionKeyword, Detail: "type"})
	}
	for _, it := range s.blockNames(d, resolve.KindSchema, self) {
		it.Detail = "nested config · " + it.Detail
		items = append(items, it)
	}
	return items
}
