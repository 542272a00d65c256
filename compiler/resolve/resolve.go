// Package resolve loads .rolltpl files with their imports and binds every
// name to its declaration.
//
// # Passes
//
// Loading starts from the files the user names. Each file is parsed; each
// `import "x"` is looked up as x.rolltpl beside the importing file, then in
// the library (the stdlib's templates). Imports are not transitive: a file
// sees its own declarations and those of the files it imports directly, as
// in Go.
//
// Declarations live in one namespace per kind (template, config, mca,
// weights, parallel, quant, schema), so `config llm` and `weights llm` do not
// clash. Two declarations of the same kind and name visible from one file
// are an error.
//
// Config schemas follow the same rules, with one addition: the schema
// library (the stdlib's config schemas, [Loader.Prelude]) is visible from
// every file without an import, below the file's own and imported schemas.
// A user's `schema llama` thus replaces the stdlib's for the files that see
// it, and a user schema may `use` a stdlib fragment.
//
// Binding walks every `use NAME` and `extends NAME` and records the
// declaration it names in [Info.Uses]; declarations are recorded in
// [Info.Defs]. These side tables are what hover and go-to-definition read.
package resolve

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/parser"
	"github.com/rolltpl/rolltpl/lang/token"
)

// Kind is a declaration kind.
type Kind string

// The declaration kinds.
const (
	KindTemplate Kind = "template"
	KindConfig   Kind = "config"
	KindMca      Kind = "mca"
	KindWeights  Kind = "weights"
	KindParallel Kind = "parallel"
	KindQuant    Kind = "quant"
	KindSchema   Kind = "schema"
)

// Symbol is a named declaration.
type Symbol struct {
	Kind  Kind
	Name  string
	Ident *ast.Ident
	Decl  ast.Node
	File  *File
}

// File is one loaded source file.
type File struct {
	// Path is the name used in positions: the path the user gave, or
	// "stdlib/templates/NAME.rolltpl" for library files.
	Path string
	Src  []byte
	AST  *ast.File
	// Lib is true for files loaded from the library.
	Lib bool
	// Imports are the files this file imports, in order.
	Imports []*File
	// Symbols are the declarations of this file by kind and name.
	Symbols map[Kind]map[string]*Symbol

	// failed are the imports of this file that could not be loaded.
	failed []failedImport
}

// failedImport is an import that could not be loaded. Its names are the
// declarations of the module it most likely meant (the did-you-mean
// suggestion), by kind; nil when there is none: then any name could have
// come from it.
type failedImport struct {
	names map[Kind]map[string]bool
}

// Info is the result of resolution.
type Info struct {
	// Files are every loaded file, roots first, in load order.
	Files []*File
	// Roots are the files the user named.
	Roots []*File
	// Prelude are the files of the schema library, whose schemas every
	// file sees (see [Loader.Prelude]); they are also in Files.
	Prelude []*File
	Defs    map[*ast.Ident]*Symbol
	Uses    map[*ast.Ident]*Symbol
	// DefaultQuant is the quant section a template that names none gets:
	// vocab.DefaultQuant of the library module vocab.DefaultQuantModule
	// (the stdlib's `quant fp8_block`, the naming rule X.weight <->
	// X.weight_scale_inv). Nil without a library or when it declares none.
	DefaultQuant *Symbol
	// Incomplete is set when a `use` or `extends` names nothing (an
	// unknown-reference, or a name left to an import that failed): a
	// template may then lack blocks, and what it lacks is that error.
	Incomplete bool
}

// File returns the loaded file with the given path, or nil.
func (in *Info) File(p string) *File {
	for _, f := range in.Files {
		if f.Path == p {
			return f
		}
	}
	return nil
}

// Lookup finds a declaration of kind k named name visible from f.
func (in *Info) Lookup(f *File, k Kind, name string) *Symbol {
	if s := f.Symbols[k][name]; s != nil {
		return s
	}
	for _, imp := range f.Imports {
		if s := imp.Symbols[k][name]; s != nil {
			return s
		}
	}
	if k == KindSchema {
		for _, p := range in.Prelude {
			if s := p.Symbols[k][name]; s != nil {
				return s
			}
		}
	}
	return nil
}

// Visible returns the names of kind k visible from f, sorted.
func (in *Info) Visible(f *File, k Kind) []string {
	seen := map[string]bool{}
	for n := range f.Symbols[k] {
		seen[n] = true
	}
	for _, imp := range f.Imports {
		for n := range imp.Symbols[k] {
			seen[n] = true
		}
	}
	if k == KindSchema {
		for _, p := range in.Prelude {
			for n := range p.Symbols[k] {
				seen[n] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// LibPrefix is the path prefix given to library files in positions.
const LibPrefix = "stdlib/templates/"

// SchemaLibPrefix is the path prefix given to schema library files in
// positions.
const SchemaLibPrefix = "stdlib/schema/"

// Loader reads source files.
type Loader struct {
	// ReadFile reads a user file by path; nil means user files cannot be read.
	ReadFile func(path string) ([]byte, error)
	// Lib is the library: a file system whose root holds NAME.rolltpl files.
	Lib fs.FS
	// Prelude, when set, is the schema library (the stdlib's config
	// schemas, loaded once by [LoadPrelude]): the schemas its files declare
	// are visible from every file.
	Prelude *Prelude
	// Overlay, when set, supplies file contents by path before ReadFile is
	// asked (the language server passes unsaved editor buffers here).
	Overlay map[string][]byte
	// Parse parses one file; nil means parser.ParseFile. The language server
	// passes a parser.Cache's ParseFile so unchanged declarations are reused.
	Parse func(name string, src []byte) (*ast.File, diag.List)
	// ListDir lists the file names in a folder of user files, for the
	// did-you-mean of an unknown import; nil suggests library modules only.
	ListDir func(dir string) ([]string, error)
}

type loadState struct {
	ld    *Loader
	info  *Info
	diags diag.List
	byKey map[string]*File
	// modNames caches the declarations of modules read for hints
	// (suggest.go), by path.
	modNames map[string]map[Kind]map[string]bool
}

// Load parses the given files and everything they import, then binds names.
// Paths starting with LibPrefix are read from the library. It always returns
// an Info; problems are diagnostics.
func (ld *Loader) Load(paths []string) (*Info, diag.List) {
	st := &loadState{ld: ld, info: &Info{Defs: map[*ast.Ident]*Symbol{}, Uses: map[*ast.Ident]*Symbol{}}, byKey: map[string]*File{}}
	for _, p := range paths {
		lib := strings.HasPrefix(p, LibPrefix)
		name := p
		if lib {
			name = strings.TrimPrefix(p, LibPrefix)
		}
		f, err := st.load(name, lib)
		if err != nil {
			st.diags.Add(&diag.Diagnostic{Severity: diag.Error, Code: diag.ReadError, Summary: "Cannot read file",
				Detail: err.Error(), Subject: token.Span{Start: token.Pos{Filename: p, Line: 1, Column: 1}, End: token.Pos{Filename: p, Line: 1, Column: 1}}})
			continue
		}
		st.info.Roots = append(st.info.Roots, f)
	}
	own := st.info.Files
	if p := ld.Prelude; p != nil {
		st.info.Prelude = p.Files
		st.info.Files = append(st.info.Files, p.Files...)
		for id, sym := range p.defs {
			st.info.Defs[id] = sym
		}
		for id, sym := range p.uses {
			st.info.Uses[id] = sym
		}
		st.diags.Extend(p.diags)
	}
	for _, f := range own {
		st.checkDuplicates(f)
	}
	st.info.DefaultQuant = st.defaultQuant()
	for _, f := range own {
		st.bind(f)
	}
	return st.info, st.diags
}

// defaultQuant finds the library's default quant section: in its module
// when a file of this load imported it, else in the module parsed on its
// own (not added to Files: nothing of it is compiled but that block,
// whose rules the library keeps correct).
func (st *loadState) defaultQuant() *Symbol {
	if st.ld.Lib == nil {
		return nil
	}
	name := vocab.DefaultQuantModule + ".rolltpl"
	f := st.byKey[fmt.Sprintf("%v:%s", true, name)]
	if f == nil {
		src, err := fs.ReadFile(st.ld.Lib, name)
		if err != nil {
			return nil
		}
		parse := st.ld.Parse
		if parse == nil {
			parse = parser.ParseFile
		}
		astf, _ := parse(LibPrefix+name, src)
		f = &File{Path: LibPrefix + name, Src: src, AST: astf, Lib: true, Symbols: map[Kind]map[string]*Symbol{}}
		st.collect(f)
		for _, d := range astf.Decls {
			if d.Quant != nil {
				st.bindQuant(f, d.Quant)
			}
		}
	}
	return f.Symbols[KindQuant][vocab.DefaultQuant]
}

// bindQuant binds the uses of a quant block of a file loaded on its own.
func (st *loadState) bindQuant(f *File, b *ast.QuantBlock) {
	for _, it := range b.Items {
		if it.Use != nil {
			if s := f.Symbols[KindQuant][it.Use.Name.Name]; s != nil {
				st.info.Uses[it.Use.Name] = s
			}
		}
	}
}

// Prelude is a loaded schema library: its files parsed, their
// declarations collected and their names bound, once, then shared
// read-only by every [Loader.Load] given it (the language server compiles
// on each edit).
type Prelude struct {
	// Files are the library's files, in name order.
	Files      []*File
	defs, uses map[*ast.Ident]*Symbol
	diags      diag.List
}

// LoadPrelude loads every .rolltpl file at the root of lib as a schema
// library, the positions of its files named SchemaLibPrefix + NAME. Its
// problems are reported again by every load that uses it.
func LoadPrelude(lib fs.FS) *Prelude {
	st := &loadState{ld: &Loader{}, info: &Info{Defs: map[*ast.Ident]*Symbol{}, Uses: map[*ast.Ident]*Symbol{}}, byKey: map[string]*File{}}
	st.loadSchemaLib(lib)
	for _, f := range st.info.Prelude {
		st.bind(f)
	}
	return &Prelude{Files: st.info.Prelude, defs: st.info.Defs, uses: st.info.Uses, diags: st.diags}
}

// Diags returns the problems of the library's files.
func (p *Prelude) Diags() diag.List { return p.diags }

func (st *loadState) read(name string, lib bool) ([]byte, string, error) {
	if lib {
		if st.ld.Lib == nil {
			return nil, "", fmt.Errorf("no library to read %s from", name)
		}
		b, err := fs.ReadFile(st.ld.Lib, name)
		return b, LibPrefix + name, err
	}
	if b, ok := st.ld.Overlay[name]; ok {
		return b, name, nil
	}
	if st.ld.ReadFile == nil {
		return nil, "", fmt.Errorf("cannot read %s", name)
	}
	b, err := st.ld.ReadFile(name)
	return b, name, err
}

func (st *loadState) load(name string, lib bool) (*File, error) {
	key := fmt.Sprintf("%v:%s", lib, name)
	if f, ok := st.byKey[key]; ok {
		return f, nil
	}
	src, display, err := st.read(name, lib)
	if err != nil {
		return nil, err
	}
	f := st.add(key, display, src, lib)
	for _, d := range f.AST.Decls {
		if d.Import == nil {
			continue
		}
		imp := st.resolveImport(f, name, lib, d.Import)
		if imp != nil {
			f.Imports = append(f.Imports, imp)
		}
	}
	return f, nil
}

// add parses src and records the file and its declarations.
func (st *loadState) add(key, display string, src []byte, lib bool) *File {
	parse := st.ld.Parse
	if parse == nil {
		parse = parser.ParseFile
	}
	astf, diags := parse(display, src)
	st.diags.Extend(diags)
	f := &File{Path: display, Src: src, AST: astf, Lib: lib, Symbols: map[Kind]map[string]*Symbol{}}
	st.byKey[key] = f
	st.info.Files = append(st.info.Files, f)
	st.collect(f)
	return f
}

// loadSchemaLib loads every .rolltpl file of the schema library, in name
// order, as the prelude.
func (st *loadState) loadSchemaLib(lib fs.FS) {
	entries, err := fs.ReadDir(lib, ".")
	if err != nil {
		st.diags.Add(diag.Errorf(token.Span{Start: token.Pos{Filename: SchemaLibPrefix, Line: 1, Column: 1}, End: token.Pos{Filename: SchemaLibPrefix, Line: 1, Column: 1}},
			diag.ReadError, "Cannot read the schema library", "%v", err))
		return
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".rolltpl") {
			continue
		}
		src, err := fs.ReadFile(lib, e.Name())
		display := SchemaLibPrefix + e.Name()
		if err != nil {
			st.diags.Add(diag.Errorf(token.Span{Start: token.Pos{Filename: display, Line: 1, Column: 1}, End: token.Pos{Filename: display, Line: 1, Column: 1}},
				diag.ReadError, "Cannot read schema file", "%v", err))
			continue
		}
		st.info.Prelude = append(st.info.Prelude, st.add("schema:"+e.Name(), display, src, true))
	}
	// The prelude is one namespace: a name declared in two of its files is
	// a duplicate.
	for i, f := range st.info.Prelude {
		for name, s := range f.Symbols[KindSchema] {
			for _, g := range st.info.Prelude[:i] {
				if other := g.Symbols[KindSchema][name]; other != nil {
					d := diag.Errorf(s.Ident.Span(), diag.DuplicateDeclaration, "Duplicate declaration",
						"schema %q is also declared in %s.", name, g.Path)
					d.Related = []diag.Related{{Span: other.Ident.Span(), Message: "also declared here"}}
					st.diags.Add(d)
				}
			}
		}
	}
}

func (st *loadState) resolveImport(f *File, name string, lib bool, im *ast.Import) *File {
	target := im.Path.Value
	failed := func(names map[Kind]map[string]bool) *File {
		f.failed = append(f.failed, failedImport{names: names})
		return nil
	}
	if target == "" || strings.Contains(target, "\\") {
		st.diags.Add(diag.Errorf(im.Path.Span(), diag.BadImport, "Invalid import path",
			"Import paths name a file without its .rolltpl extension, like \"common\"."))
		return failed(nil)
	}
	file := target + ".rolltpl"
	if !lib {
		local := filepath.Join(filepath.Dir(name), filepath.FromSlash(file))
		if _, ok := st.ld.Overlay[local]; ok || st.exists(local) {
			g, err := st.load(local, false)
			if err == nil {
				return g
			}
			// There, but not readable (a FIFO, a directory, no permission):
			// say so rather than look elsewhere.
			st.diags.Add(diag.Errorf(im.Path.Span(), diag.BadImport, "Cannot read import",
				"The import names %s, which cannot be read: %v.", local, err))
			return failed(nil)
		}
	}
	if st.ld.Lib != nil {
		if _, err := fs.Stat(st.ld.Lib, path.Clean(file)); err == nil {
			g, err := st.load(path.Clean(file), true)
			if err == nil {
				return g
			}
		}
	}
	detail := fmt.Sprintf("No file %s beside %s nor in the standard library.", file, f.Path)
	sugg, names := st.suggestImport(name, lib, target)
	if sugg != "" {
		detail += fmt.Sprintf(" Did you mean %q?", sugg)
	}
	st.diags.Add(diag.Errorf(im.Path.Span(), diag.UnknownImport, "Unknown import", "%s", detail))
	return failed(names)
}

// exists reports whether p is there to read: a file that cannot be read
// (a FIFO, a directory) exists, so that its import reports why.
func (st *loadState) exists(p string) bool {
	if st.ld.ReadFile == nil {
		return false
	}
	_, err := st.ld.ReadFile(p)
	return !errors.Is(err, fs.ErrNotExist)
}

// declSymbol returns the kind and name ident of a declaration.
func declSymbol(d *ast.Decl) (Kind, *ast.Ident, ast.Node) {
	switch {
	case d.Template != nil:
		return KindTemplate, d.Template.Name, d.Template
	case d.Config != nil:
		return KindConfig, d.Config.Name, d.Config
	case d.Mca != nil:
		return KindMca, d.Mca.Name, d.Mca
	case d.Weights != nil:
		return KindWeights, d.Weights.Name, d.Weights
	case d.Parallel != nil:
		return KindParallel, d.Parallel.Name, d.Parallel
	case d.Quant != nil:
		return KindQuant, d.Quant.Name, d.Quant
	case d.Schema != nil:
		return KindSchema, d.Schema.Name, d.Schema
	}
	return "", nil, nil
}

func (st *loadState) collect(f *File) {
	for _, d := range f.AST.Decls {
		k, id, n := declSymbol(d)
		if k == "" {
			continue
		}
		if id == nil {
			st.diags.Add(diag.Errorf(n.Span(), diag.UnnamedBlock, "Unnamed top-level block",
				"A %s block outside a template needs a name so that templates can `use` it, e.g. `%s llm_core { ... }`.", k, k))
			continue
		}
		if f.Symbols[k] == nil {
			f.Symbols[k] = map[string]*Symbol{}
		}
		sym := &Symbol{Kind: k, Name: id.Name, Ident: id, Decl: n, File: f}
		if prev := f.Symbols[k][id.Name]; prev != nil {
			d := diag.Errorf(id.Span(), diag.DuplicateDeclaration, "Duplicate declaration",
				"%s %q is already declared in this file.", k, id.Name)
			d.Related = []diag.Related{{Span: prev.Ident.Span(), Message: "first declared here"}}
			st.diags.Add(d)
			continue
		}
		f.Symbols[k][id.Name] = sym
		st.info.Defs[id] = sym
	}
}

// checkDuplicates reports a name declared both in f and in a file it imports.
func (st *loadState) checkDuplicates(f *File) {
	for k, syms := range f.Symbols {
		for name, s := range syms {
			for _, imp := range f.Imports {
				if other := imp.Symbols[k][name]; other != nil && other != s {
					d := diag.Errorf(s.Ident.Span(), diag.DuplicateDeclaration, "Duplicate declaration",
						"%s %q is also declared in imported file %s; rename one of them.", k, name, imp.Path)
					d.Related = []diag.Related{{Span: other.Ident.Span(), Message: "also declared here"}}
					st.diags.Add(d)
				}
			}
		}
	}
}

// bind records the declaration each `use` and `extends` names.
func (st *loadState) bind(f *File) {
	for _, d := range f.AST.Decls {
		if d.Template != nil && d.Template.Extends != nil {
			st.use(f, KindTemplate, d.Template.Extends)
		}
		_, _, n := declSymbol(d)
		if n == nil {
			continue
		}
		ast.Inspect(n, func(x ast.Node) bool {
			switch x := x.(type) {
			case *ast.ConfigBlock:
				st.uses(f, KindConfig, configUses(x))
			case *ast.McaBlock:
				for _, it := range x.Items {
					if it.Use != nil {
						st.use(f, KindMca, it.Use.Name)
					}
				}
			case *ast.WeightsBlock:
				for _, it := range x.Items {
					if it.Use != nil {
						st.use(f, KindWeights, it.Use.Name)
					}
				}
			case *ast.ParallelBlock:
				for _, it := range x.Items {
					if it.Use != nil {
						st.use(f, KindParallel, it.Use.Name)
					}
				}
			case *ast.QuantBlock:
				for _, it := range x.Items {
					if it.Use != nil {
						st.use(f, KindQuant, it.Use.Name)
					}
				}
			case *ast.SchemaBlock:
				for _, it := range x.Items {
					if it.Use != nil {
						st.use(f, KindSchema, it.Use.Name)
					}
				}
			case *ast.TypeAtom:
				// A field type naming a schema: bound when visible (the
				// schema builder reports an unknown type).
				if x.Name != nil && !schema.BasicTypes[x.Name.Name] {
					if s := st.info.Lookup(f, KindSchema, x.Name.Name); s != nil {
						st.info.Uses[x.Name] = s
					}
				}
			}
			return true
		})
	}
}

func configUses(b *ast.ConfigBlock) []*ast.Ident {
	var out []*ast.Ident
	for _, it := range b.Items {
		if it.Use != nil {
			out = append(out, it.Use.Name)
		}
	}
	return out
}

func (st *loadState) uses(f *File, k Kind, ids []*ast.Ident) {
	for _, id := range ids {
		st.use(f, k, id)
	}
}

func (st *loadState) use(f *File, k Kind, id *ast.Ident) {
	if s := st.info.Lookup(f, k, id.Name); s != nil {
		st.info.Uses[id] = s
		return
	}
	st.info.Incomplete = true
	// A name an import that failed would have provided is that import's
	// error, already reported, not a second one.
	for _, fi := range f.failed {
		if fi.names == nil || fi.names[k][id.Name] {
			return
		}
	}
	detail := fmt.Sprintf("No %s block named %q is declared in this file or the files it imports.", k, id.Name)
	if k == KindTemplate {
		detail = fmt.Sprintf("No template named %q is declared in this file or the files it imports.", id.Name)
	}
	if m := st.declaredIn(f, k, id.Name); m != "" {
		detail += fmt.Sprintf(" Module %q declares it: add import %q.", m, m)
	} else if s := vocab.Suggest(id.Name, st.info.Visible(f, k)); s != "" {
		detail += fmt.Sprintf(" Did you mean %q?", s)
	} else if d := st.info.DefaultQuant; k == KindQuant && d != nil {
		// The library's quant sections, as an import's did-you-mean.
		var names []string
		for n := range d.File.Symbols[KindQuant] {
			names = append(names, n)
		}
		sort.Strings(names)
		if s := vocab.Suggest(id.Name, names); s != "" {
			detail += fmt.Sprintf(" Did you mean %q (module %q: add import %q)?", s, vocab.DefaultQuantModule, vocab.DefaultQuantModule)
		}
	}
	st.diags.Add(diag.Errorf(id.Span(), diag.UnknownReference, "Unknown "+string(k)+" name", "%s", detail))
}
