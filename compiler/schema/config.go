package schema

import (
	"fmt"
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
			if !BasicTypes[a.Name] {
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

// Load builds a Set from the schema declarations of the given files.
// `use` inside a schema splices another schema's fields.
func Load(files []Source) (*Set, diag.List) {
	var diags diag.List
	decls := map[string]*ast.SchemaBlock{}
	comments := map[*ast.SchemaBlock]*ast.File{}
	srcs := map[*ast.File][]byte{}
	for _, f := range files {
		srcs[f.File] = f.Src
		for _, d := range f.File.Decls {
			if d.Schema == nil {
				continue
			}
			name := d.Schema.Name.Name
			if prev, ok := decls[name]; ok {
				dg := diag.Errorf(d.Schema.Name.Span(), "duplicate-declaration", "Duplicate schema", "Schema %q is declared twice.", name)
				dg.Related = []diag.Related{{Span: prev.Name.Span(), Message: "first declared here"}}
				diags.Add(dg)
				continue
			}
			decls[name] = d.Schema
			comments[d.Schema] = f.File
		}
	}
	set := &Set{Schemas: map[string]*Schema{}}
	active := map[string]bool{}
	var build func(name string) *Schema
	build = func(name string) *Schema {
		if s, ok := set.Schemas[name]; ok {
			return s
		}
		b := decls[name]
		if b == nil || active[name] {
			return nil
		}
		active[name] = true
		defer delete(active, name)
		file := comments[b]
		s := &Schema{Name: name, Span: b.Span(), Fields: map[string]*Field{}, Doc: DocComment(file, b.Span())}
		for _, it := range b.Items {
			if it.Use != nil {
				u := build(it.Use.Name.Name)
				if u == nil {
					detail := fmt.Sprintf("No schema named %q.", it.Use.Name.Name)
					if active[it.Use.Name.Name] {
						detail = fmt.Sprintf("Schema %q uses itself.", it.Use.Name.Name)
					}
					diags.Add(diag.Errorf(it.Use.Name.Span(), "unknown-reference", "Unknown schema", "%s", detail))
					continue
				}
				for _, fn := range u.Order {
					if _, dup := s.Fields[fn]; !dup {
						s.Order = append(s.Order, fn)
					}
					s.Fields[fn] = u.Fields[fn]
				}
				continue
			}
			fl := it.Field
			t := typeOf(fl.Type)
			for _, a := range allAtoms(t) {
				if !BasicTypes[a.Name] && decls[a.Name] == nil {
					diags.Add(diag.Errorf(fl.Type.Span(), "unknown-type", "Unknown type",
						"%q is neither a basic type (int, float, bool, str, dict, list[T], any, ignored) nor a schema.", a.Name))
				}
			}
			field := &Field{Name: fl.Name.Name, Type: t, Span: fl.Span(), Doc: DocComment(file, fl.Span())}
			if fl.Default != nil {
				if sp := fl.Default.Span(); sp.End.Offset <= len(srcs[file]) && sp.Start.Offset <= sp.End.Offset {
					field.Default = string(srcs[file][sp.Start.Offset:sp.End.Offset])
				}
			}
			if _, dup := s.Fields[field.Name]; !dup {
				s.Order = append(s.Order, field.Name)
			}
			s.Fields[field.Name] = field
		}
		set.Schemas[name] = s
		return s
	}
	names := make([]string, 0, len(decls))
	for n := range decls {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		build(n)
	}
	return set, diags
}

func allAtoms(t *Type) []Atom {
	var out []Atom
	for _, a := range t.Alts {
		out = append(out, a)
		if a.Elem != nil {
			out = append(out, allAtoms(a.Elem)...)
		}
	}
	return out
}

func typeOf(t *ast.Type) *Type {
	out := &Type{Nullable: t.Nullable}
	for _, a := range t.Alts {
		at := Atom{Name: a.Name.Name}
		if a.Elem != nil {
			at.Elem = typeOf(a.Elem)
		}
		out.Alts = append(out.Alts, at)
	}
	return out
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
