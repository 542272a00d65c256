package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckThreeMistakesText(t *testing.T) {
	code, _, stderr := run(t, "", "check", "testdata/three_mistakes.rolltpl")
	if code != ExitError {
		t.Errorf("exit code = %d, want %d", code, ExitError)
	}
	want := `testdata/three_mistakes.rolltpl:5:30: error: Syntax error [syntax-error]
 5 |         rename "a.weight" -> }
   |                              ^
  unexpected token "}" (expected a name).
testdata/three_mistakes.rolltpl:12:9: error: Unknown op kind [unknown-op-kind]
 12 |         renam "a.weight" -> "b.weight"
    |         ^^^^^
  "renam" is not a known op kind. Did you mean "rename"?
testdata/three_mistakes.rolltpl:19:9: error: Wrong number of names [op-arity]
 19 |         qkv ".q.weight", ".k.weight" -> ".qkv.weight"
    |         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  Op qkv takes 3 HF names -> 1 MCA name; this one has 2 -> 1.
`
	if diff := cmp.Diff(want, stderr); diff != "" {
		t.Errorf("check output mismatch (-want +got):\n%s", diff)
	}
}

func TestCheckThreeMistakesJSON(t *testing.T) {
	code, stdout, _ := run(t, "", "check", "--diags=json", "testdata/three_mistakes.rolltpl")
	if code != ExitError {
		t.Errorf("exit code = %d, want %d", code, ExitError)
	}
	type pos struct{ Line, Column, Offset int }
	var got []struct {
		Path, Severity, Code string
		Start, End           pos
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, stdout)
	}
	type row struct {
		Code       string
		Start, End pos
	}
	var rows []row
	for _, d := range got {
		if d.Path != "testdata/three_mistakes.rolltpl" || d.Severity != "error" {
			t.Errorf("unexpected path/severity %q %q", d.Path, d.Severity)
		}
		rows = append(rows, row{d.Code, d.Start, d.End})
	}
	want := []row{
		{"syntax-error", pos{5, 30, 152}, pos{5, 31, 153}},
		{"unknown-op-kind", pos{12, 9, 244}, pos{12, 14, 249}},
		{"op-arity", pos{19, 9, 362}, pos{19, 54, 407}},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("JSON diagnostics mismatch (-want +got):\n%s", diff)
	}
}

func TestBuildUserTemplate(t *testing.T) {
	out := filepath.Join(t.TempDir(), "pkg")
	code, _, stderr := run(t, "", "build", "-o", out, "testdata/good.rolltpl")
	if code != ExitOK {
		t.Fatalf("build failed (%d): %s", code, stderr)
	}
	for _, f := range []string{"my_model.py", "_rolltpl_support.py", "__init__.py"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	// A failed build leaves the previous output in place.
	code, _, _ = run(t, "", "build", "-o", out, "testdata/three_mistakes.rolltpl")
	if code != ExitError {
		t.Errorf("build of a broken file: exit %d, want 1", code)
	}
	if _, err := os.Stat(filepath.Join(out, "my_model.py")); err != nil {
		t.Errorf("previous output lost: %v", err)
	}
}

func TestUsageAndVersion(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{}, ExitUsage, ""},
		{[]string{"frobnicate"}, ExitUsage, ""},
		{[]string{"version"}, ExitOK, "rolltplc " + Version + "\n"},
		{[]string{"check", "--diags=xml"}, ExitUsage, ""},
		{[]string{"build", "--no-such-flag"}, ExitUsage, ""},
		{[]string{"check", "testdata/does-not-exist.rolltpl"}, ExitError, ""},
	} {
		code, stdout, _ := run(t, "", tc.args...)
		if code != tc.code || (tc.out != "" && stdout != tc.out) {
			t.Errorf("rolltplc %v = %d %q, want %d %q", tc.args, code, stdout, tc.code, tc.out)
		}
	}
	code, stdout, _ := run(t, "", "help", "build")
	if code != ExitOK || !strings.Contains(stdout, "--output") {
		t.Errorf("help build = %d %q", code, stdout)
	}
}

func TestCheckStdlib(t *testing.T) {
	if code, _, stderr := run(t, "", "check"); code != ExitOK {
		t.Errorf("check of the stdlib failed (%d): %s", code, stderr)
	}
}

// TestCheckPythonBackend: what `rolltplc build` cannot emit yet is a
// warning at the op, from check as from build, not a surprise at build
// time; check still exits 0 (the Go runtime converts the template).
func TestCheckPythonBackend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fused.rolltpl")
	src := `template fused {
    layer_prefix  = "model.layers."
    expert_prefix = ".mlp.experts."
    config { num_experts -> num_moe_experts }
    weights {
        split_experts(transpose = false) "down_proj" -> ".linear_fc2.weight"
    }
    parallel { row ".linear_fc2.weight" }
}
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, "", "check", path)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"fused.rolltpl:6:9: warning: rolltplc build cannot emit this yet", "[python-backend]",
		"fused experts of mcore_adapter.models.qwen3_5_moe"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("missing %q in\n%s", want, stderr)
		}
	}
	code, _, stderr = run(t, "", "build", "-o", filepath.Join(t.TempDir(), "out"), path)
	if code == ExitOK || !strings.Contains(stderr, "fused experts of mcore_adapter.models.qwen3_5_moe") {
		t.Errorf("build: exit %d\n%s", code, stderr)
	}
}
