package torchtest

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// driver is the server's Python side (see its header for the protocol).
//
//go:embed driver.py
var driver string

const (
	// DefaultTimeout bounds a script run without a context deadline; a
	// script still running then is killed with its server.
	DefaultTimeout = 10 * time.Minute
	// startTimeout bounds a server's start-up (torch's import included).
	startTimeout = 2 * time.Minute
	// maxFrame bounds a protocol message from the server.
	maxFrame = 1 << 20
	// FreshEnv, set to a non-empty value, makes every Cmd run in a
	// process of its own, as without the server.
	FreshEnv = "ROLLTPL_TORCHTEST_FRESH"
)

// Cmd runs a Python script like exec.Cmd runs `python ARGS...`, but in
// the long-lived server process of its interpreter (one per interpreter
// and test binary, started on first use, torch imported once) instead of
// a new process: the script gets its own __main__ module, sys.argv,
// working directory and standard streams, what it does to the process
// (modules it put into sys.modules, torch's settings) is undone
// afterwards, and a script that replaced functions of torch ends the
// server (the next script gets a new one); see driver.py.
//
// Args are as on a command line after the interpreter: a script path or
// "-c" and code, then the script's arguments. Other interpreter options
// (e.g. "-m") or Fresh run the script in a process of its own. Without
// Env, a script sees the environment the test binary had when the server
// started.
type Cmd struct {
	Path   string   // the interpreter
	Args   []string // Args[0] is Path, as for exec.Cmd
	Dir    string   // the working directory; "" is the test's
	Env    []string // the script's environment ("K=V"); nil: see above
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Fresh runs the script in a new process, for a script that must
	// not share one (e.g. it changes state the server does not restore).
	Fresh bool

	ctx context.Context
}

// Command returns a Cmd that runs python with args (see Cmd).
func Command(python string, args ...string) *Cmd {
	return CommandContext(context.Background(), python, args...)
}

// CommandContext is Command with a context: when ctx is done before the
// script ends, the script's process is killed (a server is restarted on
// next use). Without a deadline, DefaultTimeout applies.
func CommandContext(ctx context.Context, python string, args ...string) *Cmd {
	return &Cmd{Path: python, Args: append([]string{python}, args...), ctx: ctx}
}

// ExitError reports a script that exited with a non-zero status, raised
// an exception (status 1, the traceback on its stderr) or whose process
// died; its message is shaped like exec.ExitError's.
type ExitError struct {
	status int
	msg    string
	// Stderr holds the script's standard error when Output collected it.
	Stderr []byte
}

// Error returns "exit status N" or how the process ended.
func (e *ExitError) Error() string { return e.msg }

// ExitCode returns the script's exit status, or -1 when its process was
// killed by a signal.
func (e *ExitError) ExitCode() int { return e.status }

// Run runs the script and waits for it; output goes to Stdout and Stderr
// (discarded when nil).
func (c *Cmd) Run() error {
	if c.fresh() {
		return c.runFresh()
	}
	return c.runServed()
}

// Output runs the script and returns its standard output; when Stderr is
// nil, an *ExitError carries the standard error.
func (c *Cmd) Output() ([]byte, error) {
	if c.Stdout != nil {
		return nil, errors.New("torchtest: Stdout already set")
	}
	var stdout, stderr bytes.Buffer
	c.Stdout = &stdout
	captured := c.Stderr == nil
	if captured {
		c.Stderr = &stderr
	}
	err := c.Run()
	var ee *ExitError
	if captured && errors.As(err, &ee) {
		ee.Stderr = stderr.Bytes()
	}
	return stdout.Bytes(), err
}

// CombinedOutput runs the script and returns its standard output and
// standard error interleaved as written.
func (c *Cmd) CombinedOutput() ([]byte, error) {
	if c.Stdout != nil || c.Stderr != nil {
		return nil, errors.New("torchtest: Stdout or Stderr already set")
	}
	var b bytes.Buffer
	c.Stdout, c.Stderr = &b, &b
	err := c.Run()
	return b.Bytes(), err
}

func (c *Cmd) context() context.Context {
	if c.ctx == nil {
		return context.Background()
	}
	return c.ctx
}

// fresh reports whether c runs in a process of its own.
func (c *Cmd) fresh() bool {
	if c.Fresh || os.Getenv(FreshEnv) != "" || len(c.Args) < 2 {
		return true
	}
	a := c.Args[1]
	return a != "-c" && len(a) > 0 && a[0] == '-' || a == "-c" && len(c.Args) < 3
}

func (c *Cmd) runFresh() error {
	ctx, cancel := withTimeout(c.context())
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, c.Args[1:]...)
	cmd.Dir, cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Dir, c.Env, c.Stdin, c.Stdout, c.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &ExitError{status: ee.ExitCode(), msg: ee.Error()}
	}
	return err
}

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// runServed runs c in a server of its interpreter.
func (c *Cmd) runServed() error {
	ctx, cancel := withTimeout(c.context())
	defer cancel()
	dir, err := filepath.Abs(c.Dir) // "" is the working directory
	if err != nil {
		return err
	}
	req := request{Args: c.Args[1:], Cwd: dir, Stdin: os.DevNull, Env: c.Env}
	files, err := newRequestFiles(c, &req)
	if err != nil {
		return err
	}
	defer files.remove()

	p := poolFor(c.Path)
	s, err := p.get(ctx)
	if err != nil {
		return err
	}
	status, reusable, err := s.do(ctx, req)
	p.put(s, err == nil && reusable)
	if cerr := files.copyOut(c); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if status != 0 {
		return &ExitError{status: status, msg: fmt.Sprintf("exit status %d", status)}
	}
	return nil
}

// request is one script run (see driver.py).
type request struct {
	Args   []string `json:"args"`
	Cwd    string   `json:"cwd"`
	Stdin  string   `json:"stdin"`
	Stdout string   `json:"stdout"`
	Stderr string   `json:"stderr"`
	Env    []string `json:"env"`
}

// requestFiles are the temporary files standing for a run's streams.
type requestFiles struct {
	paths          []string
	stdout, stderr string // stderr == stdout when combined; "" when discarded
}

// newRequestFiles creates the files of c's streams and names them in req.
func newRequestFiles(c *Cmd, req *request) (*requestFiles, error) {
	f := &requestFiles{}
	create := func(pattern string, content io.Reader) (string, error) {
		tf, err := os.CreateTemp("", pattern)
		if err != nil {
			return "", err
		}
		f.paths = append(f.paths, tf.Name())
		if content != nil {
			_, err = io.Copy(tf, content)
		}
		if cerr := tf.Close(); err == nil {
			err = cerr
		}
		return tf.Name(), err
	}
	var err error
	if c.Stdin != nil {
		if req.Stdin, err = create("torchtest-*.in", c.Stdin); err != nil {
			f.remove()
			return nil, err
		}
	}
	req.Stdout, req.Stderr = os.DevNull, os.DevNull
	if c.Stdout != nil {
		if f.stdout, err = create("torchtest-*.out", nil); err != nil {
			f.remove()
			return nil, err
		}
		req.Stdout = f.stdout
	}
	switch {
	case c.Stderr == nil:
	case c.Stdout != nil && sameWriter(c.Stdout, c.Stderr):
		f.stderr, req.Stderr = f.stdout, f.stdout
	default:
		if f.stderr, err = create("torchtest-*.err", nil); err != nil {
			f.remove()
			return nil, err
		}
		req.Stderr = f.stderr
	}
	return f, nil
}

// sameWriter reports whether a and b are the same writer (as exec.Cmd
// decides whether stdout and stderr share a file).
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false // not comparable
		}
	}()
	return a == b
}

// copyOut copies what the script wrote to c's writers.
func (f *requestFiles) copyOut(c *Cmd) error {
	cp := func(path string, w io.Writer) error {
		if path == "" {
			return nil
		}
		r, err := os.Open(path)
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(w, r)
		return err
	}
	if err := cp(f.stdout, c.Stdout); err != nil {
		return err
	}
	if f.stderr == f.stdout {
		return nil
	}
	return cp(f.stderr, c.Stderr)
}

func (f *requestFiles) remove() {
	for _, p := range f.paths {
		os.Remove(p)
	}
}

var (
	// spareAfter is how long a script waits for its interpreter's busy
	// server before another one starts (a variable for tests).
	spareAfter = 2 * time.Second

	poolsMu sync.Mutex
	pools   = map[string]*pool{}
)

// pool holds the servers of one interpreter: at most max run at once.
type pool struct {
	python string
	max    int
	mu     sync.Mutex
	idle   []*server
	n      int           // servers started and not dead
	free   chan struct{} // signalled when a server is put back or dies
}

func poolFor(python string) *pool {
	poolsMu.Lock()
	defer poolsMu.Unlock()
	p := pools[python]
	if p == nil {
		p = &pool{python: python, max: min(max(runtime.GOMAXPROCS(0), 1), 4), free: make(chan struct{}, 1)}
		pools[python] = p
	}
	return p
}

// get returns an idle server, or starts one when there is none, or
// waits for one. While a server is busy, a second one starts only after
// spareAfter: most scripts end sooner than a server starts.
func (p *pool) get(ctx context.Context) (*server, error) {
	var spare *time.Timer // fires when another server may start
	spareDue := false
	for {
		p.mu.Lock()
		if k := len(p.idle); k > 0 {
			s := p.idle[k-1]
			p.idle = p.idle[:k-1]
			p.mu.Unlock()
			return s, nil
		}
		if p.n == 0 || p.n < p.max && spareDue {
			p.n++
			p.mu.Unlock()
			s, err := startServer(ctx, p.python)
			if err != nil {
				p.release()
			}
			return s, err
		}
		if spare == nil && p.n < p.max {
			spare = time.NewTimer(spareAfter)
			defer spare.Stop()
		}
		var due <-chan time.Time
		if spare != nil && !spareDue {
			due = spare.C
		}
		p.mu.Unlock()
		select {
		case <-p.free:
		case <-due:
			spareDue = true
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// put returns s to the pool, or retires it when it is no longer usable.
func (p *pool) put(s *server, ok bool) {
	if !ok {
		s.kill()
		p.release()
		return
	}
	p.mu.Lock()
	p.idle = append(p.idle, s)
	p.mu.Unlock()
	p.signal()
}

func (p *pool) release() {
	p.mu.Lock()
	p.n--
	p.mu.Unlock()
	p.signal()
}

func (p *pool) signal() {
	select {
	case p.free <- struct{}{}:
	default:
	}
}

// server is one running driver process.
type server struct {
	python string
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	log    *tail // the process's own stderr, for diagnostics
	exited chan struct{}
	state  *os.ProcessState
	hello  hello
}

// hello is the server's first message.
type hello struct {
	Ready      bool    `json:"ready"`
	Torch      *string `json:"torch"`
	TorchError *string `json:"torch_error"`
	Python     string  `json:"python"`
}

// startServer starts python's server and waits for it to be ready.
func startServer(ctx context.Context, python string) (*server, error) {
	cmd := exec.Command(python, "-u", "-c", driver)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s := &server{python: python, cmd: cmd, log: &tail{max: 64 << 10}, exited: make(chan struct{})}
	cmd.Stderr = s.log
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.in, s.out = in, bufio.NewReader(out)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("torchtest: starting %s: %w", python, err)
	}
	go func() {
		cmd.Wait()
		s.state = cmd.ProcessState
		close(s.exited)
	}()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	err = s.await(ctx, func() error {
		if err := s.read(&s.hello); err != nil {
			return err
		}
		if !s.hello.Ready {
			return errors.New("no ready message")
		}
		return nil
	})
	if err != nil {
		s.kill()
		<-s.exited // and its stderr is read
		return nil, fmt.Errorf("torchtest: %s did not start its server (%v): %s", python, err, bytes.TrimSpace(s.log.Bytes()))
	}
	return s, nil
}

// await runs f (which talks to the server) until it returns or ctx is
// done; then the server is killed.
func (s *server) await(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		s.kill()
		<-done
		return ctx.Err()
	}
}

// do runs req and returns the script's exit status and whether the
// server may run another script (see driver.py). An error means the
// server is no longer usable: it died (then a *ExitError tells how) or
// ctx ended first (then it was killed).
func (s *server) do(ctx context.Context, req request) (status int, reusable bool, err error) {
	var resp struct {
		Status   int  `json:"status"`
		Reusable bool `json:"reusable"`
	}
	err = s.await(ctx, func() error {
		if err := s.write(req); err != nil {
			return err
		}
		return s.read(&resp)
	})
	if err == nil {
		return resp.Status, resp.Reusable, nil
	}
	if ctx.Err() != nil {
		return 0, false, fmt.Errorf("torchtest: %s %s: killed: %w", s.python, describe(req.Args), ctx.Err())
	}
	// The script ended the process (os._exit, a crash): report that as
	// its exit.
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.kill()
		<-s.exited
	}
	if st := s.state; st != nil && (st.Exited() || st.Sys().(syscall.WaitStatus).Signaled()) {
		return 0, false, &ExitError{status: st.ExitCode(), msg: st.String()}
	}
	return 0, false, fmt.Errorf("torchtest: %s: lost its server (%v): %s", s.python, err, bytes.TrimSpace(s.log.Bytes()))
}

// describe names a script run for an error message.
func describe(args []string) string {
	if args[0] == "-c" {
		return "-c script"
	}
	return args[0]
}

func (s *server) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var head [4]byte
	binary.BigEndian.PutUint32(head[:], uint32(len(b)))
	_, err = s.in.Write(append(head[:], b...))
	return err
}

func (s *server) read(v any) error {
	var head [4]byte
	if _, err := io.ReadFull(s.out, head[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > maxFrame {
		return fmt.Errorf("a %d-byte message", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(s.out, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// kill ends the server's process group (a wrapper such as
// .ci/chroot-python and what the script started with it).
func (s *server) kill() {
	if s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
	s.in.Close()
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// Bytes returns a copy of what was kept.
func (t *tail) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.b...)
}

// closePool ends python's idle servers and forgets its pool (for tests
// whose interpreter goes away with them).
func closePool(python string) {
	poolsMu.Lock()
	p := pools[python]
	delete(pools, python)
	poolsMu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, s := range idle {
		s.in.Close()
		<-s.exited
	}
}
