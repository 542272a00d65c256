package parser

import (
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/alecthomas/participle/v2/lexer"
	"github.com/google/go-cmp/cmp"
)

// lexAll returns every token def produces for src, up to and including
// EOF, or the error.
func lexAll(t testing.TB, def lexer.Definition, src string) []lexer.Token {
	lx, err := def.(lexer.StringDefinition).LexString("f.rolltpl", src)
	if err != nil {
		t.Fatal(err)
	}
	var out []lexer.Token
	for {
		tok, err := lx.Next()
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		out = append(out, tok)
		if tok.EOF() {
			return out
		}
	}
}

// lexerCases are inputs at the edges of the token rules.
var lexerCases = []string{
	"", "a", "# c\r\n#", " \t\r\n\f\v x", `"a\"b" "a\` + "\n" + `"x` + "\n", `"\u00e9\x41\n"`, `"a\`, `"é"`, "\"\xff\\\xff\"",
	"1 1.5 1.5e3 1e5 1.e5 1e 1e+ 1.5e-2x 007 1..2", "a_b9 _ 9a", "->-->==!=<=>=//&&||&|!", "-+*/%<>=!(){}[],.:?|",
	"é😀\xff\x80 @$~`'^\\;", "template t { layer_prefix = \"x\" }",
}

// TestLexerMatchesRegexp: the hand-written lexer produces exactly the
// tokens (types, text, positions) of the regular-expression rules, on edge
// cases, on every test and stdlib file, and on random cuts of them.
func TestLexerMatchesRegexp(t *testing.T) {
	inputs := append([]string{}, lexerCases...)
	for _, pattern := range []string{"../../stdlib/templates/*.rolltpl", "../../compiler/testdata/errors/*.rolltpl", "testdata/*.rolltpl"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			inputs = append(inputs, string(b))
		}
	}
	if len(inputs) < len(lexerCases)+10 {
		t.Fatalf("only %d inputs", len(inputs))
	}
	rng := rand.New(rand.NewSource(1))
	alphabet := "\"\\#\n\r\t .e-+0189aZ_é\xff!=<>/&|{}()[],:?@"
	for i := 0; i < 2000; i++ {
		b := make([]byte, rng.Intn(40))
		for j := range b {
			b[j] = alphabet[rng.Intn(len(alphabet))]
		}
		inputs = append(inputs, string(b))
	}
	for _, src := range inputs {
		want, got := lexAll(t, regexLexer, src), lexAll(t, Lexer, src)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("%q: tokens differ (-regexp +hand-written):\n%s", src, diff)
		}
	}
}

// FuzzLexer compares the two lexers on any input.
func FuzzLexer(f *testing.F) {
	for _, c := range lexerCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if diff := cmp.Diff(lexAll(t, regexLexer, src), lexAll(t, Lexer, src)); diff != "" {
			t.Fatalf("%q: tokens differ (-regexp +hand-written):\n%s", src, diff)
		}
	})
}
