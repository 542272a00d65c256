package resolve

import (
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/lang/parser"
)

// This file holds the hints of the import diagnostics: the module an
// unknown import most likely meant, and the module that declares a name a
// file uses without importing it.

// module is a .rolltpl file an import can name.
type module struct {
	name string // as imported: "common"
	path string // as read: "common.rolltpl" in the library, "dir/blocks.rolltpl" beside
	lib  bool
}

// modules returns the modules an import in the file name (a library file
// if lib) can name: the .rolltpl files beside it (user files only, listed
// by Loader.ListDir and the overlay), then the library's, sorted by name.
func (st *loadState) modules(name string, lib bool) []module {
	var out []module
	seen := map[string]bool{}
	if !lib {
		dir := filepath.Dir(name)
		var files []string
		if st.ld.ListDir != nil {
			files, _ = st.ld.ListDir(dir)
		}
		for p := range st.ld.Overlay {
			if filepath.Dir(p) == dir {
				files = append(files, filepath.Base(p))
			}
		}
		for _, fn := range files {
			if m, ok := strings.CutSuffix(fn, ".rolltpl"); ok && fn != filepath.Base(name) && !seen[m] {
				seen[m] = true
				out = append(out, module{name: m, path: filepath.Join(dir, fn)})
			}
		}
	}
	if st.ld.Lib != nil {
		entries, _ := fs.ReadDir(st.ld.Lib, ".")
		for _, e := range entries {
			if m, ok := strings.CutSuffix(e.Name(), ".rolltpl"); ok && !e.IsDir() && !seen[m] {
				seen[m] = true
				out = append(out, module{name: m, path: e.Name(), lib: true})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// names returns the declarations of module m by kind, read (once) but not
// loaded: it is not imported, and its own problems are not the file's.
// Nil when it cannot be read.
func (st *loadState) names(m module) map[Kind]map[string]bool {
	key := filepath.ToSlash(m.path)
	if m.lib {
		key = LibPrefix + key
	}
	if n, ok := st.modNames[key]; ok {
		return n
	}
	if st.modNames == nil {
		st.modNames = map[string]map[Kind]map[string]bool{}
	}
	var names map[Kind]map[string]bool
	if src, display, err := st.read(m.path, m.lib); err == nil {
		parse := st.ld.Parse
		if parse == nil {
			parse = parser.ParseFile
		}
		astf, _ := parse(display, src)
		names = map[Kind]map[string]bool{}
		for _, d := range astf.Decls {
			if k, id, _ := declSymbol(d); id != nil {
				if names[k] == nil {
					names[k] = map[string]bool{}
				}
				names[k][id.Name] = true
			}
		}
	}
	st.modNames[key] = names
	return names
}

// suggestImport returns the module nearest to target that an import in
// the file name could name, and the names that module declares by kind.
func (st *loadState) suggestImport(name string, lib bool, target string) (string, map[Kind]map[string]bool) {
	mods := st.modules(name, lib)
	var names []string
	for _, m := range mods {
		names = append(names, m.name)
	}
	sugg := vocab.Suggest(target, names)
	for _, m := range mods {
		if m.name == sugg {
			return sugg, st.names(m)
		}
	}
	return "", nil
}

// declaredIn returns the first module, by name, that declares a k named
// name and that f does not import: the import f most likely lacks.
func (st *loadState) declaredIn(f *File, k Kind, name string) string {
	if k == KindSchema {
		return ""
	}
	fname := f.Path
	if f.Lib {
		fname = strings.TrimPrefix(f.Path, LibPrefix)
	}
	for _, m := range st.modules(fname, f.Lib) {
		if st.names(m)[k][name] {
			return m.name
		}
	}
	return ""
}
