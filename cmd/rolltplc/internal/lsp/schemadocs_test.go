package lsp

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler"
	"github.com/rolltpl/rolltpl/stdlib"
)

func TestSchemaKeyDoc(t *testing.T) {
	set, diags := compiler.LoadSchemas(stdlib.Schemas())
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	for _, tc := range []struct{ model, side, key, want string }{
		{"qwen2", "hf", "hidden_size", "`hidden_size: int = "},
		{"qwen2_vl", "hf", "text_config.hidden_size", "`hidden_size: int"},
		{"", "mca", "num_query_groups", "`num_query_groups: int?"},
	} {
		got, ok := SchemaKeyDoc(set, tc.model, tc.side, tc.key)
		if !ok || !strings.HasPrefix(got, tc.want) {
			t.Errorf("SchemaKeyDoc(%q, %q, %q) = %q, %v; want prefix %q", tc.model, tc.side, tc.key, got, ok, tc.want)
		}
	}
	if _, ok := SchemaKeyDoc(set, "qwen2", "hf", "no_such_key"); ok {
		t.Error("unknown key documented")
	}
	if _, ok := SchemaKeyDoc(nil, "qwen2", "hf", "hidden_size"); ok {
		t.Error("key documented without schemas")
	}
}

// TestUserSchema: a schema in the user's files (here an import, as
// `rolltplc schema infer` writes one) is used like a stdlib schema: a
// misspelled key is an unknown-hf-key error with a did-you-mean,
// completion offers the schema's keys and hover documents them.
func TestUserSchema(t *testing.T) {
	libDir := filepath.Join(t.TempDir(), "lib")
	c := newInitialized(t, Options{LibDir: libDir})
	dir := t.TempDir()
	schemaURI, tmplURI := pathToURI(filepath.Join(dir, "acme_schema.rolltpl")), pathToURI(filepath.Join(dir, "acme.rolltpl"))
	schemaText := "schema acme {\n    use hf_file\n    # Width of the residual stream.\n    hidden_size: int\n    # Number of decoder layers.\n    num_hidden_layers: int\n    acme_router_width: int = 64\n}\n"
	c.open(schemaURI, schemaText)
	if got := c.diagnostics(schemaURI, 1); len(got.Diagnostics) != 0 {
		t.Errorf("schema file: %+v, want no diagnostics", got.Diagnostics)
	}
	// The stdlib fragment it uses is one definition away, in the library
	// folder's schema/.
	var loc []Location
	c.call("textDocument/definition", TextDocumentPositionParams{TextDocument: TextDocumentIdentifier{URI: schemaURI}, Position: posOf(t, schemaText, "use hf_file", 5)}, &loc)
	if len(loc) != 1 || loc[0].URI != pathToURI(filepath.Join(libDir, "schema", "common.rolltpl")) {
		t.Errorf("definition of a stdlib schema: %+v", loc)
	} else if b, err := os.ReadFile(filepath.Join(libDir, "schema", "common.rolltpl")); err != nil || !strings.Contains(string(b), "schema hf_file") {
		t.Errorf("library schema file not written: %v", err)
	}
	tmpl := "import \"acme_schema\"\nimport \"common\"\nimport \"parallel\"\n\ntemplate acme {\n    layer_prefix = \"model.layers.\"\n" +
		"    config {\n        hidden_size -> hidden_size\n        num_hiden_layers -> num_layers\n        \n    }\n    weights { use embeddings }\n    parallel { use default }\n}\n"
	c.open(tmplURI, tmpl)
	got := c.diagnostics(tmplURI, 1)
	var codes []string
	for _, d := range got.Diagnostics {
		codes = append(codes, fmt.Sprint(d.Code))
		if fmt.Sprint(d.Code) == "unknown-hf-key" && !strings.Contains(d.Message, `Did you mean "num_hidden_layers"?`) {
			t.Errorf("unknown-hf-key without the did-you-mean: %q", d.Message)
		}
	}
	if diff := cmp.Diff([]string{"unknown-hf-key"}, codes); diff != "" {
		t.Errorf("template diagnostics (-want +got):\n%s\n%+v", diff, got.Diagnostics)
	}
	var list CompletionList
	c.call("textDocument/completion", TextDocumentPositionParams{TextDocument: TextDocumentIdentifier{URI: tmplURI},
		Position: posOf(t, tmpl, "num_layers\n        \n", len("num_layers\n        "))}, &list)
	i := slices.IndexFunc(list.Items, func(it CompletionItem) bool { return it.Label == "acme_router_width" })
	if i < 0 {
		t.Fatalf("completion does not offer the user schema's key acme_router_width: %d items", len(list.Items))
	}
	if doc := list.Items[i].Documentation; doc == nil || doc.Value != "`acme_router_width: int = 64`" {
		t.Errorf("completion item documentation %+v", doc)
	}
	h := hoverAt(t, c, tmplURI, posOf(t, tmpl, "hidden_size ->", 2))
	if h == nil || !strings.Contains(h.Contents.Value, "`hidden_size: int`\n\nWidth of the residual stream.") {
		t.Errorf("hover on a user schema key: %+v", h)
	}
}

// TestSchemaTypeCompletion: after a field's colon in a schema, completion
// offers the basic types and the schemas the file sees (its own and the
// stdlib's), not the schema being written.
func TestSchemaTypeCompletion(t *testing.T) {
	c := newInitialized(t, Options{})
	uri := pathToURI(filepath.Join(t.TempDir(), "s.rolltpl"))
	text := "schema acme_vision {\n    depth: int\n}\n\nschema acme {\n    vision_config: \n}\n"
	c.open(uri, text)
	c.diagnostics(uri, 1)
	var list CompletionList
	c.call("textDocument/completion", TextDocumentPositionParams{TextDocument: TextDocumentIdentifier{URI: uri},
		Position: posOf(t, text, "vision_config: ", len("vision_config: "))}, &list)
	var labels []string
	for _, it := range list.Items {
		labels = append(labels, it.Label)
	}
	for _, want := range []string{"int", "list", "acme_vision", "qwen2_vl_vision"} {
		if !slices.Contains(labels, want) {
			t.Errorf("completion lacks %q: %v", want, labels)
		}
	}
	if slices.Contains(labels, "acme") {
		t.Errorf("completion offers the schema being written")
	}
	// A field type naming a schema is bound: hover shows that schema.
	done := strings.Replace(text, "vision_config: \n", "vision_config: acme_vision\n", 1)
	c.notify("textDocument/didChange", DidChangeTextDocumentParams{TextDocument: VersionedTextDocumentIdentifier{URI: uri, Version: 2},
		ContentChanges: []TextDocumentContentChangeEvent{{Text: done}}})
	if got := c.diagnostics(uri, 2); len(got.Diagnostics) != 0 {
		t.Errorf("diagnostics %+v, want none", got.Diagnostics)
	}
	h := hoverAt(t, c, uri, posOf(t, done, ": acme_vision", 4))
	if h == nil || !strings.Contains(h.Contents.Value, "**schema block** `acme_vision`") {
		t.Errorf("hover on a field type: %+v", h)
	}
}
