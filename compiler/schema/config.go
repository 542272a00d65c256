// Package schema holds the config schemas templates are checked against:
// their model (Schema, Field, Type), the one builder of schemas from
// declarations (Builder; the compiler scopes it like templates), the
// validation of config values and the inference of a schema from a
// config.json. The language's vocabulary (op kinds, template fields,
// build flags) is compiler/vocab's.
package schema

import (
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

// Config schemas describe the keys of a config: the HF config of one model
// type (a schema named after the model type, e.g. `schema llama`), the MCA
// config (`schema mca`), nested configs (`schema qwen2_vl_text`, used as a
// field type), and fragments other schemas `use`.
//
// Types are the JSON types of config.json: int, float, bool, str, dict,
// list[T], any, unions `int | list[int]`, nullable `T?`, and the name of
// another schema (a nested object). The type `ignored` marks a key that is
// not a real field (the config class drops it on load); mapping to it is a
// warning, not an error.

// Atom is one alternative of a [Type].
type Atom struct {
	// Name is a basic type (int, float, bool, str, dict, list, any, ignored)
	// or the name of a nested schema.
	Name string
	// Elem is the element type of a list.
	Elem *Type
	// Schema is the nested schema Name refers to (nil for a basic type or
	// an unknown name), as seen from where the type is written.
	Schema *Schema
}

// Type is a config value type.
type Type struct {
	Alts     []Atom
	Nullable bool
}

// BasicTypes are the type names that are not schema names.
var BasicTypes = map[string]bool{
	"int": true, "float": true, "bool": true, "str": true, "dict": true, "list": true, "any": true, "ignored": true,
}

// String formats t as written in a schema.
func (t *Type) String() string {
	if t == nil {
		return "any"
	}
	parts := make([]string, len(t.Alts))
	for i, a := range t.Alts {
		parts[i] = a.Name
		if a.Elem != nil {
			parts[i] += "[" + a.Elem.String() + "]"
		}
	}
	s := strings.Join(parts, " | ")
	if t.Nullable {
		s += "?"
	}
	return s
}

// Is reports whether t has an alternative named name.
func (t *Type) Is(name string) bool {
	if t == nil {
		return false
	}
	for _, a := range t.Alts {
		if a.Name == name {
			return true
		}
	}
	return false
}

// Field is one key of a schema.
type Field struct {
	Name string
	Type *Type
	// Default is the default value as written (empty when none).
	Default string
	// Doc is the comment written just above the field.
	Doc  string
	Span token.Span
}

// Schema is one config schema.
type Schema struct {
	Name   string
	Doc    string
	Span   token.Span
	Fields map[string]*Field
	// Order lists field names in declaration order (after `use` splicing).
	Order []string
}

// Field returns the named field, or nil.
func (s *Schema) Field(name string) *Field {
	if s == nil {
		return nil
	}
	return s.Fields[name]
}

// Set is a collection of schemas by name.
type Set struct {
	Schemas map[string]*Schema
	// files holds the set each source file sees, by path (see For).
	files map[string]*Set
}

// For returns the schemas the file at path sees (its own schema
// declarations, those of the files it imports and the stdlib's, as the
// compiler scopes them); s itself when s has no view for that file. For of
// a nil set is nil.
func (s *Set) For(path string) *Set {
	if s == nil {
		return nil
	}
	if v, ok := s.files[path]; ok {
		return v
	}
	return s
}

// SetFor records view as the schemas the file at path sees.
func (s *Set) SetFor(path string, view *Set) {
	if s.files == nil {
		s.files = map[string]*Set{}
	}
	s.files[path] = view
}

// Schema returns the named schema, or nil.
func (s *Set) Schema(name string) *Schema {
	if s == nil {
		return nil
	}
	return s.Schemas[name]
}

// Names returns the schema names, sorted.
func (s *Set) Names() []string {
	var out []string
	for n := range s.Schemas {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Resolve walks a dotted key path from schema root and returns the field it
// names, the schema that holds it, and how many path parts matched.
func (s *Set) Resolve(root *Schema, path []string) (*Field, *Schema, int) {
	cur := root
	for i, part := range path {
		f := cur.Field(part)
		if f == nil {
			return nil, cur, i
		}
		if i == len(path)-1 {
			return f, cur, i + 1
		}
		var next *Schema
		for _, a := range f.Type.Alts {
			if a.Schema != nil {
				next = a.Schema
			} else if !BasicTypes[a.Name] && s.Schema(a.Name) != nil {
				next = s.Schema(a.Name)
			}
		}
		if next == nil {
			// A dict or any: deeper keys cannot be checked.
			if f.Type.Is("dict") || f.Type.Is("any") {
				return f, cur, len(path)
			}
			return nil, cur, i + 1
		}
		cur = next
	}
	return nil, cur, 0
}

// Source is one parsed file holding schema declarations.
type Source struct {
	File *ast.File
	Src  []byte
}

// Decl is one schema declaration with the file it is written in.
type Decl struct {
	Block *ast.SchemaBlock
	File  *ast.File
	Src   []byte
}

// Scope finds the declaration a name written in decl in refers to (the
// NAME of a `use NAME` or a field type naming a schema), or nil. The
// compiler's scope is the templates' (compiler/resolve): a file sees its
// own schemas, those of the files it imports and the stdlib's.
type Scope func(in *Decl, name *ast.Ident) *Decl

// Builder builds schemas from their declarations, each declaration once,
// so that the sets of several files share the schemas they have in
// common. It is the one schema loader: [Load] and the compiler both use
// it, with different scopes.
type Builder struct {
	scope  Scope
	known  map[*ast.SchemaBlock]*Schema
	built  map[*ast.SchemaBlock]*Schema
	active map[*ast.SchemaBlock]bool
	diags  diag.List
}

// NewBuilder returns a builder resolving names with scope. known, read
// only, holds schemas already built (a loaded schema library's), by
// declaration.
func NewBuilder(scope Scope, known map[*ast.SchemaBlock]*Schema) *Builder {
	return &Builder{scope: scope, known: known, built: map[*ast.SchemaBlock]*Schema{}, active: map[*ast.SchemaBlock]bool{}}
}

// Built returns every schema the builder built, by declaration.
func (b *Builder) Built() map[*ast.SchemaBlock]*Schema { return b.built }

// Diags returns the problems found in the declarations built so far:
// unknown field types (unknown-type) and schemas that use themselves
// (unknown-reference). A `use` of a name the scope does not know is left
// to the caller's name resolution (compiler/resolve reports it).
func (b *Builder) Diags() diag.List { return b.diags }

// Build returns the schema d declares. A field type naming a schema holds
// that schema ([Atom.Schema]); `use` splices another schema's fields.
func (b *Builder) Build(d *Decl) *Schema {
	if s, ok := b.known[d.Block]; ok {
		return s
	}
	if s, ok := b.built[d.Block]; ok {
		return s
	}
	blk := d.Block
	s := &Schema{Name: blk.Name.Name, Span: blk.Span(), Fields: map[string]*Field{}, Doc: DocComment(d.File, blk.Span())}
	b.built[blk] = s // field types may name the schema itself
	b.active[blk] = true
	defer delete(b.active, blk)
	for _, it := range blk.Items {
		if it.Use != nil {
			ud := b.scope(d, it.Use.Name)
			if ud == nil {
				continue
			}
			if b.active[ud.Block] {
				b.diags.Add(diag.Errorf(it.Use.Name.Span(), "unknown-reference", "Unknown schema",
					"Schema %q uses itself.", it.Use.Name.Name))
				continue
			}
			u := b.Build(ud)
			for _, fn := range u.Order {
				if _, dup := s.Fields[fn]; !dup {
					s.Order = append(s.Order, fn)
				}
				s.Fields[fn] = u.Fields[fn]
			}
			continue
		}
		fl := it.Field
		t := b.typeOf(d, fl.Type)
		field := &Field{Name: fl.Name.Name, Type: t, Span: fl.Span(), Doc: DocComment(d.File, fl.Span())}
		if fl.Default != nil {
			if sp := fl.Default.Span(); sp.End.Offset <= len(d.Src) && sp.Start.Offset <= sp.End.Offset {
				field.Default = string(d.Src[sp.Start.Offset:sp.End.Offset])
			}
		}
		if _, dup := s.Fields[field.Name]; !dup {
			s.Order = append(s.Order, field.Name)
		}
		s.Fields[field.Name] = field
	}
	return s
}

// typeOf converts a written type, binding schema names through the scope.
func (b *Builder) typeOf(d *Decl, t *ast.Type) *Type {
	out := &Type{Nullable: t.Nullable}
	for _, a := range t.Alts {
		at := Atom{Name: a.Name.Name}
		if !BasicTypes[at.Name] {
			if nd := b.scope(d, a.Name); nd != nil {
				at.Schema = b.Build(nd)
			} else {
				b.diags.Add(diag.Errorf(a.Name.Span(), "unknown-type", "Unknown type",
					"%q is neither a basic type (int, float, bool, str, dict, list[T], any, ignored) nor a schema.", at.Name))
			}
		}
		if a.Elem != nil {
			at.Elem = b.typeOf(d, a.Elem)
		}
		out.Alts = append(out.Alts, at)
	}
	return out
}

// Load builds a Set from the schema declarations of the given files, all
// in one namespace (for schemas that stand alone, such as one inferred
// from a config.json). `use` inside a schema splices another schema's
// fields.
func Load(files []Source) (*Set, diag.List) {
	var diags diag.List
	decls := map[string]*Decl{}
	for _, f := range files {
		for _, d := range f.File.Decls {
			if d.Schema == nil || d.Schema.Name == nil {
				continue
			}
			name := d.Schema.Name.Name
			if prev, ok := decls[name]; ok {
				dg := diag.Errorf(d.Schema.Name.Span(), "duplicate-declaration", "Duplicate schema", "Schema %q is declared twice.", name)
				dg.Related = []diag.Related{{Span: prev.Block.Name.Span(), Message: "first declared here"}}
				diags.Add(dg)
				continue
			}
			decls[name] = &Decl{Block: d.Schema, File: f.File, Src: f.Src}
		}
	}
	b := NewBuilder(func(_ *Decl, id *ast.Ident) *Decl { return decls[id.Name] }, nil)
	set := &Set{Schemas: map[string]*Schema{}}
	for name, d := range decls {
		set.Schemas[name] = b.Build(d)
		// Flat scope: no name resolution before this one reports a bad use.
		for _, it := range d.Block.Items {
			if it.Use != nil && decls[it.Use.Name.Name] == nil {
				diags.Add(diag.Errorf(it.Use.Name.Span(), "unknown-reference", "Unknown schema", "No schema named %q.", it.Use.Name.Name))
			}
		}
	}
	diags.Extend(b.Diags())
	return set, diags
}

// DocComment returns the comment lines written directly above span (no
// blank line between), without their "#".
func DocComment(f *ast.File, span token.Span) string {
	if f == nil {
		return ""
	}
	var lines []string
	want := span.Start.Line - 1
	for i := len(f.Comments) - 1; i >= 0; i-- {
		c := f.Comments[i]
		if c.Pos.Line > want {
			continue
		}
		if c.Pos.Line != want || c.Pos.Column != span.Start.Column {
			break
		}
		lines = append([]string{strings.TrimSpace(strings.TrimPrefix(c.Text, "#"))}, lines...)
		want--
	}
	return strings.Join(lines, "\n")
}
