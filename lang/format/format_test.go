package format_test

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/format"
	"github.com/rolltpl/rolltpl/lang/langtest"
	"github.com/rolltpl/rolltpl/lang/parser"
)

// TestGolden formats the `input` section of each testdata/*.txtar and
// compares the result with its `golden` section, or, for input that must be
// refused, the error with its `error` section. ROLLTPL_UPDATE=1 rewrites
// them.
func TestGolden(t *testing.T) {
	langtest.Run(t, "testdata/*.txtar", func(t *testing.T, c *langtest.Case) {
		input := c.Section(t, "input")
		name := c.Name + ".rolltpl"
		got, err := format.Source(name, input)
		if err != nil {
			if c.Has("golden") {
				t.Fatalf("Source failed: %v", err)
			}
			c.Check(t, "error", []byte(err.Error()))
			return
		}
		if c.Has("error") {
			t.Errorf("Source succeeded; the case expects an error")
		}
		c.Check(t, "golden", got)
		checkInvariants(t, name, input, got)
	})
}

// checkInvariants checks what must hold of every formatted output: it
// parses, to the same tree as the input; formatting it again changes
// nothing; and it has the input's comments, in order.
func checkInvariants(t *testing.T, name string, input, got []byte) {
	t.Helper()
	in, diags := parser.ParseFile(name, input)
	if diags.HasErrors() {
		t.Fatalf("input does not parse: %v", diags.Err())
	}
	out, diags := parser.ParseFile(name, got)
	if diags.HasErrors() {
		t.Fatalf("output does not parse: %v\n%s", diags.Err(), got)
	}
	if diff := cmp.Diff(ast.Dump(in), ast.Dump(out)); diff != "" {
		t.Errorf("syntax tree changed (-input +output):\n%s", diff)
	}
	again, err := format.Source(name, got)
	if err != nil {
		t.Fatalf("formatting the output failed: %v", err)
	}
	if diff := cmp.Diff(string(got), string(again)); diff != "" {
		t.Errorf("not idempotent (-once +twice):\n%s", diff)
	}
	if diff := cmp.Diff(comments(t, input), comments(t, got)); diff != "" {
		t.Errorf("comments changed (-input +output):\n%s", diff)
	}
	for i, l := range strings.Split(string(got), "\n") {
		if strings.TrimRight(l, " \t") != l {
			t.Errorf("line %d has trailing white space: %q", i+1, l)
		}
	}
	if len(got) > 0 && (!strings.HasSuffix(string(got), "\n") || strings.HasSuffix(string(got), "\n\n")) {
		t.Errorf("output does not end in exactly one newline: %q", got)
	}
}

// comments returns the text of src's comments, trailing white space
// trimmed.
func comments(t *testing.T, src []byte) []string {
	t.Helper()
	commentType := parser.Lexer.Symbols()["Comment"]
	lx, err := parser.Lexer.LexString("", string(src))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		tok, err := lx.Next()
		if err != nil {
			t.Fatal(err)
		}
		if tok.EOF() {
			return out
		}
		if tok.Type == commentType {
			out = append(out, strings.TrimRight(tok.Value, " \t\r"))
		}
	}
}

// TestCorpusFormatted requires the .rolltpl files of the stdlib (templates
// and schemas) and of the examples to be formatted already (CI's
// `rolltplc fmt -l stdlib examples`).
func TestCorpusFormatted(t *testing.T) {
	var files []string
	for _, dir := range []string{"../../stdlib", "../../examples"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && path == dir {
					return filepath.SkipDir
				}
				return err
			}
			if !d.IsDir() && strings.HasSuffix(path, ".rolltpl") {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(files) == 0 {
		t.Fatal("no .rolltpl files found")
	}
	for _, path := range files {
		t.Run(filepath.ToSlash(path), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := format.Source(path, src)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(src), string(got)); diff != "" {
				t.Errorf("%s is not formatted; run rolltplc fmt -w %s (-file +formatted):\n%s", path, path, diff)
			}
			checkInvariants(t, path, src, got)
		})
	}
}

// TestBadNodes feeds sources with syntax errors: the formatter must refuse
// them with a syntax error naming the file, and never panic.
func TestBadNodes(t *testing.T) {
	for _, src := range []string{
		"config {",
		"config x { a -> }",
		"config x { a -> b",
		"}",
		"template t { weights { rename \"a\" } }",
		"template t { weights { rename \"a -> \"b\" } }",
		"mca m { a = }\nmca n { b = 1 }",
		"weights w { stack(dim = ) \"a\" -> \"b\" }",
		"weights w { rename (\"a\" -> \"b\" }",
		"import",
		"import common",
		"config x { a -> b } $",
		"parallel p { duplicated }",
		"template t extends { }",
		"mca m { a = [1, 2 }",
		"mca m { a = f(1 }",
		"mca m { a = 1 +* 2 }",
		"\x00",
		"config x { a -> b }}}}",
		"# only a comment\nconfig",
		"template t { mca { use a } mca { use b } ",
	} {
		got, err := format.Source("bad.rolltpl", []byte(src))
		if err == nil {
			t.Errorf("Source(%q) = %q, want an error", src, got)
			continue
		}
		var se *format.SyntaxError
		if !errors.As(err, &se) || len(se.Diags) == 0 {
			t.Errorf("Source(%q) error = %v, want a *SyntaxError with diagnostics", src, err)
		}
		if !strings.Contains(err.Error(), "bad.rolltpl:") {
			t.Errorf("Source(%q) error %q does not name the file", src, err)
		}
	}
}

// TestEmpty checks sources without declarations.
func TestEmpty(t *testing.T) {
	for src, want := range map[string]string{
		"":                      "",
		"\n\n  \t\n":            "",
		"# c  \n\n\n":           "# c\n",
		"\n\n# a\n\n\n# b":      "# a\n\n# b\n",
		"\r\n# a\r\n# b\r\n":    "# a\n# b\n",
		"import \"x\"":          "import \"x\"\n",
		"import   \"x\"   \n\n": "import \"x\"\n",
	} {
		got, err := format.Source("e.rolltpl", []byte(src))
		if err != nil {
			t.Errorf("Source(%q): %v", src, err)
			continue
		}
		if string(got) != want {
			t.Errorf("Source(%q) = %q, want %q", src, got, want)
		}
	}
}

// FuzzSource checks the formatter's invariants on any input that parses.
func FuzzSource(f *testing.F) {
	for _, pattern := range []string{"../../stdlib/*/*.rolltpl", "testdata/*.txtar"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			if strings.HasSuffix(p, ".txtar") {
				data, _ = langtest.Parse(data).Get("input")
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		got, err := format.Source("fuzz.rolltpl", src)
		if err != nil {
			var se *format.SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("non-syntax error: %v", err)
			}
			return
		}
		checkInvariants(t, "fuzz.rolltpl", src, got)
	})
}

// TestRespace re-spaces the stdlib and the golden inputs at random. Changing
// only the spaces within lines must not change the output; adding line
// breaks and blank lines must keep the invariants.
func TestRespace(t *testing.T) {
	sources := map[string][]byte{}
	paths, _ := filepath.Glob("../../stdlib/*/*.rolltpl")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sources[filepath.Base(p)] = data
	}
	paths, _ = filepath.Glob("testdata/*.txtar")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if in, ok := langtest.Parse(data).Get("input"); ok {
			sources[filepath.Base(p)] = in
		}
	}
	for name, src := range sources {
		want, err := format.Source(name, src)
		if err != nil {
			continue // the cases that must be refused
		}
		rng := rand.New(rand.NewPCG(1, uint64(len(src))))
		for i := range 5 {
			flat := respace(t, src, rng, false)
			got, err := format.Source(name, flat)
			if err != nil {
				t.Errorf("%s #%d: %v\n%s", name, i, err, flat)
				continue
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s #%d: re-spacing within lines changed the output (-want +got):\n%s\ninput:\n%s", name, i, diff, flat)
			}
			broken := respace(t, src, rng, true)
			if got, err := format.Source(name, broken); err == nil {
				checkInvariants(t, name, broken, got)
			}
		}
	}
}

// respace rebuilds src with random white space between its tokens, keeping
// the number of newlines of each gap unless breaks is set, in which case
// some gaps get one or two more.
func respace(t *testing.T, src []byte, rng *rand.Rand, breaks bool) []byte {
	t.Helper()
	ws := parser.Lexer.Symbols()["Whitespace"]
	lx, err := parser.Lexer.LexString("", string(src))
	if err != nil {
		t.Fatal(err)
	}
	blanks := []string{" ", "  ", "\t", "   "}
	var b strings.Builder
	gap, hadGap := "", false
	flush := func() {
		nl := strings.Count(gap, "\n")
		if breaks && b.Len() > 0 && rng.IntN(4) == 0 {
			nl += 1 + rng.IntN(2)
		}
		for range nl {
			b.WriteString(blanks[rng.IntN(len(blanks))][:rng.IntN(2)])
			b.WriteString("\n")
		}
		if nl > 0 || hadGap {
			b.WriteString(blanks[rng.IntN(len(blanks))])
		} else if b.Len() > 0 && rng.IntN(3) == 0 {
			// Tokens that touched may get a space between them.
			b.WriteString(" ")
		}
		gap, hadGap = "", false
	}
	for {
		tok, err := lx.Next()
		if err != nil {
			t.Fatal(err)
		}
		if tok.EOF() {
			break
		}
		if tok.Type == ws {
			gap, hadGap = gap+tok.Value, true
			continue
		}
		flush()
		b.WriteString(tok.Value)
	}
	b.WriteString(gap)
	return []byte(b.String())
}
