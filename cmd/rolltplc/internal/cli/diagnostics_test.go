package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/cmd/rolltplc/internal/clitest"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/langtest"
)

// diagCorpus is the corpus of diagnostic codes: one case per code of the
// registry (lang/diag), named after it.
const diagCorpus = "testdata/diagnostics"

// TestDiagnosticCorpus runs each case of testdata/diagnostics through the
// real `rolltplc check --diags=json` and compares every diagnostic it
// reports, with its range, severity, code, summary and detail, with the
// case's `diagnostics` section (ROLLTPL_UPDATE=1 rewrites it).
//
// A case is a txtar archive: its comment says what the case shows, its
// sections are the files written to a fresh work directory, and the
// optional `args` section holds check's arguments (one line, split at
// spaces; default: every .rolltpl section at the top of the archive). The
// case named after a code must report that code at least once, and every
// diagnostic must have the severity the registry gives its code.
func TestDiagnosticCorpus(t *testing.T) {
	langtest.Run(t, diagCorpus+"/*.txtar", func(t *testing.T, c *langtest.Case) {
		t.Parallel()
		if len(bytes.TrimSpace(c.Archive.Comment)) == 0 {
			t.Error("the case has no comment saying what it shows")
		}
		work := t.TempDir()
		var roots []string
		for _, f := range c.Archive.Files {
			if f.Name == "args" || f.Name == "diagnostics" {
				continue
			}
			path := filepath.Join(work, filepath.FromSlash(f.Name))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, f.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(f.Name, "/") && strings.HasSuffix(f.Name, ".rolltpl") {
				roots = append(roots, f.Name)
			}
		}
		args := roots
		if c.Has("args") {
			args = strings.Fields(string(c.Section(t, "args")))
		}
		if len(args) == 0 {
			t.Fatal("the case checks nothing: add a .rolltpl section or an args section")
		}
		cmd := clitest.Command(append([]string{"check", "--diags=json"}, args...)...)
		cmd.Dir = work
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		var diags []diag.JSONDiagnostic
		if err := json.Unmarshal(stdout.Bytes(), &diags); err != nil {
			t.Fatalf("check printed no JSON diagnostics (%v)\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		}
		var got strings.Builder
		reported := false
		for _, d := range diags {
			fmt.Fprintf(&got, "%s:%d:%d-%d:%d %s %s: %s: %s\n", d.Path, d.Start.Line, d.Start.Column, d.End.Line, d.End.Column,
				d.Severity, d.Code, d.Summary, strings.ReplaceAll(d.Detail, "\n", " "))
			info, ok := diag.LookupCode(d.Code)
			switch {
			case !ok:
				t.Errorf("%s:%d:%d: code %q is not in the registry (lang/diag/codes.go)", d.Path, d.Start.Line, d.Start.Column, d.Code)
			case info.Severity.String() != d.Severity:
				t.Errorf("%s:%d:%d: %s is a %s, but the registry says %s", d.Path, d.Start.Line, d.Start.Column, d.Code, d.Severity, info.Severity)
			}
			reported = reported || d.Code == c.Name
		}
		if !reported {
			t.Errorf("the case for %s does not report it", c.Name)
		}
		if want := ee != nil && ee.ExitCode() == ExitError; want != hasError(diags) {
			t.Errorf("exit status %v with diagnostics %v", err, diags)
		}
		c.Check(t, "diagnostics", []byte(got.String()))
	})
}

// hasError reports whether diags has an error.
func hasError(diags []diag.JSONDiagnostic) bool {
	for _, d := range diags {
		if d.Severity == "error" {
			return true
		}
	}
	return false
}

// assertedElsewhere are the codes no `rolltplc check` of user files can
// report, with the package (relative to this one) and test that assert
// each.
var assertedElsewhere = map[string][2]string{
	// A bug: no input is known to cause one.
	diag.InternalError: {"../../../../compiler", "TestInternalError"},
}

// TestDiagnosticCorpusCoversCodes: every code of the registry has its
// case in testdata/diagnostics (or a named test elsewhere that exists), and
// every case is named after a code.
func TestDiagnosticCorpusCoversCodes(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(diagCorpus, "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	var cases, codes []string
	for _, p := range paths {
		cases = append(cases, strings.TrimSuffix(filepath.Base(p), ".txtar"))
	}
	for _, c := range diag.Codes() {
		if where, ok := assertedElsewhere[c.Code]; ok {
			if !hasTest(t, where[0], where[1]) {
				t.Errorf("%s: no test %s in %s", c.Code, where[1], where[0])
			}
			continue
		}
		codes = append(codes, c.Code)
	}
	sort.Strings(cases)
	if diff := cmp.Diff(codes, cases); diff != "" {
		t.Errorf("registered codes (-) and cases of %s (+) differ:\n%s", diagCorpus, diff)
	}
}

// hasTest reports whether a _test.go file of dir declares func name.
func hasTest(t *testing.T, dir, name string) bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == name {
				return true
			}
		}
	}
	return false
}
