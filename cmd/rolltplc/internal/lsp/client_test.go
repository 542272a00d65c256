package lsp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rolltpl/rolltpl/stdlib"
)

// wireMsg is any message from the server.
type wireMsg struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *rpcError       `json:"error"`
	raw    []byte
}

// testClient drives a Server in process through the real framing, over two
// pipes.
type testClient struct {
	t      testing.TB
	w      *io.PipeWriter
	in     chan wireMsg
	queue  []wireMsg // notifications read while waiting for a response
	nextID int
	exit   chan int
}

const waitTimeout = 20 * time.Second

func newTestServer(t testing.TB, opts Options) *testClient {
	t.Helper()
	if opts.Lib == nil {
		opts.Lib = stdlib.Templates()
	}
	if opts.SchemaLib == nil {
		opts.SchemaLib = stdlib.Schemas()
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.LibDir == "" {
		opts.LibDir = filepath.Join(t.TempDir(), "lib")
	}
	toServerR, toServerW := io.Pipe()
	fromServerR, fromServerW := io.Pipe()
	c := &testClient{t: t, w: toServerW, in: make(chan wireMsg, 1024), exit: make(chan int, 1)}
	srv := New(opts)
	go func() {
		code := srv.Serve(toServerR, fromServerW)
		fromServerW.Close()
		c.exit <- code
	}()
	go func() {
		fr := newFrameReader(fromServerR)
		for {
			body, err := fr.next()
			if err != nil {
				var fe *frameError
				if errors.As(err, &fe) {
					panic("server wrote a malformed frame: " + err.Error())
				}
				close(c.in)
				return
			}
			var m wireMsg
			if err := json.Unmarshal(body, &m); err != nil {
				panic(fmt.Sprintf("server wrote invalid JSON: %v: %s", err, body))
			}
			m.raw = body
			c.in <- m
		}
	}()
	t.Cleanup(func() {
		toServerW.Close()
		fromServerR.Close()
	})
	return c
}

// newInitialized returns a client past initialize/initialized.
func newInitialized(t testing.TB, opts Options) *testClient {
	c := newTestServer(t, opts)
	if m := c.request("initialize", map[string]any{"capabilities": map[string]any{}}); m.Error != nil {
		t.Fatalf("initialize: %v", m.Error)
	}
	c.notify("initialized", map[string]any{})
	return c
}

func (c *testClient) sendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.w.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *testClient) send(v any) {
	c.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(fmt.Appendf(nil, "Content-Length: %d\r\n\r\n%s", len(body), body))
}

func (c *testClient) notify(method string, params any) {
	c.t.Helper()
	c.send(map[string]any{"jsonrpc": "2.0", "method": method, "params": params})
}

// request sends a request and waits for its response.
func (c *testClient) request(method string, params any) wireMsg {
	c.t.Helper()
	c.nextID++
	id := c.nextID
	m := map[string]any{"jsonrpc": "2.0", "id": id, "method": method}
	if params != nil {
		m["params"] = params
	}
	c.send(m)
	return c.response(fmt.Sprint(id))
}

// response waits for the response with the given raw id.
func (c *testClient) response(id string) wireMsg {
	c.t.Helper()
	for {
		m := c.read()
		if m.Method == "" {
			if string(m.ID) != id {
				c.t.Fatalf("response for id %s while waiting for %s: %s", m.ID, id, m.raw)
			}
			return m
		}
		c.queue = append(c.queue, m)
	}
}

// call sends a request, fails on an error response, and decodes the result.
func (c *testClient) call(method string, params, result any) {
	c.t.Helper()
	m := c.request(method, params)
	if m.Error != nil {
		c.t.Fatalf("%s: error %v", method, m.Error)
	}
	if result != nil {
		if err := json.Unmarshal(m.Result, result); err != nil {
			c.t.Fatalf("%s: decoding %s: %v", method, m.Result, err)
		}
	}
}

func (c *testClient) read() wireMsg {
	c.t.Helper()
	select {
	case m, ok := <-c.in:
		if !ok {
			c.t.Fatalf("the server closed its output")
		}
		return m
	case <-time.After(waitTimeout):
		c.t.Fatalf("timed out waiting for the server")
	}
	panic("unreachable")
}

// next returns the next message, queued notifications first.
func (c *testClient) next() wireMsg {
	c.t.Helper()
	if len(c.queue) > 0 {
		m := c.queue[0]
		c.queue = c.queue[1:]
		return m
	}
	return c.read()
}

// diagnostics waits for the publishDiagnostics of uri (with the version,
// when version >= 0).
func (c *testClient) diagnostics(uri string, version int32) PublishDiagnosticsParams {
	c.t.Helper()
	for {
		m := c.next()
		if m.Method != "textDocument/publishDiagnostics" {
			if m.Method == "" {
				c.t.Fatalf("unexpected response while waiting for diagnostics: %s", m.raw)
			}
			continue
		}
		var p PublishDiagnosticsParams
		if err := json.Unmarshal(m.Params, &p); err != nil {
			c.t.Fatal(err)
		}
		if p.URI != uri {
			continue
		}
		if version >= 0 && (p.Version == nil || *p.Version != version) {
			continue
		}
		if p.Diagnostics == nil {
			c.t.Fatalf("diagnostics is null, want a list: %s", m.raw)
		}
		return p
	}
}

// waitExit waits for Serve to return and gives its exit code.
func (c *testClient) waitExit() int {
	c.t.Helper()
	select {
	case code := <-c.exit:
		return code
	case <-time.After(waitTimeout):
		c.t.Fatalf("the server did not exit")
	}
	return -1
}

func (c *testClient) open(uri, text string) {
	c.t.Helper()
	c.notify("textDocument/didOpen", DidOpenTextDocumentParams{TextDocument: TextDocumentItem{URI: uri, LanguageID: "rolltpl", Version: 1, Text: text}})
}

func pos(line, char int) TextDocumentPositionParams {
	return TextDocumentPositionParams{Position: Position{line, char}}
}

func (c *testClient) at(uri string, line, char int) TextDocumentPositionParams {
	p := pos(line, char)
	p.TextDocument.URI = uri
	return p
}

// stdlibFile returns the absolute path and text of a stdlib template on disk.
func stdlibFile(t testing.TB, name string) (string, string) {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "..", "..", "stdlib", "templates", name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, string(b)
}
