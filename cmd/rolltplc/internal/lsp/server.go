package lsp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/url"
	"path/filepath"
	"runtime/debug"
	"sort"
	"sync"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/resolve"
	"github.com/rolltpl/rolltpl/lang/parser"
	"github.com/rolltpl/rolltpl/lang/token"
)

// KeyDocs documents a config key for hover and completion. modelType is the
// HF model type of the template the key appears in ("" outside a template),
// side is "hf" or "mca". It returns markdown and whether it knows the key.
//
// The default documents keys from the config schemas the document sees
// (the stdlib's and the user's own: type, default and doc comment).
type KeyDocs func(modelType, side, key string) (doc string, ok bool)

// Options configure a [Server].
type Options struct {
	// Lib is the library imports fall back to: stdlib.Templates().
	Lib fs.FS
	// SchemaLib is the schema library, stdlib.Schemas(): its config
	// schemas and those declared in the user's files (scoped like
	// templates) are what templates are checked against, as `rolltplc
	// check` does; nil and no schema declaration skip the schema checks.
	SchemaLib fs.FS
	// Version is reported in serverInfo.
	Version string
	// Log receives the server's log; nil discards it. It must not be the
	// protocol's output.
	Log io.Writer
	// KeyDocs documents HF and MCA config keys; nil documents them from
	// the schemas.
	KeyDocs KeyDocs
	// LibDir is where library files are written so that go-to-definition
	// can point into them; "" means a folder under the user cache
	// directory, created on first use.
	LibDir string
}

// Server is a language server for .rolltpl files. It handles one message
// at a time, in order; create one per connection.
type Server struct {
	opts Options
	log  *log.Logger
	out  *frameWriter

	initialized bool // initialize was answered
	shutdown    bool // shutdown was answered

	docs  map[string]*document // by URI
	dirty []string             // URIs to re-check, in order

	// schemaLib is Options.SchemaLib, loaded once.
	schemaLib *compiler.SchemaLibrary

	// parses reuses the unchanged declarations of every file between
	// compilations (the open documents and the stdlib files they import).
	parses *parser.Cache

	keysOnce sync.Once
	keys     stdlibKeys
	libOnce  sync.Once
	libDir   string
}

// document is an open editor buffer.
type document struct {
	uri     string
	path    string // the name given to the compiler
	version int32
	text    []byte
	tf      *token.File

	// The last compilation of text.
	res  *compiler.Result
	file *resolve.File // this document in res.Info; nil if it failed
}

func (d *document) setText(b []byte) {
	d.text = b
	d.tf = token.NewFile(d.path, b)
}

// apply applies one content change: the whole text when it has no range,
// else a replacement of the range (UTF-16 positions, clamped to the text).
func (d *document) apply(ch TextDocumentContentChangeEvent) {
	if ch.Range == nil {
		d.setText([]byte(ch.Text))
		return
	}
	start, end := d.offset(ch.Range.Start), d.offset(ch.Range.End)
	if end < start {
		start, end = end, start
	}
	text := make([]byte, 0, len(d.text)-(end-start)+len(ch.Text))
	text = append(append(append(text, d.text[:start]...), ch.Text...), d.text[end:]...)
	d.setText(text)
}

// offset converts an LSP position (UTF-16) to a byte offset.
func (d *document) offset(p Position) int { return d.tf.OffsetUTF16(p.Line, p.Character) }

// position converts a byte offset to an LSP position (UTF-16).
func (d *document) position(off int) Position { return tfPosition(d.tf, off) }

func tfPosition(tf *token.File, off int) Position {
	return Position{Line: tf.Pos(off).Line - 1, Character: tf.UTF16Column(off)}
}

func tfRange(tf *token.File, start, end int) Range {
	return Range{Start: tfPosition(tf, start), End: tfPosition(tf, end)}
}

// New returns a server.
func New(opts Options) *Server {
	w := opts.Log
	if w == nil {
		w = io.Discard
	}
	s := &Server{opts: opts, log: log.New(w, "rolltplc lsp: ", log.LstdFlags|log.Lmicroseconds), docs: map[string]*document{}, parses: parser.NewCache()}
	if opts.SchemaLib != nil {
		s.schemaLib = compiler.LoadSchemaLibrary(opts.SchemaLib)
	}
	return s
}

type frame struct {
	body []byte
	err  error
}

// Serve runs the protocol on r and w until the exit notification or the end
// of r, and returns the process exit code: 0 after shutdown, else 1. Only
// frames are written to w.
func (s *Server) Serve(r io.Reader, w io.Writer) int {
	s.out = &frameWriter{w: w}
	frames := make(chan frame, 256)
	done := make(chan struct{})
	defer close(done)
	go func() {
		fr := newFrameReader(r)
		for {
			body, err := fr.next()
			select {
			case frames <- frame{body, err}:
			case <-done:
				return
			}
			var fe *frameError
			if err != nil && !errors.As(err, &fe) {
				return
			}
		}
	}()
	s.log.Printf("started")
	for {
		if len(frames) == 0 {
			// Nothing waiting: publish what edits left pending.
			s.flush()
		}
		f := <-frames
		if f.err != nil {
			var fe *frameError
			if errors.As(f.err, &fe) {
				s.log.Printf("malformed input: %v", fe)
				s.out.replyErr(nullID, errorf(codeParseError, "parse error: %s", fe.msg))
				continue
			}
			if f.err != io.EOF {
				s.log.Printf("reading input: %v", f.err)
			} else {
				s.log.Printf("input closed")
			}
			return s.exitCode()
		}
		if exit := s.handle(f.body); exit {
			s.log.Printf("exit")
			return s.exitCode()
		}
		if s.out.err != nil {
			s.log.Printf("writing output: %v", s.out.err)
			return 1
		}
	}
}

func (s *Server) exitCode() int {
	if s.shutdown {
		return 0
	}
	return 1
}

// handle processes one message and reports whether it was exit.
func (s *Server) handle(body []byte) (exit bool) {
	msg, rerr, id, answer := decodeMessage(body)
	if rerr != nil {
		s.log.Printf("bad message: %v", rerr)
		if answer {
			s.out.replyErr(id, rerr)
		}
		return false
	}
	if msg.Response {
		return false
	}
	if msg.ID == nil {
		if msg.Method == "exit" {
			return true
		}
		s.notification(msg)
		return false
	}
	s.request(msg)
	return false
}

type handlerFunc func(s *Server, params json.RawMessage) (any, error)

var requests map[string]handlerFunc

func init() {
	requests = map[string]handlerFunc{
		"textDocument/hover":          (*Server).hover,
		"textDocument/completion":     (*Server).completion,
		"textDocument/definition":     (*Server).definition,
		"textDocument/formatting":     (*Server).formatting,
		"textDocument/documentSymbol": (*Server).documentSymbol,
	}
}

func (s *Server) request(msg *incoming) {
	var result any
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.log.Printf("panic in %s: %v\n%s", msg.Method, r, debug.Stack())
				err = errorf(codeInternalError, "internal error in %s: %v", msg.Method, r)
			}
		}()
		result, err = s.call(msg)
	}()
	if err != nil {
		var re *rpcError
		if !errors.As(err, &re) {
			re = errorf(codeInternalError, "%v", err)
		}
		s.out.replyErr(msg.ID, re)
		return
	}
	s.out.reply(msg.ID, result)
}

func (s *Server) call(msg *incoming) (any, error) {
	switch {
	case msg.Method == "initialize":
		if s.initialized {
			return nil, errorf(codeInvalidRequest, "initialize was already received")
		}
		return s.initialize(msg.Params)
	case !s.initialized:
		return nil, errorf(codeServerNotInitialized, "the server is not initialized: send initialize first")
	case s.shutdown:
		return nil, errorf(codeInvalidRequest, "the server is shut down: only exit is accepted")
	}
	// Requests read the analysis, and answers must not overtake the
	// diagnostics of earlier edits: publish pending checks first.
	s.flush()
	if msg.Method == "shutdown" {
		s.shutdown = true
		return nil, nil
	}
	h := requests[msg.Method]
	if h == nil {
		return nil, errorf(codeMethodNotFound, "method not found: %s", msg.Method)
	}
	return h(s, msg.Params)
}

func (s *Server) notification(msg *incoming) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Printf("panic in %s: %v\n%s", msg.Method, r, debug.Stack())
		}
	}()
	if !s.initialized || s.shutdown {
		s.log.Printf("dropped %s (not initialized or shut down)", msg.Method)
		return
	}
	var err error
	switch msg.Method {
	case "initialized":
	case "textDocument/didOpen":
		err = s.didOpen(msg.Params)
	case "textDocument/didChange":
		err = s.didChange(msg.Params)
	case "textDocument/didClose":
		err = s.didClose(msg.Params)
	case "textDocument/didSave":
		err = s.didSave(msg.Params)
	default:
		// $/cancelRequest, $/setTrace and anything unknown: ignored, never
		// answered.
	}
	if err != nil {
		s.log.Printf("%s: %v", msg.Method, err)
	}
}

func decodeParams[T any](raw json.RawMessage) (T, error) {
	var v T
	if len(raw) == 0 {
		return v, errorf(codeInvalidParams, "missing params")
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, errorf(codeInvalidParams, "invalid params: %v", err)
	}
	return v, nil
}

func (s *Server) initialize(raw json.RawMessage) (any, error) {
	if len(raw) > 0 {
		p, err := decodeParams[InitializeParams](raw)
		if err != nil {
			return nil, err
		}
		if p.ClientInfo != nil {
			s.log.Printf("client %s %s", p.ClientInfo.Name, p.ClientInfo.Version)
		}
	}
	s.initialized = true
	return InitializeResult{
		Capabilities: ServerCapabilities{
			PositionEncoding:           "utf-16",
			TextDocumentSync:           TextDocumentSyncOptions{OpenClose: true, Change: SyncIncremental, Save: SaveOptions{IncludeText: false}},
			HoverProvider:              true,
			CompletionProvider:         &CompletionOptions{},
			DefinitionProvider:         true,
			DocumentFormattingProvider: true,
			DocumentSymbolProvider:     true,
		},
		ServerInfo: ServerInfo{Name: "rolltplc", Version: s.opts.Version},
	}, nil
}

// uriToPath returns the compiler's name for a document: the file path of a
// file: URI, or the URI itself for other schemes (unsaved buffers).
func uriToPath(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "file" || u.Path == "" {
		return uri
	}
	return filepath.Clean(filepath.FromSlash(u.Path))
}

// pathToURI is the file: URI of an absolute path.
func pathToURI(p string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(p)}).String()
}

func (s *Server) didOpen(raw json.RawMessage) error {
	p, err := decodeParams[DidOpenTextDocumentParams](raw)
	if err != nil {
		return err
	}
	d := &document{uri: p.TextDocument.URI, path: uriToPath(p.TextDocument.URI), version: p.TextDocument.Version}
	d.setText([]byte(p.TextDocument.Text))
	s.docs[d.uri] = d
	s.changed(d)
	return nil
}

func (s *Server) didChange(raw json.RawMessage) error {
	p, err := decodeParams[DidChangeTextDocumentParams](raw)
	if err != nil {
		return err
	}
	d := s.docs[p.TextDocument.URI]
	if d == nil {
		return fmt.Errorf("%s is not open", p.TextDocument.URI)
	}
	for _, ch := range p.ContentChanges {
		d.apply(ch)
	}
	d.version = p.TextDocument.Version
	s.changed(d)
	return nil
}

func (s *Server) didSave(raw json.RawMessage) error {
	p, err := decodeParams[DidSaveTextDocumentParams](raw)
	if err != nil {
		return err
	}
	d := s.docs[p.TextDocument.URI]
	if d == nil {
		return fmt.Errorf("%s is not open", p.TextDocument.URI)
	}
	if p.Text != nil {
		d.setText([]byte(*p.Text))
	}
	s.changed(d)
	return nil
}

func (s *Server) didClose(raw json.RawMessage) error {
	p, err := decodeParams[DidCloseTextDocumentParams](raw)
	if err != nil {
		return err
	}
	d := s.docs[p.TextDocument.URI]
	if d == nil {
		return nil
	}
	delete(s.docs, d.uri)
	s.dropDirty(d.uri)
	// Clear what was published for it; documents importing it now read
	// the file from disk.
	s.out.notify("textDocument/publishDiagnostics", PublishDiagnosticsParams{URI: d.uri, Diagnostics: []Diagnostic{}})
	s.markDependents(d)
	return nil
}

// changed schedules d, then every open document that imports it, for
// checking. Checks run when no message is waiting, or before the next
// request, so a burst of edits costs one compilation.
func (s *Server) changed(d *document) {
	s.markDirty(d.uri)
	s.markDependents(d)
}

func (s *Server) markDependents(d *document) {
	var deps []string
	for uri, o := range s.docs {
		if o != d && o.res != nil && o.res.Info != nil && o.res.Info.File(d.path) != nil {
			deps = append(deps, uri)
		}
	}
	sort.Strings(deps)
	for _, uri := range deps {
		s.markDirty(uri)
	}
}

func (s *Server) markDirty(uri string) {
	for _, u := range s.dirty {
		if u == uri {
			return
		}
	}
	s.dirty = append(s.dirty, uri)
}

func (s *Server) dropDirty(uri string) {
	for i, u := range s.dirty {
		if u == uri {
			s.dirty = append(s.dirty[:i], s.dirty[i+1:]...)
			return
		}
	}
}

// flush checks every document scheduled for it and publishes diagnostics.
func (s *Server) flush() {
	for len(s.dirty) > 0 {
		uri := s.dirty[0]
		s.dirty = s.dirty[1:]
		if d := s.docs[uri]; d != nil {
			s.check(d)
		}
	}
}

// positionDoc decodes TextDocumentPositionParams and returns the open
// document and the byte offset of the position.
func (s *Server) positionDoc(raw json.RawMessage) (*document, int, error) {
	p, err := decodeParams[TextDocumentPositionParams](raw)
	if err != nil {
		return nil, 0, err
	}
	d, err := s.lookupDoc(p.TextDocument.URI)
	if err != nil {
		return nil, 0, err
	}
	return d, d.offset(p.Position), nil
}
