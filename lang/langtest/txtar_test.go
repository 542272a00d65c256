package langtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseFormat(t *testing.T) {
	src := "comment line\n-- input --\na\nb\n-- empty --\n-- golden --\nc"
	a := Parse([]byte(src))
	if got, want := string(a.Comment), "comment line\n"; got != want {
		t.Errorf("comment = %q, want %q", got, want)
	}
	want := []File{{"input", []byte("a\nb\n")}, {"empty", nil}, {"golden", []byte("c")}}
	if diff := cmp.Diff(want, a.Files); diff != "" {
		t.Errorf("files mismatch (-want +got):\n%s", diff)
	}
	if got, want := string(Format(a)), src+"\n"; got != want {
		t.Errorf("Format = %q, want %q", got, want)
	}
	a.Set("golden", []byte("d\n"))
	a.Set("new", []byte("e"))
	if got, want := string(Format(a)), "comment line\n-- input --\na\nb\n-- empty --\n-- golden --\nd\n-- new --\ne\n"; got != want {
		t.Errorf("Format after Set = %q, want %q", got, want)
	}
}

func TestMarker(t *testing.T) {
	for line, want := range map[string]string{
		"-- a --\n":      "a",
		"-- a b --\r\n":  "a b",
		"-- --\n":        "",
		"--a --\n":       "",
		"-- a--\n":       "",
		"# -- a --\n":    "",
		"--  spaced  --": "spaced",
	} {
		got, ok := marker([]byte(line))
		if got != want || ok != (want != "") {
			t.Errorf("marker(%q) = %q, %v; want %q", line, got, ok, want)
		}
	}
}

func TestRunUpdate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "case.txtar")
	if err := os.WriteFile(path, []byte("-- input --\nx\n-- golden --\nstale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(UpdateEnv, "1")
	Run(t, filepath.Join(dir, "*.txtar"), func(t *testing.T, c *Case) {
		if c.Name != "case" {
			t.Errorf("Name = %q", c.Name)
		}
		c.Check(t, "golden", append([]byte("fresh "), c.Section(t, "input")...))
		c.Check(t, "extra", []byte("added"))
	})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), "-- input --\nx\n-- golden --\nfresh x\n-- extra --\nadded\n"; got != want {
		t.Errorf("rewritten file = %q, want %q", got, want)
	}
}
