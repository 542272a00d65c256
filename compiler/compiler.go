// Package compiler runs the front end over .rolltpl files: load and resolve
// (compiler/resolve), then lower to the IR (compiler/lower). It knows
// nothing of the backends: the Python emitter and the runtime read the
// [ir.Program] it returns.
package compiler

import (
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/check"
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/lower"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/compiler/schema"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/srcfile"
)

// Options configure a compilation.
type Options struct {
	// Lib is the library imports fall back to (the stdlib's templates
	// directory); nil for none.
	Lib fs.FS
	// Overlay supplies unsaved file contents by path.
	Overlay map[string][]byte
	// Parse parses one file; nil means parser.ParseFile (see
	// resolve.Loader.Parse).
	Parse func(name string, src []byte) (*ast.File, diag.List)
	// SchemaLib is the schema library (LoadSchemaLibrary of the stdlib's
	// config schemas, stdlib.Schemas()): its schemas are visible from every
	// file. Schemas declared in the compiled files themselves are used as
	// well, scoped like templates (resolve): a file sees its own and its
	// imports'.
	SchemaLib *SchemaLibrary
	// Schemas are further schemas, used for a name no file or library
	// declares (e.g. one inferred from a config.json). With neither these
	// nor any schema declaration the schema checks are skipped (the op,
	// name and parallel checks still run).
	Schemas *schema.Set
	// Backend, if set, checks a program that compiled without errors for
	// what a backend cannot emit (pyemit.Check); its diagnostics are
	// added to the result.
	Backend func(*ir.Program) diag.List
	// DropSyntax releases the syntax trees and symbol tables once the
	// program is lowered, so that checking a large input does not hold
	// them: Result.Info then has each file's Path, Src and Lib only. For
	// callers that need just the program and the diagnostics (rolltplc
	// check and build; not the language server).
	DropSyntax bool
}

// Result is what a compilation produced.
type Result struct {
	Program *ir.Program
	Info    *resolve.Info
	// Schemas are the config schemas of the compilation; Schemas.For(path)
	// are those the file at path sees. Nil when there are none.
	Schemas *schema.Set
	Diags   diag.List
}

// Sources returns the text of every loaded file, for diagnostics printing.
func (r *Result) Sources() diag.Sources {
	src := diag.Sources{}
	if r.Info != nil {
		for _, f := range r.Info.Files {
			src[f.Path] = f.Src
		}
	}
	return src
}

// sourcesOnly returns an Info with each file of in and only its path,
// text and library flag.
func sourcesOnly(in *resolve.Info) *resolve.Info {
	out := &resolve.Info{}
	for _, f := range in.Files {
		out.Files = append(out.Files, &resolve.File{Path: f.Path, Src: f.Src, Lib: f.Lib})
	}
	return out
}

// Compile compiles the named files (paths starting with "stdlib/templates/"
// are read from opts.Lib). The program is partial when there are errors.
func Compile(paths []string, opts Options) (res *Result) {
	res = &Result{Program: &ir.Program{}}
	defer func() {
		if r := recover(); r != nil {
			res.Diags.Add(&diag.Diagnostic{Severity: diag.Error, Code: diag.InternalError, Summary: "Internal compiler error",
				Detail: fmt.Sprintf("The compiler failed unexpectedly (%v). Please report this with the input.", r)})
		}
	}()
	ld := &resolve.Loader{ReadFile: srcfile.ReadFile, ListDir: listDir, Lib: opts.Lib, Overlay: opts.Overlay, Parse: opts.Parse}
	if opts.SchemaLib != nil {
		ld.Prelude = opts.SchemaLib.prelude
	}
	info, diags := ld.Load(paths)
	res.Info = info
	res.Diags.Extend(diags)
	set, sdiags := schemaSets(info, opts.Schemas, opts.SchemaLib)
	res.Schemas = set
	res.Diags.Extend(sdiags)
	prog, ldiags := lower.Lower(info)
	res.Program = prog
	res.Diags.Extend(ldiags)
	if opts.DropSyntax {
		res.Info = sourcesOnly(info)
	}
	res.Diags.Extend(check.Check(prog, set))
	check.AnnotateConfigTypes(prog, set)
	if opts.Backend != nil && !res.Diags.HasErrors() {
		res.Diags.Extend(opts.Backend(prog))
	}
	if info.Incomplete {
		res.Diags = withoutCascades(res.Diags)
	}
	res.Diags = res.Diags.Dedup()
	return res
}

// withoutCascades drops the diagnostics of what a template lacks (config
// an op reads, parallel classes) from a compilation where some `use` or
// `extends` named nothing: the block it names would likely supply them, so
// they would only repeat that error (an import misspelt: every op of the
// template missing its config).
func withoutCascades(l diag.List) diag.List {
	out := l[:0]
	for _, d := range l {
		if d.Code != diag.MissingConfig && d.Code != diag.ParallelCoverage {
			out = append(out, d)
		}
	}
	return out
}

// listDir returns the names of the entries of dir (resolve.Loader.ListDir).
func listDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, err
}

// LibPaths returns the library paths of every .rolltpl file in lib, sorted,
// as Compile expects them.
func LibPaths(lib fs.FS) ([]string, error) {
	entries, err := fs.ReadDir(lib, ".")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".rolltpl") {
			out = append(out, resolve.LibPrefix+e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}
