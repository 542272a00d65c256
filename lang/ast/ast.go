// Package ast declares the syntax tree of .rolltpl files. The node types are
// also the grammar: their struct tags are read by participle in package
// lang/parser. Every node embeds [Range], so every node has an exact byte
// range ([Node.Span]); this package imports only lang/token.
//
// A file is a list of declarations: imports, templates, and named reusable
// blocks (config maps, MCA constants, weight op groups, parallel sets). A
// template is built from the same block kinds, unnamed, plus fields such as
// layer_prefix. See lang/spec.md for the language itself.
package ast

import "github.com/rolltpl/rolltpl/lang/token"

// Node is implemented by every syntax tree node.
type Node interface {
	Span() token.Span
}

// Range is embedded in every node; participle fills Pos and EndPos.
type Range struct {
	Pos    token.Pos
	EndPos token.Pos
}

// Span returns the node's byte range.
func (r Range) Span() token.Span { return token.Span{Start: r.Pos, End: r.EndPos} }

// File is a parsed .rolltpl file.
type File struct {
	Range
	Decls []*Decl `parser:"@@*"`

	// Name is the file name given to the parser (not part of the grammar).
	Name string
	// Comments are the file's comments in source order (set by the parser).
	Comments []*Comment
}

// Comment is one `#` comment; Text includes the `#`.
type Comment struct {
	Range
	Text string
}

// Decl is one top-level declaration; exactly one field is set.
type Decl struct {
	Range
	Import   *Import        `parser:"@@"`
	Template *Template      `parser:"| @@"`
	Config   *ConfigBlock   `parser:"| @@"`
	Mca      *McaBlock      `parser:"| @@"`
	Weights  *WeightsBlock  `parser:"| @@"`
	Parallel *ParallelBlock `parser:"| @@"`
	Quant    *QuantBlock    `parser:"| @@"`
	Schema   *SchemaBlock   `parser:"| @@"`

	// Bad is set by the parser for a declaration it could not parse.
	Bad *BadDecl
}

// Node returns the declaration's only non-nil member.
func (d *Decl) Node() Node {
	switch {
	case d.Import != nil:
		return d.Import
	case d.Template != nil:
		return d.Template
	case d.Config != nil:
		return d.Config
	case d.Mca != nil:
		return d.Mca
	case d.Weights != nil:
		return d.Weights
	case d.Parallel != nil:
		return d.Parallel
	case d.Quant != nil:
		return d.Quant
	case d.Schema != nil:
		return d.Schema
	case d.Bad != nil:
		return d.Bad
	}
	return d
}

// BadDecl stands for source the parser could not parse, from the start of a
// declaration to the start of the next one.
type BadDecl struct {
	Range
	// Partial is what participle built before the error, if anything.
	Partial *Decl
}

// Import makes the declarations of another file visible: `import "common"`.
type Import struct {
	Range
	Path *String `parser:"\"import\" @@"`
}

// Ident is a name.
type Ident struct {
	Range
	Name string `parser:"@Ident"`
}

// String is a string literal; Value is unquoted.
type String struct {
	Range
	Value string `parser:"@String"`
}

// Template declares a conversion template for one HF model type.
type Template struct {
	Range
	Name    *Ident          `parser:"\"template\" @@"`
	Extends *Ident          `parser:"( \"extends\" @@ )?"`
	Items   []*TemplateItem `parser:"\"{\" @@* \"}\""`
}

// TemplateItem is one item in a template body; exactly one field is set.
type TemplateItem struct {
	Range
	Config   *ConfigBlock   `parser:"@@"`
	Mca      *McaBlock      `parser:"| @@"`
	Weights  *WeightsBlock  `parser:"| @@"`
	Parallel *ParallelBlock `parser:"| @@"`
	Quant    *QuantBlock    `parser:"| @@"`
	Field    *Field         `parser:"| @@"`
}

// Field sets a template property: `layer_prefix = "model.layers."`.
type Field struct {
	Range
	Key   *Ident `parser:"@@ \"=\""`
	Value *Expr  `parser:"@@"`
}

// Use splices a named block of the same kind at this point: `use llm_core`.
type Use struct {
	Range
	Name *Ident `parser:"\"use\" @@"`
}

// ConfigBlock maps HF config keys to MCA config keys. Top-level blocks are
// named; the block inside a template is not.
type ConfigBlock struct {
	Range
	Name  *Ident        `parser:"\"config\" @@?"`
	Items []*ConfigItem `parser:"\"{\" @@* \"}\""`
}

// ConfigItem is one entry of a config block; exactly one field is set.
type ConfigItem struct {
	Range
	Use    *Use        `parser:"@@"`
	Prefix *PrefixRule `parser:"| @@"`
	Set    *ConfigSet  `parser:"| @@"`
	Map    *ConfigMap  `parser:"| @@"`
}

// ConfigMap is `hf.dotted.path -> mca_key`: the value is copied HF → MCA and
// back.
type ConfigMap struct {
	Range
	HF  *Path  `parser:"@@ \"->\""`
	MCA *Ident `parser:"@@"`
}

// Path is a dotted key path such as `text_config.hidden_size`.
type Path struct {
	Range
	Parts []*Ident `parser:"@@ ( \".\" @@ )*"`
}

// PrefixRule rewrites HF keys: `prefix "text_config." unless "*_token_id"`.
type PrefixRule struct {
	Range
	Prefix *String   `parser:"\"prefix\" @@"`
	Unless []*String `parser:"( \"unless\" @@ ( \",\" @@ )* \",\"? )?"`
}

// ConfigSet computes one config value: `set mca.k = expr when cond`.
type ConfigSet struct {
	Range
	Side  *Ident `parser:"\"set\" @@ \".\""`
	Key   *Path  `parser:"@@ \"=\""`
	Value *Expr  `parser:"@@"`
	When  *Expr  `parser:"( \"when\" @@ )?"`
}

// McaBlock holds constant MCA config values.
type McaBlock struct {
	Range
	Name  *Ident     `parser:"\"mca\" @@?"`
	Items []*McaItem `parser:"\"{\" @@* \"}\""`
}

// McaItem is one entry of an mca block; exactly one field is set.
type McaItem struct {
	Range
	Use   *Use   `parser:"@@"`
	Const *Field `parser:"| @@"`
}

// WeightsBlock lists weight ops in registration order (first match wins).
type WeightsBlock struct {
	Range
	Name  *Ident        `parser:"\"weights\" @@?"`
	Items []*WeightItem `parser:"\"{\" @@* \"}\""`
}

// WeightItem is one entry of a weights block; exactly one field is set.
type WeightItem struct {
	Range
	Use    *Use    `parser:"@@"`
	Ignore *Ignore `parser:"| @@"`
	Drop   *Drop   `parser:"| @@"`
	Op     *Op     `parser:"| @@"`
}

// Drop discards HF weights on purpose: `drop "mtp.*"`.
type Drop struct {
	Range
	Names []*Expr `parser:"\"drop\" @@ ( \",\" @@ )* \",\"?"`
}

// Ignore names HF weights that are skipped on purpose (hf_invalid_keys).
type Ignore struct {
	Range
	Names []*String `parser:"\"ignore\" @@ ( \",\" @@ )* \",\"?"`
}

// Op is one weight op: `kind(params) hf, ... -> mca, ...`.
type Op struct {
	Range
	Kind   *Ident   `parser:"@@"`
	Params []*Param `parser:"( \"(\" ( @@ ( \",\" @@ )* \",\"? )? \")\" )?"`
	HF     []*Expr  `parser:"@@ ( \",\" @@ )* \"->\""`
	MCA    []*Expr  `parser:"@@ ( \",\" @@ )*"`
}

// Param is a named op parameter: `dim = 0`.
type Param struct {
	Range
	Name  *Ident `parser:"@@ \"=\""`
	Value *Expr  `parser:"@@"`
}

// ParallelBlock classifies MCA names for tensor/pipeline/expert parallelism.
type ParallelBlock struct {
	Range
	Name  *Ident          `parser:"\"parallel\" @@?"`
	Items []*ParallelItem `parser:"\"{\" @@* \"}\""`
}

// ParallelItem is `use name` or `class entry, entry, ...`.
type ParallelItem struct {
	Range
	Use   *Use           `parser:"@@"`
	Class *ParallelClass `parser:"| @@"`
}

// ParallelClass lists the names of one class: `duplicated ".a", ".b"` or, for
// maps, `grouped_column ".linear_fc1.weight" -> ".mlp.experts.weight1"`.
type ParallelClass struct {
	Range
	Kind    *Ident           `parser:"@@"`
	Entries []*ParallelEntry `parser:"@@ ( \",\" @@ )* \",\"?"`
}

// ParallelEntry is a pattern, or for map classes a pair `from -> to`.
type ParallelEntry struct {
	Range
	From *String `parser:"@@"`
	To   *String `parser:"( \"->\" @@ )?"`
}

// QuantBlock says how the scale tensors of a block-quantized HF checkpoint
// are named after their weights: `quant fp8_block { scale "{}.weight" ->
// "{}.weight_scale_inv" }`. Top-level blocks are named; the section inside
// a template is not.
type QuantBlock struct {
	Range
	Name  *Ident       `parser:"\"quant\" @@?"`
	Items []*QuantItem `parser:"\"{\" @@* \"}\""`
}

// QuantItem is `use NAME` or a scale rule; exactly one is set.
type QuantItem struct {
	Range
	Use   *Use       `parser:"@@"`
	Scale *ScaleRule `parser:"| @@"`
}

// ScaleRule pairs an HF weight name pattern with its scale's:
// `scale "{}.weight" -> "{}.weight_scale_inv"`.
type ScaleRule struct {
	Range
	Weight *String `parser:"\"scale\" @@ \"->\""`
	Scale  *String `parser:"@@"`
}

// SchemaBlock declares the config keys of a model type (`schema llama`),
// of the MCA config (`schema mca`), of a nested config (`schema
// qwen2_vl_text`), or a fragment other schemas `use`.
type SchemaBlock struct {
	Range
	Name  *Ident        `parser:"\"schema\" @@"`
	Items []*SchemaItem `parser:"\"{\" @@* \"}\""`
}

// SchemaItem is `use NAME` or a field; exactly one is set.
type SchemaItem struct {
	Range
	Use   *Use         `parser:"@@"`
	Field *SchemaField `parser:"| @@"`
}

// SchemaField is `name: type = default`.
type SchemaField struct {
	Range
	Name    *Ident `parser:"@@ \":\""`
	Type    *Type  `parser:"@@"`
	Default *Expr  `parser:"( \"=\" @@ )?"`
}

// Type is a union of type atoms, optionally nullable: `int | list[int]?`.
type Type struct {
	Range
	Alts     []*TypeAtom `parser:"@@ ( \"|\" @@ )*"`
	Nullable bool        `parser:"@\"?\"?"`
}

// TypeAtom is a type name with an optional element type: `list[str]`.
type TypeAtom struct {
	Range
	Name *Ident `parser:"@@"`
	Elem *Type  `parser:"( \"[\" @@ \"]\" )?"`
}
