package lsp

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/compiler/pyemit"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/stdlib"
)

func TestLifecycle(t *testing.T) {
	c := newTestServer(t, Options{Version: "test"})

	if m := c.request("textDocument/hover", c.at("file:///x.rolltpl", 0, 0)); m.Error == nil || m.Error.Code != codeServerNotInitialized {
		t.Errorf("request before initialize: got %s, want error %d", m.raw, codeServerNotInitialized)
	}
	// Notifications before initialize are dropped, never answered.
	c.open("file:///x.rolltpl", "template {")

	var res InitializeResult
	c.call("initialize", map[string]any{"processId": nil, "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "test"}}, &res)
	want := InitializeResult{
		Capabilities: ServerCapabilities{
			PositionEncoding:           "utf-16",
			TextDocumentSync:           TextDocumentSyncOptions{OpenClose: true, Change: SyncIncremental, Save: SaveOptions{}},
			HoverProvider:              true,
			CompletionProvider:         &CompletionOptions{},
			DefinitionProvider:         true,
			DocumentFormattingProvider: true,
			DocumentSymbolProvider:     true,
		},
		ServerInfo: ServerInfo{Name: "rolltplc", Version: "test"},
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("initialize result (-want +got):\n%s", diff)
	}
	c.notify("initialized", map[string]any{})

	if m := c.request("initialize", map[string]any{}); m.Error == nil || m.Error.Code != codeInvalidRequest {
		t.Errorf("second initialize: got %s, want error %d", m.raw, codeInvalidRequest)
	}
	m := c.request("workspace/symbol", map[string]any{"query": ""})
	if m.Error == nil || m.Error.Code != codeMethodNotFound || string(m.ID) != "4" {
		t.Errorf("unknown method: got %s, want error %d for id 4", m.raw, codeMethodNotFound)
	}
	// Unknown notifications, $/ notifications and notifications with bad
	// params get no answer: the next message is the next response.
	c.notify("workspace/didChangeConfiguration", map[string]any{})
	c.notify("$/cancelRequest", map[string]any{"id": 1})
	c.notify("$/setTrace", map[string]any{"value": "off"})
	c.notify("textDocument/didChange", map[string]any{"textDocument": 5})
	c.notify("textDocument/didChange", DidChangeTextDocumentParams{TextDocument: VersionedTextDocumentIdentifier{URI: "file:///not-open.rolltpl", Version: 2}})
	if m := c.request("textDocument/hover", map[string]any{"textDocument": 5}); m.Error == nil || m.Error.Code != codeInvalidParams {
		t.Errorf("bad params: got %s, want error %d", m.raw, codeInvalidParams)
	}
	// String ids are echoed unchanged.
	c.send(map[string]any{"jsonrpc": "2.0", "id": "abc", "method": "no/such"})
	if m := c.response(`"abc"`); m.Error == nil || m.Error.Code != codeMethodNotFound {
		t.Errorf("string id: got %s", m.raw)
	}

	sd := c.request("shutdown", nil)
	if sd.Error != nil || !strings.Contains(string(sd.raw), `"result":null`) {
		t.Errorf("shutdown: got %s, want a response with \"result\":null", sd.raw)
	}
	if m := c.request("textDocument/hover", c.at("file:///x.rolltpl", 0, 0)); m.Error == nil || m.Error.Code != codeInvalidRequest {
		t.Errorf("request after shutdown: got %s, want error %d", m.raw, codeInvalidRequest)
	}
	c.notify("exit", nil)
	if code := c.waitExit(); code != 0 {
		t.Errorf("exit after shutdown: code %d, want 0", code)
	}
}

func TestExitCodes(t *testing.T) {
	t.Run("exit without shutdown", func(t *testing.T) {
		c := newInitialized(t, Options{})
		c.notify("exit", nil)
		if code := c.waitExit(); code != 1 {
			t.Errorf("code %d, want 1", code)
		}
	})
	t.Run("exit before initialize", func(t *testing.T) {
		c := newTestServer(t, Options{})
		c.notify("exit", nil)
		if code := c.waitExit(); code != 1 {
			t.Errorf("code %d, want 1", code)
		}
	})
	t.Run("input closed", func(t *testing.T) {
		c := newInitialized(t, Options{})
		c.w.Close()
		if code := c.waitExit(); code != 1 {
			t.Errorf("code %d, want 1", code)
		}
	})
	t.Run("input closed after shutdown", func(t *testing.T) {
		c := newInitialized(t, Options{})
		c.call("shutdown", nil, nil)
		c.w.Close()
		if code := c.waitExit(); code != 0 {
			t.Errorf("code %d, want 0", code)
		}
	})
}

// expectedDiagnostics computes what `rolltplc check --diags=json` reports
// for text, converted to the protocol independently of the server: UTF-16
// characters counted with unicode/utf16 from the JSON byte offsets.
func expectedDiagnostics(t *testing.T, path, text string) []Diagnostic {
	t.Helper()
	res := compiler.Compile([]string{path}, compiler.Options{Lib: stdlib.Templates(), Overlay: map[string][]byte{path: []byte(text)}, SchemaLib: compiler.LoadSchemaLibrary(stdlib.Schemas()), Backend: pyemit.Check})
	conv := func(p diag.JSONPos) Position {
		lineStart := strings.LastIndex(text[:p.Offset], "\n") + 1
		if got := strings.Count(text[:p.Offset], "\n") + 1; got != p.Line {
			t.Fatalf("JSON line %d disagrees with offset %d (line %d)", p.Line, p.Offset, got)
		}
		return Position{Line: p.Line - 1, Character: len(utf16.Encode([]rune(text[lineStart:p.Offset])))}
	}
	out := []Diagnostic{}
	for _, j := range (&diag.Printer{}).ToJSON(res.Diags) {
		if j.Path != filepath.ToSlash(path) {
			continue
		}
		sev := map[string]int{"error": SeverityError, "warning": SeverityWarning}[j.Severity]
		if sev == 0 {
			sev = SeverityInformation
		}
		msg := j.Summary
		if j.Detail != "" {
			msg += ": " + j.Detail
		}
		out = append(out, Diagnostic{Range: Range{conv(j.Start), conv(j.End)}, Severity: sev, Code: j.Code, Source: "rolltplc", Message: msg})
	}
	return out
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type codeRange struct {
	Code  string
	Range Range
}

// pick returns the code and range of the diagnostics with the given codes.
func pick(ds []Diagnostic, codes ...string) []codeRange {
	var out []codeRange
	for _, d := range ds {
		if slices.Contains(codes, d.Code) {
			out = append(out, codeRange{d.Code, d.Range})
		}
	}
	return out
}

func TestDiagnosticsMatchCheck(t *testing.T) {
	c := newInitialized(t, Options{})
	path := filepath.Join(t.TempDir(), "three_mistakes.rolltpl")
	uri := pathToURI(path)
	text := readTestdata(t, "three_mistakes.rolltpl")

	c.open(uri, text)
	got := c.diagnostics(uri, 1)
	if diff := cmp.Diff(expectedDiagnostics(t, path, text), got.Diagnostics); diff != "" {
		t.Errorf("diagnostics differ from rolltplc check (-want +got):\n%s", diff)
	}
	// The three mistakes, pinned (0-based lines and UTF-16 characters).
	want := []codeRange{
		{"syntax-error", Range{Position{9, 35}, Position{9, 36}}},
		{"unknown-op-kind", Range{Position{19, 8}, Position{19, 13}}},
		{"op-arity", Range{Position{29, 8}, Position{29, 105}}},
	}
	var first []codeRange
	for _, code := range []string{"syntax-error", "unknown-op-kind", "op-arity"} {
		if p := pick(got.Diagnostics, code); len(p) > 0 {
			first = append(first, p[0])
		}
	}
	if diff := cmp.Diff(want, first); diff != "" {
		t.Errorf("ranges (-want +got):\n%s", diff)
	}

	// Fix the three mistakes with incremental edits, one per version.
	lines := strings.Split(text, "\n")
	edit := func(version int32, line int, old, new string) {
		t.Helper()
		col := strings.Index(lines[line], old)
		if col < 0 {
			t.Fatalf("%q not on line %d", old, line)
		}
		c.notify("textDocument/didChange", DidChangeTextDocumentParams{
			TextDocument: VersionedTextDocumentIdentifier{URI: uri, Version: version},
			ContentChanges: []TextDocumentContentChangeEvent{{
				Range: &Range{Position{line, col}, Position{line, col + len(old)}}, Text: new}},
		})
		lines[line] = strings.Replace(lines[line], old, new, 1)
	}
	edit(2, 9, "}", `"output_layer.weight"`)
	got = c.diagnostics(uri, 2)
	if diff := cmp.Diff(expectedDiagnostics(t, path, strings.Join(lines, "\n")), got.Diagnostics); diff != "" {
		t.Errorf("after fixing the syntax error (-want +got):\n%s", diff)
	}
	if n := len(pick(got.Diagnostics, "syntax-error")); n != 0 {
		t.Errorf("after fixing the syntax error: %d syntax errors remain", n)
	}
	edit(3, 19, "renam", "rename")
	edit(4, 29, `".self_attn.k_proj.weight"`, `".self_attn.k_proj.weight", ".self_attn.v_proj.weight"`)
	got = c.diagnostics(uri, 4)
	if len(got.Diagnostics) != 0 {
		t.Errorf("after fixing everything: %+v, want an empty list", got.Diagnostics)
	}
	if want := expectedDiagnostics(t, path, strings.Join(lines, "\n")); len(want) != 0 {
		t.Errorf("the compiler still reports %+v", want)
	}

	// Break it again with a full-text change, then close: an empty list
	// without a version clears the editor.
	c.notify("textDocument/didChange", DidChangeTextDocumentParams{
		TextDocument:   VersionedTextDocumentIdentifier{URI: uri, Version: 5},
		ContentChanges: []TextDocumentContentChangeEvent{{Text: text}},
	})
	got = c.diagnostics(uri, 5)
	if diff := cmp.Diff(expectedDiagnostics(t, path, text), got.Diagnostics); diff != "" {
		t.Errorf("after a full change back (-want +got):\n%s", diff)
	}
	c.notify("textDocument/didClose", DidCloseTextDocumentParams{TextDocument: TextDocumentIdentifier{URI: uri}})
	got = c.diagnostics(uri, -1)
	if got.Version != nil || len(got.Diagnostics) != 0 {
		t.Errorf("after close: %+v, want an empty list without version", got)
	}
}

// TestPythonBackendDiagnostic: what `rolltplc build` cannot emit is shown
// as you type, where `rolltplc check` reports it: fused experts whose ROLL
// template class needs VisionTemplate's key prefixing, at the template's
// name.
func TestPythonBackendDiagnostic(t *testing.T) {
	c := newInitialized(t, Options{})
	path := filepath.Join(t.TempDir(), "fused.rolltpl")
	uri := pathToURI(path)
	text := `import "parallel"

template fused {
    layer_prefix  = "model.layers."
    expert_prefix = ".mlp.experts."
    config { num_experts -> num_moe_experts }
    weights {
        split_experts(transpose = true) "down_proj" -> ".linear_fc2.weight"
    }
    parallel { row ".linear_fc2.weight" }
}
`
	c.open(uri, text)
	got := c.diagnostics(uri, 1)
	if diff := cmp.Diff(expectedDiagnostics(t, path, text), got.Diagnostics); diff != "" {
		t.Errorf("diagnostics differ from rolltplc check (-want +got):\n%s", diff)
	}
	want := []codeRange{{"python-backend", Range{Position{2, 9}, Position{2, 14}}}}
	if diff := cmp.Diff(want, pick(got.Diagnostics, "python-backend")); diff != "" {
		t.Errorf("python-backend diagnostic (-want +got):\n%s", diff)
	}
}

// TestUTF16 puts multi-byte and astral characters in a comment and before
// the errors on their lines: the ranges must count UTF-16 code units.
func TestUTF16(t *testing.T) {
	text := strings.Join([]string{
		"# 😀 ünïcödé 中文 𝄞: a comment with multi-byte and astral characters",
		"template t {",
		`    layer_prefix = "model.layers."`,
		"    weights {",
		`        rename "😀𝄞é.weight" -> "b.weight"  renam "x" -> "y"`,
		`        qkv "😀.q", "𝄞.k" -> "中.qkv"`,
		"    }",
		"}",
		"",
	}, "\n")
	c := newInitialized(t, Options{})
	path := filepath.Join(t.TempDir(), "utf16.rolltpl")
	uri := pathToURI(path)
	c.open(uri, text)
	got := c.diagnostics(uri, 1)
	// Counted by hand: 😀 and 𝄞 are two UTF-16 units (four bytes), é and 中
	// one (two and three bytes).
	want := []codeRange{
		{"unknown-op-kind", Range{Position{4, 45}, Position{4, 50}}},
		{"op-arity", Range{Position{5, 8}, Position{5, 37}}},
	}
	if diff := cmp.Diff(want, pick(got.Diagnostics, "unknown-op-kind", "op-arity")); diff != "" {
		t.Errorf("UTF-16 ranges (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(expectedDiagnostics(t, path, text), got.Diagnostics); diff != "" {
		t.Errorf("diagnostics differ from rolltplc check (-want +got):\n%s", diff)
	}

	// An incremental edit addressed in UTF-16 after the astral characters:
	// fix "renam" in place.
	c.notify("textDocument/didChange", DidChangeTextDocumentParams{
		TextDocument:   VersionedTextDocumentIdentifier{URI: uri, Version: 2},
		ContentChanges: []TextDocumentContentChangeEvent{{Range: &Range{Position{4, 50}, Position{4, 50}}, Text: "e"}},
	})
	got = c.diagnostics(uri, 2)
	if diff := cmp.Diff(want[1:], pick(got.Diagnostics, "unknown-op-kind", "op-arity")); diff != "" {
		t.Errorf("after the edit (-want +got):\n%s", diff)
	}
}

func TestApplyChanges(t *testing.T) {
	d := &document{path: "x.rolltpl"}
	d.setText([]byte("a😀b\nc中d\n"))
	steps := []struct {
		ch   TextDocumentContentChangeEvent
		want string
	}{
		{TextDocumentContentChangeEvent{Range: &Range{Position{0, 1}, Position{0, 3}}, Text: "X"}, "aXb\nc中d\n"},
		{TextDocumentContentChangeEvent{Range: &Range{Position{1, 2}, Position{1, 2}}, Text: "𝄞"}, "aXb\nc中𝄞d\n"},
		{TextDocumentContentChangeEvent{Range: &Range{Position{1, 4}, Position{2, 0}}, Text: "!\n"}, "aXb\nc中𝄞!\n"},
		// Past the end of a line clamps to the line's end; past the last
		// line to the end of the text.
		{TextDocumentContentChangeEvent{Range: &Range{Position{0, 99}, Position{0, 99}}, Text: "<"}, "aXb<\nc中𝄞!\n"},
		{TextDocumentContentChangeEvent{Range: &Range{Position{9, 0}, Position{9, 0}}, Text: "end"}, "aXb<\nc中𝄞!\nend"},
		// A reversed range is the same range.
		{TextDocumentContentChangeEvent{Range: &Range{Position{0, 2}, Position{0, 1}}, Text: ""}, "ab<\nc中𝄞!\nend"},
		{TextDocumentContentChangeEvent{Text: "whole"}, "whole"},
	}
	for i, s := range steps {
		d.apply(s.ch)
		if string(d.text) != s.want {
			t.Fatalf("step %d: text %q, want %q", i, d.text, s.want)
		}
	}
}

// TestGarbage sends malformed frames and messages, then a valid request,
// which must get its answer; each piece of garbage gets the protocol's error
// answer with a null id, in order, and the server keeps running.
func TestGarbage(t *testing.T) {
	c := newTestServer(t, Options{})
	frame := func(body string) string { return fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body) }
	valid := frame(`{"jsonrpc":"2.0","id":99,"method":"initialize","params":{"capabilities":{}}}`)
	type answer struct {
		ID   string
		Code int
	}
	cases := []struct {
		name string
		raw  string
		want []answer
	}{
		{"non-numeric length", "Content-Length: abc\r\n\r\n", []answer{{"null", codeParseError}}},
		{"negative length", "Content-Length: -5\r\n\r\n", []answer{{"null", codeParseError}}},
		{"huge length", "Content-Length: 99999999999999\r\n\r\n", []answer{{"null", codeParseError}}},
		{"no length", "Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n", []answer{{"null", codeParseError}}},
		{"not a header", "this is not a header\r\n\r\n", []answer{{"null", codeParseError}}},
		{"invalid JSON", frame("hello"), []answer{{"null", codeParseError}}},
		{"truncated JSON", frame(`{"jsonrpc":"2.0","id":1,`), []answer{{"null", codeParseError}}},
		{"batch", frame(`[]`), []answer{{"null", codeInvalidRequest}}},
		{"number", frame(`42`), []answer{{"null", codeInvalidRequest}}},
		{"object id", frame(`{"jsonrpc":"2.0","id":{"a":1},"method":"initialize"}`), []answer{{"null", codeInvalidRequest}}},
		{"wrong version", frame(`{"jsonrpc":"1.0","id":7,"method":"initialize"}`), []answer{{"7", codeInvalidRequest}}},
		{"no method", frame(`{"jsonrpc":"2.0","id":8}`), []answer{{"8", codeInvalidRequest}}},
		{"method not a string", frame(`{"jsonrpc":"2.0","id":9,"method":1}`), []answer{{"9", codeInvalidRequest}}},
		{"scalar params", frame(`{"jsonrpc":"2.0","id":10,"method":"initialize","params":"x"}`), []answer{{"10", codeInvalidRequest}}},
		{"bad notification", frame(`{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":5}}`), nil},
		{"notification with scalar params", frame(`{"jsonrpc":"2.0","method":"initialized","params":3}`), nil},
		{"a response from the client", frame(`{"jsonrpc":"2.0","id":5,"result":null}`), nil},
		{"garbage glued to a frame", "%%%%" + frame(`{"jsonrpc":"2.0","id":11,"method":"x/y"}`), []answer{{"null", codeParseError}, {"11", codeServerNotInitialized}}},
		{"header without body", "Content-Length: 10\r\n" + frame(`{"jsonrpc":"2.0","id":12,"method":"x/y"}`), []answer{{"null", codeParseError}, {"12", codeServerNotInitialized}}},
		{"length too long", "Content-Length: 60\r\n\r\n{\"x\":" + frame(`{"jsonrpc":"2.0","id":13,"method":"x/y"}`), []answer{{"null", codeParseError}, {"13", codeServerNotInitialized}}},
		{"overlong line", strings.Repeat("x", 20000) + frame(`{"jsonrpc":"2.0","id":14,"method":"x/y"}`), []answer{{"null", codeParseError}, {"14", codeServerNotInitialized}}},
		{"binary", "\x00\xff\xfe\r\n\x01\x02\r\n\r\n", []answer{{"null", codeParseError}}},
		{"stray blank lines", "\r\n\r\n\n", nil},
	}
	for _, tc := range cases {
		c.sendRaw([]byte(tc.raw))
		// Each case ends with a marker request, answered in order.
		c.sendRaw([]byte(frame(`{"jsonrpc":"2.0","id":"marker","method":"x/y"}`)))
		var got []answer
		for {
			m := c.read()
			if string(m.ID) == `"marker"` {
				break
			}
			a := answer{ID: string(m.ID)}
			if m.Error != nil {
				a.Code = m.Error.Code
			}
			got = append(got, a)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: answers (-want +got):\n%s", tc.name, diff)
		}
	}
	c.sendRaw([]byte(valid))
	m := c.response("99")
	if m.Error != nil || !strings.Contains(string(m.Result), `"capabilities"`) {
		t.Errorf("valid request after garbage: %s", m.raw)
	}
}

func TestFrameReaderSplitWrites(t *testing.T) {
	// Frames cut at every byte still parse: the reader does not depend on
	// how the input is chunked.
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize"}`
	in := fmt.Sprintf("Content-Length: %d\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n%s", len(body), body)
	fr := newFrameReader(&oneByteReader{s: in + "junk\r\n\r\n" + in})
	got, err := fr.next()
	if err != nil || string(got) != body {
		t.Fatalf("first frame: %q, %v", got, err)
	}
	if _, err := fr.next(); err == nil {
		t.Fatalf("junk: no error")
	} else if _, ok := err.(*frameError); !ok {
		t.Fatalf("junk: %v, want a frame error", err)
	}
	got, err = fr.next()
	if err != nil || string(got) != body {
		t.Fatalf("frame after junk: %q, %v", got, err)
	}
}

type oneByteReader struct{ s string }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func TestPanicBecomesError(t *testing.T) {
	requests["test/panic"] = func(*Server, json.RawMessage) (any, error) { panic("boom") }
	defer delete(requests, "test/panic")
	c := newInitialized(t, Options{})
	m := c.request("test/panic", map[string]any{})
	if m.Error == nil || m.Error.Code != codeInternalError || !strings.Contains(m.Error.Message, "boom") {
		t.Errorf("panicking handler: got %s, want internal error mentioning the panic", m.raw)
	}
	c.call("shutdown", nil, nil)
	c.notify("exit", nil)
	if code := c.waitExit(); code != 0 {
		t.Errorf("exit code %d after a panic, want 0", code)
	}
}

// TestOutOfRangePositions: positions past the end, negative or inside a
// surrogate pair are clamped, never an error.
func TestOutOfRangePositions(t *testing.T) {
	c := newInitialized(t, Options{})
	uri := pathToURI(filepath.Join(t.TempDir(), "x.rolltpl"))
	c.open(uri, "# 😀\ntemplate t {\n    layer_prefix = \"x\"\n}\n")
	for _, p := range []Position{{-5, -5}, {1000, 1000}, {0, 1 << 30}, {0, 3}, {4, 0}} {
		for _, method := range []string{"textDocument/hover", "textDocument/completion", "textDocument/definition"} {
			if m := c.request(method, TextDocumentPositionParams{TextDocument: TextDocumentIdentifier{URI: uri}, Position: p}); m.Error != nil {
				t.Errorf("%s at %+v: %v", method, p, m.Error)
			}
		}
	}
	if m := c.request("textDocument/hover", c.at("file:///not/open.rolltpl", 0, 0)); m.Error == nil || m.Error.Code != codeInvalidParams {
		t.Errorf("hover in a document that is not open: %s", m.raw)
	}
}

// TestDidSaveAndUntitled: didSave (with or without text) re-checks and
// publishes; documents with non-file URIs (unsaved buffers) are checked too.
func TestDidSaveAndUntitled(t *testing.T) {
	c := newInitialized(t, Options{})
	uri := pathToURI(filepath.Join(t.TempDir(), "s.rolltpl"))
	c.open(uri, "mca m { x = 1 }\n")
	if got := c.diagnostics(uri, 1); len(got.Diagnostics) != 0 {
		t.Fatalf("open: %+v", got.Diagnostics)
	}
	broken := "mca m { x = }\n"
	c.notify("textDocument/didSave", DidSaveTextDocumentParams{TextDocument: TextDocumentIdentifier{URI: uri}, Text: &broken})
	if got := c.diagnostics(uri, 1); len(pick(got.Diagnostics, "syntax-error")) != 1 {
		t.Errorf("save with text: %+v, want a syntax error", got.Diagnostics)
	}
	c.notify("textDocument/didSave", DidSaveTextDocumentParams{TextDocument: TextDocumentIdentifier{URI: uri}})
	if got := c.diagnostics(uri, 1); len(pick(got.Diagnostics, "syntax-error")) != 1 {
		t.Errorf("save without text: %+v, want the syntax error again", got.Diagnostics)
	}

	untitled := "untitled:Untitled-1"
	c.open(untitled, "import \"common\"\n\nconfig mine {\n    use lm\n}\n")
	got := c.diagnostics(untitled, 1)
	want := []codeRange{{"unknown-reference", Range{Position{3, 8}, Position{3, 10}}}}
	if diff := cmp.Diff(want, pick(got.Diagnostics, "unknown-reference")); diff != "" {
		t.Errorf("untitled document (-want +got):\n%s", diff)
	}
}
