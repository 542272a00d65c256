package format

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/lang/langtest"
)

// pieceInputs returns the stdlib's templates and the golden inputs, each
// also with blank lines, comment lines and trailing comments added around
// its top-level declarations and with CRLF line ends.
func pieceInputs(t testing.TB) map[string][]byte {
	t.Helper()
	in := map[string][]byte{}
	paths, _ := filepath.Glob("../../stdlib/*/*.rolltpl")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		in[filepath.Base(p)] = data
	}
	paths, _ = filepath.Glob("testdata/*.txtar")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if src, ok := langtest.Parse(data).Get("input"); ok {
			in[filepath.Base(p)] = src
		}
	}
	if len(in) < 10 {
		t.Fatalf("found only %d inputs", len(in))
	}
	names := make([]string, 0, len(in))
	for name := range in {
		names = append(names, name)
	}
	for _, name := range names {
		src := in[name]
		var padded bytes.Buffer
		for i, line := range bytes.SplitAfter(src, []byte("\n")) {
			top := len(line) > 0 && line[0] >= 'a' && line[0] <= 'z'
			if top {
				switch i % 4 {
				case 0:
					padded.WriteString("\n   \n# about the next one\n")
				case 1:
					padded.WriteString("  # indented comment\n\n\n")
				case 2:
					padded.WriteString("\t\n")
				}
			}
			if bytes.HasPrefix(line, []byte("}")) && bytes.HasSuffix(line, []byte("\n")) {
				line = append(bytes.TrimSuffix(line, []byte("\n")), "   # end\n"...)
			}
			padded.Write(line)
		}
		in[name+"/padded"] = padded.Bytes()
		in[name+"/crlf"] = bytes.ReplaceAll(src, []byte("\n"), []byte("\r\n"))
		in[name+"/bom"] = append([]byte("\uFEFF\n\n"), src...)
	}
	return in
}

// TestPiecesSameAsWhole: formatting a file in pieces of whole declarations
// gives the same output, or the same error, as formatting it at once, with
// every declaration line a cut.
func TestPiecesSameAsWhole(t *testing.T) {
	cut := 0
	for name, src := range pieceInputs(t) {
		cut += len(pieceStarts(src, 1)) - 1
		want, wantErr := sourceWhole("x.rolltpl", src)
		got, gotErr := sourcePieces("x.rolltpl", src, 1)
		if (wantErr == nil) != (gotErr == nil) || wantErr != nil && wantErr.Error() != gotErr.Error() {
			t.Errorf("%s: error %v, want %v", name, gotErr, wantErr)
			continue
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s: pieces differ from whole (-whole +pieces):\n%s", name, diff)
		}
	}
	if cut < 100 {
		t.Errorf("only %d cuts made: the inputs do not exercise the pieces", cut)
	}
}

// TestPieceStarts: cuts are at the start of a declaration's line, never
// inside a declaration or after code on the same line.
func TestPieceStarts(t *testing.T) {
	src := "# head\nimport \"common\"\nconfig a { use llm }  config b {\n  use llm\n}\n\n# c\n  template t {\n}\n"
	var got []string
	starts := pieceStarts([]byte(src), 1)
	for i, s := range starts {
		end := len(src)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		got = append(got, src[s:end])
	}
	want := []string{
		"# head\n",
		"import \"common\"\n",
		"config a { use llm }  config b {\n  use llm\n}\n\n# c\n",
		"  template t {\n}\n",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pieces (-want +got):\n%s", diff)
	}
	if s := strings.Join(got, ""); s != src {
		t.Errorf("pieces do not add up to the source")
	}
}
