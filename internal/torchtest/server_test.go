package torchtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeTorch is a stand-in for the torch module: the server's state
// restoring needs only what it names.
const fakeTorch = `
__version__ = "0.0.fake"
class _Opts: precision = 4
class _tensor_str: PRINT_OPTS = _Opts()
class random:
    state = 0
    @staticmethod
    def get_rng_state(): return random.state
    @staticmethod
    def set_rng_state(s): random.state = s
_dtype = "float32"
def get_default_dtype(): return _dtype
def set_default_dtype(d):
    global _dtype
    _dtype = d
def set_grad_enabled(b): pass
def load(path): return "real load"
`

// fakePython writes an interpreter standing in for python3: a shell
// script that appends a line to its log (one per process started) and
// runs the real python3 with a directory first on its path that holds
// torch.py (when torchPy is not "") and an empty numpy.py. It returns the
// script's path and a function counting the processes started.
func fakePython(t *testing.T, torchPy string) (string, func() int) {
	t.Helper()
	real := DefaultPython
	if _, err := os.Stat(real); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and %s is missing", real)
		}
		t.Skipf("%s is missing", real)
	}
	dir := t.TempDir()
	if torchPy != "" {
		write(t, filepath.Join(dir, "torch.py"), torchPy)
	}
	write(t, filepath.Join(dir, "numpy.py"), "")
	log := filepath.Join(dir, "starts")
	py := filepath.Join(dir, "python3")
	write(t, py, fmt.Sprintf("#!/bin/sh\necho started >> '%s'\nPYTHONPATH='%s' exec %s \"$@\"\n", log, dir, real))
	if err := os.Chmod(py, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closePool(py) })
	return py, func() int {
		b, _ := os.ReadFile(log)
		return bytes.Count(b, []byte("\n"))
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestServerRuns runs scripts as python would in a process of their own:
// exit statuses, exceptions, arguments, working directory, streams.
func TestServerRuns(t *testing.T) {
	py, started := fakePython(t, fakeTorch)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "argv.py"), "import json, os, sys\nprint(json.dumps([sys.argv, __name__, os.getcwd(), sys.path[0]]))\n")
	big := 3<<20 + 17
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		args     []string
		dir      string
		stdin    string
		env      []string
		combined bool
		status   int // 0: no error
		stdout   string
		stderr   string // exact, or what it contains after "contains:"
	}{
		{name: "ok", args: []string{"-c", "print('hi')"}, stdout: "hi\n"},
		{name: "exit-code", args: []string{"-c", "import sys\nprint('x')\nsys.exit(3)"}, status: 3, stdout: "x\n"},
		{name: "exit-zero", args: []string{"-c", "raise SystemExit"}},
		{name: "exit-big", args: []string{"-c", "import sys; sys.exit(258)"}, status: 2},
		{name: "exit-message", args: []string{"-c", "import sys; sys.exit('no good')"}, status: 1, stderr: "no good\n"},
		{
			name: "exception", args: []string{"-c", "x = 1\nraise ValueError('boom')"}, status: 1,
			stderr: "Traceback (most recent call last):\n  File \"<string>\", line 2, in <module>\nValueError: boom\n",
		},
		{
			name: "syntax-error", args: []string{"-c", "def ("}, status: 1,
			stderr: "contains:SyntaxError: ",
		},
		{
			name: "argv-script", args: []string{"argv.py", "a", "b c"}, dir: dir,
			stdout: fmt.Sprintf(`[["argv.py", "a", "b c"], "__main__", %q, %q]`, dir, dir) + "\n",
		},
		{
			name: "argv-c", args: []string{"-c", "import json, sys; print(json.dumps(sys.argv))", "x", "-y"},
			stdout: `["-c", "x", "-y"]` + "\n",
		},
		{name: "dir-relative", args: []string{"-c", "import os; print(os.getcwd())"}, dir: ".", stdout: wd + "\n"},
		{name: "stdin", args: []string{"-c", "import sys; print(sys.stdin.read().upper(), end='')"}, stdin: "some input\n", stdout: "SOME INPUT\n"},
		{name: "env", args: []string{"-c", "import os; print(sorted(os.environ.items()))"}, env: []string{"A=1", "B=x=y"}, stdout: "[('A', '1'), ('B', 'x=y')]\n"},
		{name: "env-inherited", args: []string{"-c", "import os; print('PATH' in os.environ)"}, stdout: "True\n"},
		{name: "no-stdin", args: []string{"-c", "import sys; print(repr(sys.stdin.read()))"}, stdout: "''\n"},
		{name: "fd-writes", args: []string{"-c", "import os; os.write(1, b'one\\n'); os.write(2, b'two\\n')"}, stdout: "one\n", stderr: "two\n"},
		{
			name: "combined", combined: true,
			args:   []string{"-c", "import sys\nfor i in range(3):\n    print('out', i)\n    print('err', i, file=sys.stderr)"},
			stdout: "out 0\nerr 0\nout 1\nerr 1\nout 2\nerr 2\n",
		},
		{
			name: "large", args: []string{"-c", fmt.Sprintf("import sys\nsys.stdout.write('o' * %d)\nsys.stderr.write('e' * %d)", big, big)},
			stdout: strings.Repeat("o", big), stderr: strings.Repeat("e", big),
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := Command(py, c.args...)
			cmd.Dir, cmd.Env = c.dir, c.env
			if c.stdin != "" {
				cmd.Stdin = strings.NewReader(c.stdin)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if c.combined {
				cmd.Stderr = &stdout
			}
			err := cmd.Run()
			checkStatus(t, err, c.status)
			matchWhole(t, "stdout", c.stdout, stdout.String())
			matchWhole(t, "stderr", c.stderr, stderr.String())
		})
	}
	if n := started(); n != 1 {
		t.Errorf("%d python processes started, want 1", n)
	}
}

func checkStatus(t *testing.T, err error, status int) {
	t.Helper()
	if status == 0 {
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		return
	}
	var ee *ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != status || ee.Error() != fmt.Sprintf("exit status %d", status) {
		t.Fatalf("Run: %v; want exit status %d", err, status)
	}
}

func matchWhole(t *testing.T, what, want, got string) {
	t.Helper()
	if sub, ok := strings.CutPrefix(want, "contains:"); ok {
		if !strings.Contains(got, sub) {
			t.Errorf("%s = %q, want it to contain %q", what, got, sub)
		}
		return
	}
	if got != want {
		if len(got) > 500 {
			got = got[:500] + "..."
		}
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// TestServerIsolation checks that what a script does to the process
// does not reach the next script.
func TestServerIsolation(t *testing.T) {
	py, started := fakePython(t, fakeTorch)
	a, b := t.TempDir(), t.TempDir()
	write(t, filepath.Join(a, "helper.py"), "WHO = 'a'\n")
	write(t, filepath.Join(b, "helper.py"), "WHO = 'b'\n")
	left := filepath.Join(t.TempDir(), "left-open")
	first := `
import os, sys, types, warnings, torch, json
import helper
sys.modules["standin"] = types.ModuleType("standin")
sys.modules["json"] = "replaced"
torch.set_default_dtype("float16")
torch.random.set_rng_state(7)
torch._tensor_str.PRINT_OPTS.precision = 9
os.environ["TORCHTEST_LEAK"] = "1"
warnings.warn("once")
sys.path.append("/nowhere")
sys.stdout.close()
sys.stdout = sys.stderr
f = open(sys.argv[1], "w")
f.write("unflushed")
class Keep:
    pass
keep = Keep()
keep.me = keep  # a cycle: only the garbage collector closes f
keep.f = f
os.chdir("/")
`
	second := `
import os, sys, json, warnings, torch
import helper
warnings.warn("once")
assert callable(print)
print(json.dumps({
    "helper": helper.WHO,
    "standin": "standin" in sys.modules,
    "dtype": torch.get_default_dtype(),
    "rng": torch.random.get_rng_state(),
    "precision": torch._tensor_str.PRINT_OPTS.precision,
    "env": os.environ.get("TORCHTEST_LEAK"),
    "path": "/nowhere" in sys.path,
    "cwd": os.getcwd(),
}, sort_keys=True))
`
	for i, run := range []struct {
		script, dir string
		args        []string
	}{{first, a, []string{left}}, {second, b, nil}} {
		cmd := Command(py, append([]string{"-c", run.script}, run.args...)...)
		cmd.Dir = run.dir
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("script %d: %v\n%s", i, err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "UserWarning: once") {
			t.Errorf("script %d: stderr %q lacks the warning", i, stderr.String())
		}
		if i == 0 {
			if got, err := os.ReadFile(left); err != nil || string(got) != "unflushed" {
				t.Errorf("a file the script left open holds %q (%v), want %q", got, err, "unflushed")
			}
			continue
		}
		var got map[string]any
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
			t.Fatalf("%v: %q", err, stdout.String())
		}
		want := map[string]any{
			"helper": "b", "standin": false, "dtype": "float32",
			"rng": 0.0, "precision": 4.0, "env": nil, "path": false, "cwd": b,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("the second script saw the first one's changes (-want +got):\n%s", diff)
		}
	}
	if n := started(); n != 1 {
		t.Errorf("%d python processes started, want 1", n)
	}

	// A script that replaces functions of torch or builtins ends its
	// server: the next script gets a new one.
	for i, script := range []string{"import builtins, torch\ntorch.load = lambda path: 'patched'\nbuiltins.print = None", "import torch\nprint(torch.load('x'))"} {
		out, err := Command(py, "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("patching script %d: %v\n%s", i, err, out)
		}
		if i == 1 && string(out) != "real load\n" {
			t.Errorf("after a script replaced torch.load, the next one's prints %q", out)
		}
	}
	if n := started(); n != 2 {
		t.Errorf("%d python processes started, want 2", n)
	}
}

// TestServerRestarts checks that a script ending the process or running
// too long costs a new process, not a broken server.
func TestServerRestarts(t *testing.T) {
	py, started := fakePython(t, fakeTorch)

	out, err := Command(py, "-c", "import os, sys\nprint('before')\nsys.stdout.flush()\nos._exit(5)").CombinedOutput()
	checkStatus(t, err, 5)
	if string(out) != "before\n" {
		t.Errorf("output %q, want %q", out, "before\n")
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	t0 := time.Now()
	out, err = CommandContext(ctx, py, "-c", "import time\nprint('sleeping', flush=True)\ntime.sleep(120)").CombinedOutput()
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "killed") {
		t.Errorf("a script past its deadline: %v", err)
	}
	if d := time.Since(t0); d > 30*time.Second {
		t.Errorf("killing the script took %v", d)
	}
	if string(out) != "sleeping\n" {
		t.Errorf("output %q, want %q", out, "sleeping\n")
	}

	out, err = Command(py, "-c", "print('fine')").Output()
	if err != nil || string(out) != "fine\n" {
		t.Errorf("after the restarts: %q, %v", out, err)
	}
	// The first server, the one after os._exit and the one after the kill.
	if n := started(); n != 3 {
		t.Errorf("%d python processes started, want 3", n)
	}
}

// TestServerOutputError checks Output's error: an ExitError carrying the
// script's stderr, shaped like exec's.
func TestServerOutputError(t *testing.T) {
	py, _ := fakePython(t, fakeTorch)
	out, err := Command(py, "-c", "print('partial')\nassert 1 == 2, 'mismatch'").Output()
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Error() != "exit status 1" {
		t.Fatalf("err = %v, want exit status 1", err)
	}
	if string(out) != "partial\n" || !strings.HasSuffix(string(ee.Stderr), "AssertionError: mismatch\n") {
		t.Errorf("stdout %q, stderr %q", out, ee.Stderr)
	}
}

// TestServerConcurrent runs scripts from several goroutines: each gets
// its own output, and no more servers start than the pool holds.
func TestServerConcurrent(t *testing.T) {
	py, started := fakePython(t, fakeTorch)
	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := Command(py, "-c", "import sys, time\ntime.sleep(0.05)\nprint(sys.argv[1] * 3)", fmt.Sprint(i)).Output()
			if want := strings.Repeat(fmt.Sprint(i), 3) + "\n"; err == nil && string(out) != want {
				err = fmt.Errorf("output %q, want %q", out, want)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("script %d: %v", i, err)
		}
	}
	if k, max := started(), poolFor(py).max; k < 1 || k > max {
		t.Errorf("%d python processes started, want 1 to %d", k, max)
	}
}

// TestServerSpare checks that a script waiting for a busy server gets
// another one after spareAfter, up to the pool's size.
func TestServerSpare(t *testing.T) {
	py, started := fakePython(t, fakeTorch)
	defer func(d time.Duration) { spareAfter = d }(spareAfter)
	spareAfter = 100 * time.Millisecond
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := Command(py, "-c", "import time; time.sleep(1.5)").CombinedOutput(); err != nil {
				t.Errorf("%v\n%s", err, out)
			}
		}()
	}
	wg.Wait()
	if want := min(2, poolFor(py).max); started() != want {
		t.Errorf("%d python processes started, want %d", started(), want)
	}
}

// TestServerFresh checks the ways out of the server: Fresh, interpreter
// options and the environment variable.
func TestServerFresh(t *testing.T) {
	py, started := fakePython(t, fakeTorch)
	cmd := Command(py, "-c", "print('a')")
	cmd.Fresh = true
	if out, err := cmd.Output(); err != nil || string(out) != "a\n" {
		t.Fatalf("Fresh: %q, %v", out, err)
	}
	if out, err := Command(py, "-m", "json.tool", "--compact").Output(); err == nil || len(out) != 0 {
		t.Fatalf("-m json.tool without input: %q, %v; want an error", out, err)
	}
	t.Setenv(FreshEnv, "1")
	_, err := Command(py, "-c", "import sys; sys.exit(4)").Output()
	checkStatus(t, err, 4)
	if n := started(); n != 3 {
		t.Errorf("%d python processes started, want 3", n)
	}
}

// TestServerEndsWithInput checks that a server ends when its input does
// (as when the test binary exits), and that one whose interpreter cannot
// start reports why.
func TestServerEndsWithInput(t *testing.T) {
	py, _ := fakePython(t, fakeTorch)
	s, err := startServer(context.Background(), py)
	if err != nil {
		t.Fatal(err)
	}
	if s.hello.Torch == nil || *s.hello.Torch != "0.0.fake" {
		t.Errorf("hello %+v: want torch 0.0.fake", s.hello)
	}
	s.in.Close()
	select {
	case <-s.exited:
		if !s.state.Success() {
			t.Errorf("server ended with %v", s.state)
		}
	case <-time.After(30 * time.Second):
		s.kill()
		t.Fatal("the server did not end with its input")
	}

	broken := filepath.Join(t.TempDir(), "python3")
	write(t, broken, "#!/bin/sh\necho no interpreter here >&2\nexit 127\n")
	if err := os.Chmod(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Command(broken, "-c", "pass").Output()
	if err == nil || !strings.Contains(err.Error(), "did not start its server") || !strings.Contains(err.Error(), "no interpreter here") {
		t.Errorf("broken interpreter: %v", err)
	}
}

// TestServerEndsWithParent checks that a server running a script that
// hangs ends when its test binary is killed: a child test binary starts
// one, the script writes its process id, and the child is killed.
func TestServerEndsWithParent(t *testing.T) {
	if pidFile := os.Getenv("TORCHTEST_HANG_PID"); pidFile != "" {
		// The child: run a script that records its pid and hangs.
		py := os.Getenv("TORCHTEST_HANG_PYTHON")
		Command(py, "-c", "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(600)", pidFile).Run()
		return
	}
	py, _ := fakePython(t, fakeTorch)
	pidFile := filepath.Join(t.TempDir(), "pid")
	child := exec.Command(os.Args[0], "-test.run=^TestServerEndsWithParent$")
	child.Env = append(os.Environ(), "TORCHTEST_HANG_PID="+pidFile, "TORCHTEST_HANG_PYTHON="+py)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Wait()
	var pid int
	for deadline := time.Now().Add(time.Minute); pid == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			child.Process.Kill()
			t.Fatal("the script never wrote its pid")
		}
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(string(b))
	}
	child.Process.Kill()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return // gone (reaped by init)
		}
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); bytes.Contains(b, []byte(") Z ")) {
			return // a zombie: it ended
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the server (pid %d) outlived its killed test binary by 30 s", pid)
		}
	}
}

// TestServerRealTorch checks, under each interpreter with torch, that the
// torch settings a script changes are back to a new process's for the
// next script (the server restores those its torch version has), and
// that each script starts from the same RNG state (a new process's is
// seeded at random).
func TestServerRealTorch(t *testing.T) {
	Run(t, func(t *testing.T, py string) {
		const probe = `
import json, torch
print(json.dumps([str(torch.get_default_dtype()), torch.is_grad_enabled(), torch.get_num_threads(), str(torch.ones(1) / 3)]))
print(torch.rand(3).tolist())
`
		fresh := Command(py, "-c", probe)
		fresh.Fresh = true
		want, err := fresh.Output()
		if err != nil {
			t.Fatal(err)
		}
		first, err := Command(py, "-c", probe).Output()
		if err != nil {
			t.Fatal(err)
		}
		change := Command(py, "-c", `
import torch
torch.set_default_dtype(torch.float64)
torch.manual_seed(1)
torch.rand(5)
torch.set_grad_enabled(False)
torch.set_num_threads(1)
torch.set_printoptions(precision=1)
`)
		if out, err := change.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		got, err := Command(py, "-c", probe).Output()
		if err != nil {
			t.Fatal(err)
		}
		settings := func(b []byte) string { return strings.SplitAfter(string(b), "\n")[0] }
		if settings(got) != settings(want) {
			t.Errorf("after a script changed torch's settings, the next one sees\n%s\nwhere a new process sees\n%s", got, want)
		}
		if string(got) != string(first) {
			t.Errorf("the RNG state differs between scripts: %q, then %q", first, got)
		}
		patch := Command(py, "-c", "import torch\ntorch.load = None\ntorch.Tensor.add = torch.Tensor.sub")
		if out, err := patch.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if out, err := Command(py, "-c", "import torch; print(callable(torch.load), torch.Tensor.add is torch.Tensor.sub)").Output(); err != nil || string(out) != "True False\n" {
			t.Errorf("torch.load and torch.Tensor.add after a script replaced them: %q, %v", out, err)
		}
	}, "numpy")
}
