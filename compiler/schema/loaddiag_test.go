package schema

import (
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/lang/diag"
)

// TestLoadDiagnostics asserts the codes of the schema loader that no
// `rolltplc check` of user files reaches (the schemas come from the
// stdlib): a field of an unknown type, and a schema file that cannot be
// read.
func TestLoadDiagnostics(t *testing.T) {
	fsys := fstest.MapFS{
		"a.rolltpl": {Data: []byte("schema widget {\n    size: integer\n    parts: list[gear]\n    name: str\n}\n")},
		// A directory named like a schema file is skipped, not an error.
		"dir.rolltpl/x": {Data: []byte("x")},
	}
	_, diags := LoadFS(fsys, "s/")
	var got []string
	for _, d := range diags {
		got = append(got, d.Error())
	}
	want := []string{
		`s/a.rolltpl:2:11: error: Unknown type: "integer" is neither a basic type (int, float, bool, str, dict, list[T], any, ignored) nor a schema. [` + diag.UnknownType + `]`,
		`s/a.rolltpl:3:12: error: Unknown type: "gear" is neither a basic type (int, float, bool, str, dict, list[T], any, ignored) nor a schema. [` + diag.UnknownType + `]`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}

	// A file listed but not readable, and a root that cannot be listed.
	_, diags = LoadFS(unreadable{fsys}, "s/")
	if len(diags) == 0 || diags[0].Code != diag.ReadError {
		t.Errorf("unreadable schema file: got %v, want a %s", diags, diag.ReadError)
	}
	_, diags = LoadFS(fstest.MapFS{"a.rolltpl/": {Mode: fs.ModeDir}}, "s/")
	if len(diags) != 0 {
		t.Errorf("a directory named a.rolltpl: got %v, want nothing", diags)
	}
	_, diags = LoadFS(noDir{}, "s/")
	if len(diags) != 1 || diags[0].Code != diag.ReadError {
		t.Errorf("unlistable root: got %v, want one %s", diags, diag.ReadError)
	}
}

// unreadable lists the files of its FS but cannot open them.
type unreadable struct{ fstest.MapFS }

func (u unreadable) Open(name string) (fs.File, error) {
	if name == "." {
		return u.MapFS.Open(name)
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
}

// ReadFile fails as Open does (fs.ReadFile prefers it to Open).
func (u unreadable) ReadFile(name string) ([]byte, error) {
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
}

// noDir is a file system whose root cannot be listed.
type noDir struct{}

func (noDir) Open(name string) (fs.File, error) {
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
}
