package parser

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/lang/langtest"
)

// TestGrammarGolden pins the grammar: any change to the AST's grammar tags
// shows up in testdata/grammar.ebnf in review.
func TestGrammarGolden(t *testing.T) {
	path := filepath.Join("testdata", "grammar.ebnf")
	got := Grammar() + "\n"
	if langtest.Update() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("grammar changed (-golden +parser); run with %s=1 and update lang/spec.md:\n%s", langtest.UpdateEnv, diff)
	}
}

// TestSpecGrammar checks that the grammar section of lang/spec.md is the
// parser's grammar.
func TestSpecGrammar(t *testing.T) {
	spec, err := os.ReadFile(filepath.Join("..", "spec.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- grammar:begin -->\\s*```ebnf\\n(.*?)```\\s*<!-- grammar:end -->").FindSubmatch(spec)
	if m == nil {
		t.Fatal("lang/spec.md has no grammar section between <!-- grammar:begin --> and <!-- grammar:end -->")
	}
	if diff := cmp.Diff(Grammar()+"\n", string(m[1])); diff != "" {
		t.Errorf("lang/spec.md grammar differs from the parser's (-parser +spec):\n%s", diff)
	}
}

// TestSpecExamplesParse parses every ```rolltpl block of lang/spec.md.
func TestSpecExamplesParse(t *testing.T) {
	spec, err := os.ReadFile(filepath.Join("..", "spec.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```rolltpl\\n(.*?)```").FindAllSubmatchIndex(spec, -1)
	if len(blocks) < 10 {
		t.Fatalf("found %d rolltpl examples in lang/spec.md, want at least 10", len(blocks))
	}
	for _, b := range blocks {
		src := spec[b[2]:b[3]]
		line := strings.Count(string(spec[:b[2]]), "\n") + 1
		if _, diags := ParseFile("spec.md", src); len(diags) > 0 {
			for _, d := range diags {
				t.Errorf("spec.md example at line %d: %s", line, d.Error())
			}
		}
	}
}
