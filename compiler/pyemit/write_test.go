package pyemit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/runtime/tempname"
)

// tree lists a folder: relative paths, with the content of files.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		b, _ := os.ReadFile(p)
		out[rel] = string(b)
		return nil
	})
	return out
}

func put(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var build2 = []File{
	{Name: "a.py", Content: []byte(generatedHeader + ". DO NOT EDIT.\nA = 2\n")},
	{Name: "__init__.py", Content: []byte(generatedHeader + ". DO NOT EDIT.\n")},
}

// wantBuild2 is the folder after writing build2.
func wantBuild2() map[string]string {
	return map[string]string{
		"a.py":        string(build2[0].Content),
		"__init__.py": string(build2[1].Content),
		BuildMarker:   "# Files written by rolltplc build; the next build into this folder replaces them.\na.py\n__init__.py\n",
	}
}

// TestWriteDirReplaces: a missing, empty or previously built folder (with
// the marker, or from a build older than the marker) receives the build;
// the previous build's files and __pycache__ are replaced, nothing else is
// left.
func TestWriteDirReplaces(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(dir string)
	}{
		{"missing", func(dir string) {}},
		{"empty", func(dir string) { os.Mkdir(dir, 0o755) }},
		{"previous build", func(dir string) {
			put(t, filepath.Join(dir, "old.py"), "OLD = 1\n")
			put(t, filepath.Join(dir, "a.py"), "A = 1\n")
			put(t, filepath.Join(dir, "__pycache__", "a.cpython-311.pyc"), "x")
			put(t, filepath.Join(dir, BuildMarker), "# comment\nold.py\na.py\n")
		}},
		{"build without marker", func(dir string) {
			put(t, filepath.Join(dir, "old.py"), generatedHeader+" from old.rolltpl. DO NOT EDIT.\n")
			put(t, filepath.Join(dir, "__init__.py"), generatedHeader+". DO NOT EDIT.\n")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pkg")
			c.setup(dir)
			if err := WriteDir(context.Background(), dir, build2, nil); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantBuild2(), tree(t, dir)); diff != "" {
				t.Errorf("folder after the build (-want +got):\n%s", diff)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".*build-tmp*")); len(left) > 0 {
				t.Errorf("temporaries left: %v", left)
			}
		})
	}
}

// TestWriteDirRefuses: a folder holding anything but a previous build
// (a project, a git checkout, a file named in no marker) is refused,
// naming the files, and left exactly as it was; so is a canceled build.
// On main these folders were deleted.
func TestWriteDirRefuses(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(dir string)
		ctx   func() context.Context
		want  string
	}{
		{"project", func(dir string) {
			put(t, filepath.Join(dir, "main.py"), "print(1)\n")
			put(t, filepath.Join(dir, "notes.txt"), "mine")
		}, nil, `holds files that are not a previous build's: main\.py, notes\.txt; build replaces only`},
		{"git checkout", func(dir string) {
			put(t, filepath.Join(dir, ".git", "HEAD"), "ref: refs/heads/main\n")
			put(t, filepath.Join(dir, "a.py"), "A = 1\n")
		}, nil, `: \.git/, a\.py; build`},
		{"unlisted file beside a build", func(dir string) {
			put(t, filepath.Join(dir, "a.py"), "A = 1\n")
			put(t, filepath.Join(dir, "mine.py"), "M = 1\n")
			put(t, filepath.Join(dir, BuildMarker), "a.py\n")
		}, nil, `: mine\.py; build`},
		{"many", func(dir string) {
			for i := range 7 {
				put(t, filepath.Join(dir, fmt.Sprintf("f%d", i)), "")
			}
		}, nil, `: f0, f1, f2, f3, f4 and 2 more; build`},
		{"a file", func(dir string) { put(t, dir, "x") }, nil, `exists and is not a folder`},
		{"canceled", func(dir string) { put(t, filepath.Join(dir, "a.py"), generatedHeader+"\n") }, func() context.Context {
			ctx, cancel := context.WithCancelCause(context.Background())
			cancel(errors.New("interrupted by SIGTERM"))
			return ctx
		}, `^interrupted by SIGTERM$`},
		{"canceled, missing", func(dir string) {}, func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, `context canceled`},
	} {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "pkg")
			c.setup(dir)
			before := tree(t, parent)
			ctx := context.Background()
			if c.ctx != nil {
				ctx = c.ctx()
			}
			err := WriteDir(ctx, dir, build2, nil)
			if err == nil || !regexp.MustCompile(c.want).MatchString(err.Error()) {
				t.Fatalf("error does not match %q: %v", c.want, err)
			}
			if diff := cmp.Diff(before, tree(t, parent)); diff != "" {
				t.Errorf("the folder changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestWriteDirStale: the temporary folders of a killed build, beside a
// missing -o and inside an existing one, are removed and told as a
// build's; one of a build that may still run (another host's) stops the
// build, named.
func TestWriteDirStale(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	self := tempname.Self()
	dead := fmt.Sprintf("%s-%d-%d-1", self.Host, cmd.Process.Pid, self.Start)
	parent := t.TempDir()
	dir := filepath.Join(parent, "pkg")
	beside := filepath.Join(parent, ".pkg"+buildTmp+dead)
	put(t, filepath.Join(beside, "a.py"), "partial")
	var notes []string
	notice := func(s string) { notes = append(notes, s) }
	if err := WriteDir(context.Background(), dir, build2, notice); err != nil {
		t.Fatal(err)
	}
	inside := filepath.Join(dir, buildTmp+dead)
	put(t, filepath.Join(inside, "a.py"), "partial")
	if err := WriteDir(context.Background(), dir, build2, notice); err != nil {
		t.Fatal(err)
	}
	want := []string{"removed " + beside + ", left by an interrupted build (pid ", "removed " + inside + ", left by an interrupted build (pid "}
	if len(notes) != len(want) || !strings.HasPrefix(notes[0], want[0]) || !strings.HasPrefix(notes[1], want[1]) {
		t.Errorf("notices %q, want %q", notes, want)
	}
	if diff := cmp.Diff(wantBuild2(), tree(t, dir)); diff != "" {
		t.Errorf("folder after the build (-want +got):\n%s", diff)
	}
	live := filepath.Join(dir, buildTmp+"node-b-1-1-1")
	os.Mkdir(live, 0o700)
	if err := WriteDir(context.Background(), dir, build2, nil); err == nil || !strings.Contains(err.Error(), live+" is the temporary folder of another build (pid 1 on host node-b)") {
		t.Errorf("live temporary: %v", err)
	}
}
