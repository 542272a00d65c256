package compiler

import (
	"io/fs"

	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
)

// SchemaLibrary is a loaded schema library (the stdlib's config schemas):
// parsed, resolved and built once, then shared read-only by every
// compilation given it as Options.SchemaLib, so that the language server,
// which compiles on each edit, does not rebuild it.
type SchemaLibrary struct {
	prelude *resolve.Prelude
	built   map[*ast.SchemaBlock]*schema.Schema
	byName  map[string]*schema.Schema
	diags   diag.List // the builder's; the prelude's own are reported by resolve
}

// LoadSchemaLibrary loads every .rolltpl file at the root of lib
// (stdlib.Schemas()) as the schema library every file sees.
func LoadSchemaLibrary(lib fs.FS) *SchemaLibrary {
	p := resolve.LoadPrelude(lib)
	info, _ := (&resolve.Loader{Prelude: p}).Load(nil)
	b := schema.NewBuilder(scopeOf(info), nil)
	out := &SchemaLibrary{prelude: p, byName: map[string]*schema.Schema{}}
	if len(p.Files) > 0 {
		f := p.Files[0] // every prelude file sees the whole prelude
		for _, n := range info.Visible(f, resolve.KindSchema) {
			if d := declOf(info.Lookup(f, resolve.KindSchema, n)); d != nil {
				out.byName[n] = b.Build(d)
			}
		}
	}
	out.built, out.diags = b.Built(), b.Diags()
	return out
}

// Diags returns the problems of the library's files.
func (l *SchemaLibrary) Diags() diag.List {
	return append(append(diag.List{}, l.prelude.Diags()...), l.diags...)
}

// Schemas returns the library's schemas: what a file without schema
// declarations of its own sees.
func (l *SchemaLibrary) Schemas() *schema.Set {
	out := &schema.Set{Schemas: make(map[string]*schema.Schema, len(l.byName))}
	for n, s := range l.byName {
		out.Schemas[n] = s
	}
	return out
}

// LoadSchemas loads the schemas of a schema library alone, as a set: what
// a template file without schema declarations of its own sees.
func LoadSchemas(lib fs.FS) (*schema.Set, diag.List) {
	l := LoadSchemaLibrary(lib)
	return l.Schemas(), l.Diags()
}

// declOf returns the schema declaration of a symbol, nil for another kind.
func declOf(sym *resolve.Symbol) *schema.Decl {
	if sym == nil {
		return nil
	}
	blk, _ := sym.Decl.(*ast.SchemaBlock)
	if blk == nil {
		return nil
	}
	return &schema.Decl{Block: blk, File: sym.File.AST, Src: sym.File.Src}
}

// scopeOf resolves the names written in a schema as resolve bound them
// (Info.Uses), else by looking them up from the schema's file: the
// templates' scoping.
func scopeOf(info *resolve.Info) schema.Scope {
	byAST := map[*ast.File]*resolve.File{}
	for _, f := range info.Files {
		byAST[f.AST] = f
	}
	return func(in *schema.Decl, id *ast.Ident) *schema.Decl {
		if sym := info.Uses[id]; sym != nil {
			return declOf(sym)
		}
		if f := byAST[in.File]; f != nil {
			return declOf(info.Lookup(f, resolve.KindSchema, id.Name))
		}
		return nil
	}
}

// schemaSets builds the config schemas of a compilation with the one
// schema builder (schema.Builder) and the templates' scoping (resolve): the
// returned set holds the library's schemas plus fallback's for names
// neither the library nor any file declares, and for each file that
// declares or imports schemas the view For(path) gives: the schemas of the
// file, of the files it imports and of the library, a nearer declaration
// hiding a farther one of the same name, then fallback's. A schema's `use`
// and field types are resolved from the file it is written in. It returns
// nil when there are no schemas at all.
func schemaSets(info *resolve.Info, fallback *schema.Set, lib *SchemaLibrary) (*schema.Set, diag.List) {
	prelude := map[*resolve.File]bool{}
	for _, f := range info.Prelude {
		prelude[f] = true
	}
	var own []*resolve.File // files that see schemas beside the library's
	for _, f := range info.Files {
		if prelude[f] {
			continue
		}
		sees := len(f.Symbols[resolve.KindSchema]) > 0
		for _, imp := range f.Imports {
			sees = sees || len(imp.Symbols[resolve.KindSchema]) > 0
		}
		if sees {
			own = append(own, f)
		}
	}
	if fallback == nil && lib == nil && len(own) == 0 {
		return nil, nil
	}
	top := &schema.Set{Schemas: map[string]*schema.Schema{}}
	if fallback != nil {
		for n, s := range fallback.Schemas {
			top.Schemas[n] = s
		}
	}
	var known map[*ast.SchemaBlock]*schema.Schema
	var diags diag.List
	if lib != nil {
		for n, s := range lib.byName {
			top.Schemas[n] = s
		}
		known, diags = lib.built, lib.diags
	}
	if len(own) == 0 {
		return top, diags
	}
	b := schema.NewBuilder(scopeOf(info), known)
	for _, f := range own {
		view := &schema.Set{Schemas: make(map[string]*schema.Schema, len(top.Schemas))}
		for n, s := range top.Schemas {
			view.Schemas[n] = s
		}
		for _, n := range info.Visible(f, resolve.KindSchema) {
			if d := declOf(info.Lookup(f, resolve.KindSchema, n)); d != nil {
				view.Schemas[n] = b.Build(d)
			}
		}
		top.SetFor(f.Path, view)
	}
	return top, append(diags, b.Diags()...)
}
