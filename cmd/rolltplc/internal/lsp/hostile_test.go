package lsp

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestHostileDocuments: the server survives and answers for documents
// that killed or hung it: 100 000 nested parentheses (a stack overflow),
// an import that is a FIFO (a read that never ends); and it places
// diagnostics after a byte order mark in the client's UTF-16 columns,
// where the mark is one character.
func TestHostileDocuments(t *testing.T) {
	c := newInitialized(t, Options{})
	dir := t.TempDir()

	deepURI := pathToURI(filepath.Join(dir, "deep.rolltpl"))
	deep := "template t {\n    layer_prefix = " + strings.Repeat("(", 100000) + "\"x\"" + strings.Repeat(")", 100000) + "\n}\n"
	c.open(deepURI, deep)
	got := c.diagnostics(deepURI, 1)
	if codes := pick(got.Diagnostics, "nesting-too-deep"); len(codes) != 1 || codes[0].Range.Start.Line != 1 {
		t.Errorf("deep document: %+v, want one nesting-too-deep on line 1", got.Diagnostics)
	}
	var syms []DocumentSymbol
	c.call("textDocument/documentSymbol", DocumentSymbolParams{TextDocument: TextDocumentIdentifier{URI: deepURI}}, &syms)
	c.request("textDocument/hover", c.at(deepURI, 1, 40))

	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.rolltpl"), 0o644); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	impPath := filepath.Join(dir, "imp.rolltpl")
	if err := os.WriteFile(impPath, []byte("import \"pipe\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	impURI := pathToURI(impPath)
	c.open(impURI, "import \"pipe\"\n")
	got = c.diagnostics(impURI, 1)
	if codes := pick(got.Diagnostics, "bad-import"); len(codes) != 1 || !strings.Contains(got.Diagnostics[0].Message, "a named pipe (FIFO), not a regular file") {
		t.Errorf("FIFO import: %+v, want one bad-import saying it is a named pipe", got.Diagnostics)
	}

	bomURI := pathToURI(filepath.Join(dir, "bom.rolltpl"))
	c.open(bomURI, "\ufefftemplate t { layer_prefix = 1 + }\n")
	got = c.diagnostics(bomURI, 1)
	want := []codeRange{{"syntax-error", Range{Position{0, 31}, Position{0, 32}}}}
	if diff := cmp.Diff(want, pick(got.Diagnostics, "syntax-error")); diff != "" {
		t.Errorf("after a BOM (-want +got):\n%s", diff)
	}
}
