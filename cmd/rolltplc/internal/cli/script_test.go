package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/cmd/rolltplc/internal/clitest"
	"github.com/rolltpl/rolltpl/lang/langtest"
)

// TestScripts runs the CLI behaviour scripts in testdata/script: each is a
// txtar archive whose comment is a script and whose sections are files
// written to a fresh work directory, $WORK, where the script runs.
//
// The scripts follow go-internal's testscript, the Go ecosystem's tool for
// this, with the few commands the CLI needs; they are run here rather than
// through testscript itself to add no dependency (the project's rule) and
// to assert exact exit codes, which are the CLI's contract (0 ok, 1 failed,
// 2 usage) and which testscript only tells apart as success or failure.
// A line is a command with arguments, split at spaces, where '...' quotes
// (” is a quote inside) and $WORK is the work directory; # starts a
// comment. Commands:
//
//	rolltplc ARGS...         run the real rolltplc (this test binary as
//	                         rolltplc, see TestMain) in $WORK; it must exit 0
//	! rolltplc ARGS...       it must exit non-zero, and the next command
//	                         must be `status N`
//	status N                 the last rolltplc exited with N
//	stdin FILE               the next rolltplc reads FILE on standard input
//	[!] stdout REGEXP        the last standard output matches REGEXP (a
//	                         multi-line regexp), or with !, does not
//	[!] stderr REGEXP        the same for standard error
//	cmp stdout|stderr|FILE WANT
//	                         the output or file equals the file WANT; under
//	                         ROLLTPL_UPDATE=1 a WANT that is a section of the
//	                         archive is rewritten with stdout or stderr
//	                         (never with a FILE: sections are also inputs)
//	[!] exists FILE          FILE exists (or, with !, does not)
//
// Outputs are compared with $WORK in place of the work directory's path.
func TestScripts(t *testing.T) {
	langtest.Run(t, "testdata/script/*.txtar", func(t *testing.T, c *langtest.Case) {
		t.Parallel()
		s := &script{t: t, c: c, work: t.TempDir()}
		for _, f := range c.Archive.Files {
			path := filepath.Join(s.work, filepath.FromSlash(f.Name))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, f.Data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s.run(string(c.Archive.Comment))
	})
}

// script is the state of one running script.
type script struct {
	t    *testing.T
	c    *langtest.Case
	work string
	// line is the number of the line being run, for messages.
	line int
	// stdin is the file the next rolltplc reads ("": none).
	stdin string
	// stdout and stderr of the last rolltplc, with $WORK for the work
	// directory.
	stdout, stderr string
	// status is the exit code of the last rolltplc; needStatus is set
	// after one that had to fail, until a status command checks it.
	status     int
	needStatus bool
}

// run runs the script text.
func (s *script) run(text string) {
	for i, raw := range strings.Split(text, "\n") {
		s.line = i + 1
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		args, err := s.split(line)
		if err != nil {
			s.fatalf("%v", err)
		}
		neg := false
		if args[0] == "!" {
			neg, args = true, args[1:]
		}
		if len(args) == 0 {
			s.fatalf("! without a command")
		}
		if s.needStatus && args[0] != "status" {
			s.fatalf("a rolltplc that must fail is to be followed by `status N`")
		}
		switch args[0] {
		case "rolltplc":
			s.rolltplc(neg, args[1:])
		case "status":
			s.checkStatus(neg, args[1:])
		case "stdin":
			s.want(!neg && len(args) == 2, "usage: stdin FILE")
			s.stdin = s.path(args[1])
		case "stdout", "stderr":
			s.want(len(args) == 2, "usage: [!] %s REGEXP", args[0])
			s.match(neg, args[0], args[1])
		case "cmp":
			s.want(!neg && len(args) == 3, "usage: cmp stdout|stderr|FILE WANT")
			s.cmp(args[1], args[2])
		case "exists":
			s.want(len(args) == 2, "usage: [!] exists FILE")
			_, err := os.Stat(s.path(args[1]))
			if neg && err == nil {
				s.fatalf("%s exists", args[1])
			} else if !neg && err != nil {
				s.fatalf("%v", err)
			}
		default:
			s.fatalf("unknown command %q", args[0])
		}
	}
	if s.needStatus {
		s.fatalf("the script ends before `status N`")
	}
}

// fatalf stops the script with a message naming its line.
func (s *script) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s:%d: %s", s.c.Path, s.line, fmt.Sprintf(format, args...))
}

// errorf reports a failed assertion naming the line, and goes on.
func (s *script) errorf(format string, args ...any) {
	s.t.Helper()
	s.t.Errorf("%s:%d: %s", s.c.Path, s.line, fmt.Sprintf(format, args...))
}

// want stops the script with a usage message when ok is false.
func (s *script) want(ok bool, format string, args ...any) {
	s.t.Helper()
	if !ok {
		s.fatalf(format, args...)
	}
}

// split splits a script line into words: spaces separate them, '...'
// quotes (two quotes inside are one), $WORK is the work directory.
func (s *script) split(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case quoted && ch == '\'' && i+1 < len(line) && line[i+1] == '\'':
			cur.WriteByte('\'')
			i++
		case ch == '\'':
			quoted, inWord = !quoted, true
		case !quoted && (ch == ' ' || ch == '\t'):
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if quoted {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		args = append(args, cur.String())
	}
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "$WORK", s.work)
	}
	return args, nil
}

// path resolves a script path against $WORK.
func (s *script) path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.work, filepath.FromSlash(p))
}

// rolltplc runs the test binary as rolltplc (TestMain) with args in
// $WORK.
func (s *script) rolltplc(neg bool, args []string) {
	s.t.Helper()
	cmd := clitest.Command(args...)
	cmd.Dir = s.work
	if s.stdin != "" {
		f, err := os.Open(s.stdin)
		if err != nil {
			s.fatalf("%v", err)
		}
		defer f.Close()
		cmd.Stdin = f
		s.stdin = ""
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	s.status = 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() < 0 {
			s.fatalf("rolltplc %s: %v", strings.Join(args, " "), err)
		}
		s.status = ee.ExitCode()
	}
	s.stdout = strings.ReplaceAll(out.String(), s.work, "$WORK")
	s.stderr = strings.ReplaceAll(errb.String(), s.work, "$WORK")
	switch {
	case neg && s.status == 0:
		s.errorf("rolltplc %s: exit 0, want a failure\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), s.stdout, s.stderr)
	case !neg && s.status != 0:
		s.errorf("rolltplc %s: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), s.status, s.stdout, s.stderr)
	}
	s.needStatus = neg
}

// checkStatus checks the last exit code.
func (s *script) checkStatus(neg bool, args []string) {
	s.want(!neg && len(args) == 1, "usage: status N")
	n, err := strconv.Atoi(args[0])
	if err != nil {
		s.fatalf("status %q: %v", args[0], err)
	}
	if s.status != n {
		s.errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", s.status, n, s.stdout, s.stderr)
	}
	s.needStatus = false
}

// output returns the last stdout or stderr.
func (s *script) output(name string) string {
	if name == "stdout" {
		return s.stdout
	}
	return s.stderr
}

// match checks the last output against a multi-line regexp.
func (s *script) match(neg bool, name, pattern string) {
	re, err := regexp.Compile("(?m)" + pattern)
	if err != nil {
		s.fatalf("%v", err)
	}
	got := s.output(name)
	if re.MatchString(got) == neg {
		if neg {
			s.errorf("%s matches %q:\n%s", name, pattern, got)
		} else {
			s.errorf("%s does not match %q:\n%s", name, pattern, got)
		}
	}
}

// cmp compares an output or a file with the file want; under
// ROLLTPL_UPDATE=1 a want that is a section of the archive is updated
// from stdout or stderr.
func (s *script) cmp(name, want string) {
	var got string
	if name == "stdout" || name == "stderr" {
		got = s.output(name)
	} else {
		b, err := os.ReadFile(s.path(name))
		if err != nil {
			s.fatalf("%v", err)
		}
		got = string(b)
	}
	if w, ok := s.c.Archive.Get(want); ok {
		// A section of the archive: it always ends in a newline.
		if got != "" && !strings.HasSuffix(got, "\n") {
			got += "\n"
		}
		if string(w) == got {
			return
		}
		if langtest.Update() && (name == "stdout" || name == "stderr") {
			s.c.Check(s.t, want, []byte(got))
			return
		}
		s.errorf("%s differs from section %s (-%s +%s):\n%s\n(run with %s=1 to update)", name, want, want, name, cmp.Diff(string(w), got), langtest.UpdateEnv)
		return
	}
	b, err := os.ReadFile(s.path(want))
	if err != nil {
		s.fatalf("%v", err)
	}
	if diff := cmp.Diff(string(b), got); diff != "" {
		s.errorf("%s and %s differ (-%s +%s):\n%s", want, name, want, name, diff)
	}
}
