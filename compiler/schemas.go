package compiler

import (
	"io/fs"

	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
)

// schemaSets builds the config schemas of a compilation with the one
// schema builder (schema.Builder) and the templates' scoping (resolve): the
// returned set holds the schema library's schemas (the prelude) plus
// fallback's for names no file declares, and for each loaded file the view
// For(path) gives: the schemas of the file, of the files it imports and of
// the prelude, a nearer declaration hiding a farther one of the same name,
// then fallback's. A schema's `use` and field types are resolved from the
// file it is written in. It returns nil when there are no schemas at all.
func schemaSets(info *resolve.Info, fallback *schema.Set) (*schema.Set, diag.List) {
	anySchema := fallback != nil
	byAST := map[*ast.File]*resolve.File{}
	for _, f := range info.Files {
		byAST[f.AST] = f
		if len(f.Symbols[resolve.KindSchema]) > 0 {
			anySchema = true
		}
	}
	if !anySchema {
		return nil, nil
	}
	decls := map[*ast.SchemaBlock]*schema.Decl{}
	declOf := func(sym *resolve.Symbol) *schema.Decl {
		blk, _ := sym.Decl.(*ast.SchemaBlock)
		if blk == nil {
			return nil
		}
		if d := decls[blk]; d != nil {
			return d
		}
		d := &schema.Decl{Block: blk, File: sym.File.AST, Src: sym.File.Src}
		decls[blk] = d
		return d
	}
	b := schema.NewBuilder(func(in *schema.Decl, id *ast.Ident) *schema.Decl {
		if sym := info.Uses[id]; sym != nil {
			return declOf(sym)
		}
		if f := byAST[in.File]; f != nil {
			if sym := info.Lookup(f, resolve.KindSchema, id.Name); sym != nil {
				return declOf(sym)
			}
		}
		return nil
	})
	view := func(f *resolve.File) *schema.Set {
		out := &schema.Set{Schemas: map[string]*schema.Schema{}}
		if fallback != nil {
			for n, s := range fallback.Schemas {
				out.Schemas[n] = s
			}
		}
		for _, n := range info.Visible(f, resolve.KindSchema) {
			if d := declOf(info.Lookup(f, resolve.KindSchema, n)); d != nil {
				out.Schemas[n] = b.Build(d)
			}
		}
		return out
	}
	var top *schema.Set
	if len(info.Prelude) > 0 {
		top = view(info.Prelude[0])
	} else {
		top = view(&resolve.File{})
	}
	prelude := map[*resolve.File]bool{}
	for _, f := range info.Prelude {
		prelude[f] = true
	}
	for _, f := range info.Files {
		if prelude[f] {
			continue // sees what the top set holds
		}
		own := len(f.Symbols[resolve.KindSchema]) > 0
		for _, imp := range f.Imports {
			own = own || len(imp.Symbols[resolve.KindSchema]) > 0
		}
		if own {
			top.SetFor(f.Path, view(f))
		}
	}
	return top, b.Diags()
}

// LoadSchemas loads the schemas of a schema library (stdlib.Schemas())
// alone, with the loader and scoping [Compile] uses: what a template file
// without schema declarations of its own sees.
func LoadSchemas(lib fs.FS) (*schema.Set, diag.List) {
	res := Compile(nil, Options{SchemaLib: lib})
	if res.Schemas == nil {
		res.Schemas = &schema.Set{Schemas: map[string]*schema.Schema{}}
	}
	return res.Schemas, res.Diags
}
