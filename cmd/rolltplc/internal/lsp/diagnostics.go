package lsp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/srcfile"
	"github.com/rolltpl/rolltpl/lang/token"
)

// compile compiles d as `rolltplc check` would, with every open document's
// text in the overlay so that unsaved imports are seen too.
func (s *Server) compile(d *document) {
	overlay := make(map[string][]byte, len(s.docs))
	for _, o := range s.docs {
		overlay[o.path] = o.text
	}
	res := compiler.Compile([]string{d.path}, compiler.Options{Lib: s.opts.Lib, Overlay: overlay, SchemaLib: s.schemaLib, Parse: s.parses.ParseFile, Backend: pyemit.Check})
	d.res, d.file = res, nil
	if res.Info != nil {
		d.file = res.Info.File(d.path)
	}
}

// check compiles d and publishes its diagnostics (an empty list clears
// them).
func (s *Server) check(d *document) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Printf("panic checking %s: %v\n%s", d.uri, r, debug.Stack())
		}
	}()
	s.compile(d)
	v := d.version
	s.out.notify("textDocument/publishDiagnostics", PublishDiagnosticsParams{URI: d.uri, Version: &v, Diagnostics: s.diagnostics(d)})
}

// diagnostics converts the compiler's diagnostics about d to the protocol:
// the same subjects, codes and summaries, with UTF-16 positions.
func (s *Server) diagnostics(d *document) []Diagnostic {
	out := []Diagnostic{}
	if d.res == nil {
		return out
	}
	for _, dg := range d.res.Diags {
		name := dg.Subject.Start.Filename
		if name != d.path && name != "" {
			continue // about another file: published when that file is open
		}
		ld := Diagnostic{Severity: severity(dg.Severity), Code: dg.Code, Source: "rolltplc", Message: message(dg)}
		if name != "" {
			ld.Range = tfRange(d.tf, dg.Subject.Start.Offset, dg.Subject.End.Offset)
		}
		for _, rel := range dg.Related {
			if loc, ok := s.location(d, rel.Span); ok {
				ld.RelatedInformation = append(ld.RelatedInformation, DiagnosticRelatedInformation{Location: loc, Message: rel.Message})
			}
		}
		out = append(out, ld)
	}
	return out
}

func severity(s diag.Severity) int {
	switch s {
	case diag.Error:
		return SeverityError
	case diag.Warning:
		return SeverityWarning
	}
	return SeverityInformation
}

// message is the diagnostic's summary and detail, as `rolltplc check`
// prints them.
func message(d *diag.Diagnostic) string {
	if d.Detail == "" {
		return d.Summary
	}
	return d.Summary + ": " + d.Detail
}

// location returns the protocol location of a span in any file of d's
// compilation.
func (s *Server) location(d *document, sp token.Span) (Location, bool) {
	name := sp.Start.Filename
	if name == d.path {
		return Location{URI: d.uri, Range: tfRange(d.tf, sp.Start.Offset, sp.End.Offset)}, true
	}
	if d.res == nil || d.res.Info == nil {
		return Location{}, false
	}
	f := d.res.Info.File(name)
	if f == nil {
		return Location{}, false
	}
	uri, ok := s.fileURI(f)
	if !ok {
		return Location{}, false
	}
	tf := token.NewFile(f.Path, f.Src)
	return Location{URI: uri, Range: tfRange(tf, sp.Start.Offset, sp.End.Offset)}, true
}

// fileURI returns the URI of a loaded file: the open document's own URI, a
// file: URI, or for library files one into the library folder on disk.
func (s *Server) fileURI(f *resolve.File) (string, bool) {
	if f.Lib {
		dir := s.ensureLibDir()
		if dir == "" {
			return "", false
		}
		if rest, ok := strings.CutPrefix(f.Path, resolve.SchemaLibPrefix); ok {
			return pathToURI(filepath.Join(dir, schemaLibDir, filepath.FromSlash(rest))), true
		}
		return pathToURI(filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(f.Path, resolve.LibPrefix)))), true
	}
	for _, o := range s.docs {
		if o.path == f.Path {
			return o.uri, true
		}
	}
	if !filepath.IsAbs(f.Path) {
		return "", false
	}
	return pathToURI(f.Path), true
}

// schemaLibDir is the folder of the library folder the schema library is
// written to.
const schemaLibDir = "schema"

// ensureLibDir writes the library's files to disk, once, and returns the
// folder ("" when that failed). The default folder is named after a hash
// of the contents, so that versions do not mix.
func (s *Server) ensureLibDir() string {
	s.libOnce.Do(func() {
		if s.opts.Lib == nil {
			return
		}
		files := map[string][]byte{}
		var names []string
		err := fs.WalkDir(s.opts.Lib, ".", func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(p, ".rolltpl") {
				return err
			}
			b, err := fs.ReadFile(s.opts.Lib, p)
			files[p], names = b, append(names, p)
			return err
		})
		if err == nil && s.opts.SchemaLib != nil {
			// The schema library, in a folder of its own.
			err = fs.WalkDir(s.opts.SchemaLib, ".", func(p string, e fs.DirEntry, err error) error {
				if err != nil || e.IsDir() || !strings.HasSuffix(p, ".rolltpl") {
					return err
				}
				b, err := fs.ReadFile(s.opts.SchemaLib, p)
				n := path.Join(schemaLibDir, p)
				files[n], names = b, append(names, n)
				return err
			})
		}
		if err != nil {
			s.log.Printf("reading the library: %v", err)
			return
		}
		sort.Strings(names)
		dir := s.opts.LibDir
		if dir == "" {
			h := sha256.New()
			for _, n := range names {
				h.Write([]byte(n + "\x00"))
				h.Write(files[n])
				h.Write([]byte{0})
			}
			base, err := os.UserCacheDir()
			if err != nil {
				base = os.TempDir()
			}
			dir = filepath.Join(base, "rolltplc", "stdlib-"+hex.EncodeToString(h.Sum(nil))[:12])
		}
		for _, n := range names {
			p := filepath.Join(dir, filepath.FromSlash(n))
			if old, err := srcfile.ReadFile(p); err == nil && bytes.Equal(old, files[n]) {
				continue
			}
			if err := writeReadOnly(p, files[n]); err != nil {
				s.log.Printf("writing the library for go-to-definition: %v", err)
				return
			}
		}
		s.libDir = dir
	})
	return s.libDir
}

func writeReadOnly(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o444); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}
