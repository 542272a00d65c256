package tempname

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestParse reads back what New writes, with host names holding dashes
// and dots, and refuses names of other shapes.
func TestParse(t *testing.T) {
	name := New(".x.rolltpl-tmp-")
	o, ok := Parse(name, ".x.rolltpl-tmp-")
	if !ok || o != Self() {
		t.Fatalf("Parse(%q) = %v, %v; want %v", name, o, ok, Self())
	}
	for _, c := range []struct {
		name string
		want Owner
		ok   bool
	}{
		{"p-node-1.example.com-42-7-9", Owner{"node-1.example.com", 42, 7}, true},
		{"p-h-42-0-9", Owner{"h", 42, 0}, true},
		{"p-1234567", Owner{}, false},      // the old random-only names
		{"p--42-7-9", Owner{}, false},      // no host
		{"p-h-0-7-9", Owner{}, false},      // pid 0
		{"p-h-x-7-9", Owner{}, false},      // not a pid
		{"q-h-42-7-9", Owner{}, false},     // another prefix
		{"p-h-42-7-9-old", Owner{}, false}, // a suffix
	} {
		o, ok := Parse(c.name, "p-")
		if ok != c.ok || o != c.want {
			t.Errorf("Parse(%q) = %v, %v; want %v, %v", c.name, o, ok, c.want, c.ok)
		}
	}
}

// TestRemoveStale: a temporary of a process that has exited is removed; this
// process's, one of another host and one of a reused pid's earlier process
// (another start time) are told apart.
func TestRemoveStale(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	dead := cmd.Process.Pid
	s := Self()
	dir := t.TempDir()
	names := map[string]string{
		"dead":      fmt.Sprintf("T%s-%d-%d-1", s.Host, dead, 5),
		"self":      New("T"),
		"other":     fmt.Sprintf("T%s-%d-%d-2", "another-host", dead, 5),
		"reused":    fmt.Sprintf("T%s-%d-%d-3", s.Host, s.PID, s.Start+1),
		"unrelated": "Tnotes.txt",
	}
	for k, n := range names {
		p := filepath.Join(dir, n)
		if k == "dead" {
			os.MkdirAll(filepath.Join(p, "sub"), 0o755) // folders are removed whole
			continue
		}
		os.WriteFile(p, nil, 0o644)
	}
	removed, live, err := RemoveStale(dir, "T")
	if err != nil {
		t.Fatal(err)
	}
	var gotRemoved, gotLive []string
	for _, f := range removed {
		gotRemoved = append(gotRemoved, filepath.Base(f.Path))
	}
	for _, f := range live {
		gotLive = append(gotLive, filepath.Base(f.Path))
	}
	wantRemoved := []string{names["dead"]}
	if s.Start != 0 {
		wantRemoved = append(wantRemoved, names["reused"])
	}
	if diff := cmp.Diff(wantRemoved, gotRemoved, sorted); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	wantLive := []string{names["self"], names["other"]}
	if s.Start == 0 {
		wantLive = append(wantLive, names["reused"])
	}
	if diff := cmp.Diff(wantLive, gotLive, sorted); diff != "" {
		t.Errorf("live (-want +got):\n%s", diff)
	}
	for _, n := range wantRemoved {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			t.Errorf("%s is still there", n)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, names["unrelated"])); err != nil {
		t.Errorf("an unrelated file was removed: %v", err)
	}
}

// sorted compares string lists as sets.
var sorted = cmpopts.SortSlices(func(a, b string) bool { return a < b })
