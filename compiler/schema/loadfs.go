package schema

import (
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/parser"
)

// LoadFS parses every .rolltpl file at the root of fsys and loads the
// schemas they declare. prefix is prepended to file names in positions
// (e.g. "stdlib/schema/").
func LoadFS(fsys fs.FS, prefix string) (*Set, diag.List) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return &Set{Schemas: map[string]*Schema{}}, diag.List{diag.Errorf(diag.List{}.Span(), "read-error", "Cannot read schemas", "%v", err)}
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".rolltpl") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var diags diag.List
	var srcs []Source
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			diags.Add(diag.Errorf(diag.List{}.Span(), "read-error", "Cannot read schema", "%s: %v", n, err))
			continue
		}
		f, d := parser.ParseFile(path.Join(prefix, n), b)
		diags.Extend(d)
		srcs = append(srcs, Source{File: f, Src: b})
	}
	set, d := Load(srcs)
	diags.Extend(d)
	return set, diags
}
