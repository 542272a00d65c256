//go:build unix

package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rolltpl/rolltpl/cmd/rolltplc/internal/clitest"
	"github.com/rolltpl/rolltpl/runtime/outdir"
)

// TestMain lets the test binary stand in for rolltplc (clitest.Main): the
// fault tests, the script tests and the diagnostics corpus run it as a
// separate process (clitest.Command).
func TestMain(m *testing.M) {
	if step := os.Getenv(killAtEnv); step != "" && os.Getenv(clitest.StandInEnv) == "1" {
		outdir.CommitPoint = func(s string) {
			if s == step {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
	clitest.Main(m, func(args []string) int { return Run(args, os.Stdin, os.Stdout, os.Stderr) })
}

// killAtEnv names a commit step (outdir.CommitPoint) at which the
// stand-in rolltplc kills itself with SIGKILL.
const killAtEnv = "ROLLTPL_TEST_KILL_AT"

// writeLlamaSized writes a Llama-shaped HF checkpoint (8 heads, 2 kv
// heads, untied) of L layers with hidden size H in two shards: large
// enough (about 1.3 MB a layer at H=256) that killing a conversion lands
// in the middle of writing.
func writeLlamaSized(t *testing.T, dir string, H, L int64) {
	t.Helper()
	c := clitest.Llama(clitest.LlamaShape{Vocab: 4 * H, Hidden: H, Inter: 2 * H, Heads: 8, KVHeads: 2, Layers: L})
	c.Seed = [2]uint64{3, 4}
	c.Write(t, dir)
}

// proc is a rolltplc child process.
type proc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	exited chan struct{} // closed when it has ended; then err is set
	err    error
}

// child starts rolltplc with args as a separate process.
func child(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: clitest.Command(args...), exited: make(chan struct{})}
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	return p
}

// wait waits for p to end and returns its error.
func (p *proc) wait() error {
	<-p.exited
	return p.err
}

// files lists the regular files under root with their contents, and the
// folders (with a trailing slash).
func files(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Error(err)
			}
			return nil
		}
		rel, _ := filepath.Rel(root, p)
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

// sameFiles fails unless got holds exactly want's files, byte for byte.
func sameFiles(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	var wn, gn []string
	for k := range want {
		wn = append(wn, k)
	}
	for k := range got {
		gn = append(gn, k)
	}
	slices.Sort(wn)
	slices.Sort(gn)
	if !slices.Equal(wn, gn) {
		t.Fatalf("%s: files differ from an uninterrupted run:\nwant %v\ngot  %v", what, wn, gn)
	}
	for _, k := range wn {
		if want[k] != got[k] {
			t.Errorf("%s: %s differs from an uninterrupted run", what, k)
		}
	}
}

// sameContent reports whether a and b hold the same files with the same
// contents.
func sameContent(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// faultCase is a conversion the fault test interrupts.
type faultCase struct {
	name string
	// args runs the conversion into dst (the rerun adds --force when
	// the first run may have completed).
	args func(dst string) []string
	// prepare makes dst before each run (an existing --to), or nothing.
	prepare func(dst string)
	// finish completes the output after a successful run (a finalize job).
	finish func(t *testing.T, dst string)
	// points is the number of SIGTERM and of SIGKILL points.
	points int
}

// TestFaultInjection kills real conversions with SIGTERM (and SIGINT,
// SIGHUP) and with SIGKILL at random points of their run, then checks
// that a caught signal leaves nothing behind, that SIGKILL leaves only
// temporaries named for the killed process, that a rerun removes those
// (reporting them) and succeeds, and that its output is byte-identical to
// an uninterrupted run. Cases: HF -> MCA into a new --to (temporary beside
// it), into an existing empty --to (temporary inside it), a rank job
// (--ranks, rank files written in place) then its finalize, and MCA -> HF.
func TestFaultInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("kills 60 child processes")
	}
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	writeLlamaSized(t, hf, 256, 12)
	mca := filepath.Join(dir, "mca")
	if code, _, stderr := run(t, "", "convert", "--quiet", "--from", hf, "--to", mca); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rankArgs := []string{"--tp", "2"}
	cases := []faultCase{
		{name: "HF to MCA new --to", points: 10, args: func(dst string) []string {
			return []string{"convert", "--quiet", "--from", hf, "--to", dst}
		}},
		{name: "HF to MCA existing --to", points: 4, args: func(dst string) []string {
			return []string{"convert", "--quiet", "--from", hf, "--to", dst}
		}, prepare: func(dst string) { os.MkdirAll(dst, 0o750) }},
		{name: "rank job", points: 10, args: func(dst string) []string {
			return append([]string{"convert", "--quiet", "--from", hf, "--to", dst, "--ranks", "0-1"}, rankArgs...)
		}, finish: func(t *testing.T, dst string) {
			if code, _, stderr := run(t, "", append([]string{"convert", "--quiet", "--from", hf, "--to", dst, "--finalize"}, rankArgs...)...); code != ExitOK {
				t.Fatalf("finalize: exit %d: %s", code, stderr)
			}
		}},
		{name: "MCA to HF", points: 4, args: func(dst string) []string {
			return []string{"convert", "--quiet", "--from", mca, "--to", dst, "--max-shard-size", "4MB"}
		}},
	}
	seed := uint64(time.Now().UnixNano())
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The cases spend much of their time waiting for their
			// children: they run side by side, each with its own
			// random kill points.
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			// An uninterrupted run: the reference output and the duration
			// the kill points are drawn from.
			base := t.TempDir()
			ref := filepath.Join(base, "ref")
			if c.prepare != nil {
				c.prepare(ref)
			}
			start := time.Now()
			p := child(t, c.args(ref)...)
			writing := waitTemp(t, base, p)
			if err := p.wait(); err != nil {
				t.Fatalf("uninterrupted run: %v: %s", err, &p.stderr)
			}
			d := time.Since(start)
			if c.finish != nil {
				c.finish(t, ref)
			}
			want := files(t, ref)
			var total int64
			for _, b := range want {
				total += int64(len(b))
			}
			t.Logf("uninterrupted run: %v, writing from %v", d.Round(time.Millisecond), writing.Round(time.Millisecond))
			// SIGINT and SIGHUP at random times of the whole run (start-up
			// included); SIGTERM and SIGKILL while the output is written,
			// once its temporary files hold a random fraction of the
			// output's bytes: the k-th signal of each kind in the k-th
			// n-th of the bytes.
			n := c.points
			sigs := []syscall.Signal{syscall.SIGINT, syscall.SIGHUP}
			for range n {
				sigs = append(sigs, syscall.SIGTERM)
			}
			for range n {
				sigs = append(sigs, syscall.SIGKILL)
			}
			var caught, killedMid int
			for i, sig := range sigs {
				var at time.Duration
				var frac float64
				if i < 2 {
					at = time.Duration(rng.Float64() * float64(d))
				} else {
					frac = (float64((i-2)%n) + rng.Float64()) / float64(n)
				}
				what := fmt.Sprintf("%v at %v of %v", sig, at.Round(time.Millisecond), d.Round(time.Millisecond))
				if i >= 2 {
					what = fmt.Sprintf("%v at %.0f%% of the output written", sig, 100*frac)
				}
				runDir := filepath.Join(base, fmt.Sprint(i))
				os.Mkdir(runDir, 0o755)
				dst := filepath.Join(runDir, "out")
				if c.prepare != nil {
					c.prepare(dst)
				}
				p := child(t, c.args(dst)...)
				if i >= 2 {
					waitWritten(runDir, p, int64(frac*float64(total)))
				}
				time.Sleep(at)
				p.cmd.Process.Signal(sig)
				err := p.wait()
				stderr := &p.stderr
				var ee *exec.ExitError
				switch {
				case err == nil, sig == syscall.SIGKILL:
				case !errors.As(err, &ee):
					t.Fatalf("%s: %v", what, err)
				case ee.Exited():
					// A caught signal: exit status 1, naming it.
					if ee.ExitCode() != ExitError || !strings.Contains(stderr.String(), "interrupted by SIG") {
						t.Errorf("%s: exit %d: %q", what, ee.ExitCode(), stderr)
					}
					caught++
					// Nothing partial is visible: --to as it was.
					if es, err := os.ReadDir(dst); c.finish == nil && (len(es) > 0 || c.prepare == nil && err == nil) {
						t.Errorf("%s: canceled, but %s holds %d entries (exists: %v)", what, dst, len(es), err == nil)
					}
				default:
					// Killed before the handler was installed, at start-up:
					// nothing was written (checked below).
				}
				left := leftovers(t, runDir)
				if sig == syscall.SIGKILL && len(left) > 0 {
					killedMid++
				}
				if sig != syscall.SIGKILL && len(left) > 0 {
					t.Errorf("%s: left behind: %v\n%s", what, left, stderr)
				}
				for _, path := range left {
					if !strings.Contains(filepath.Base(path), fmt.Sprintf("-%d-", p.cmd.Process.Pid)) {
						t.Errorf("%s: %s is not a temporary of the killed process %d", what, path, p.cmd.Process.Pid)
					}
				}
				// What the killed run left in --to besides its temporaries
				// is either nothing or its complete output (killed after
				// the commit): never a partial checkpoint that looks
				// complete (a tracker file), and never anything a rerun
				// needs --force for.
				got := files(t, dst)
				for k := range got {
					if tempRE.MatchString(k) {
						delete(got, k)
					}
				}
				complete := c.finish == nil && sameContent(want, got)
				if _, err := os.Stat(filepath.Join(dst, "latest_checkpointed_iteration.txt")); err == nil && !complete {
					t.Errorf("%s: %s holds a tracker file but not the complete output", what, dst)
				}
				// The rerun removes the leftovers, reporting each, and
				// succeeds (with --force only when the first run had
				// completed).
				args := c.args(dst)
				if complete {
					args = append(args, "--force")
				}
				code, _, rerr := run(t, "", args...)
				if code != ExitOK {
					t.Fatalf("%s: rerun: exit %d: %s", what, code, rerr)
				}
				for _, p := range left {
					if !strings.Contains(rerr, "removed "+p+", left by an interrupted conversion (pid ") {
						t.Errorf("%s: the rerun did not report removing %s: %q", what, p, rerr)
					}
				}
				if c.finish != nil {
					c.finish(t, dst)
				}
				if left := leftovers(t, runDir); len(left) > 0 {
					t.Errorf("%s: left after the rerun: %v", what, left)
				}
				sameFiles(t, what, want, files(t, dst))
				os.RemoveAll(runDir)
			}
			t.Logf("%d of %d caught signals canceled the conversion; %d of %d SIGKILLs left temporaries for the rerun", caught, n+2, killedMid, n)
		})
	}
}

// waitTemp waits until a temporary of the conversion cmd runs appears
// under dir (or p ends) and returns the time it took.
func waitTemp(t *testing.T, dir string, p *proc) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 20*time.Second && len(leftovers(t, dir)) == 0 {
		select {
		case <-p.exited:
			return time.Since(start)
		case <-time.After(500 * time.Microsecond):
		}
	}
	return time.Since(start)
}

// waitWritten waits until the temporaries under dir hold n bytes (or p
// ends).
func waitWritten(dir string, p *proc, n int64) {
	for start := time.Now(); time.Since(start) < 20*time.Second; {
		var size int64
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && tempRE.MatchString(path) {
				if fi, err := d.Info(); err == nil {
					size += fi.Size()
				}
			}
			return nil
		})
		if size >= n && size > 0 {
			return
		}
		select {
		case <-p.exited:
			return
		case <-time.After(500 * time.Microsecond):
		}
	}
}

// tempRE matches the names of every temporary a conversion writes.
var tempRE = regexp.MustCompile(`rolltpl-tmp-|\.tmp-|rolltpl-verify-`)

// leftovers returns the temporaries under dir (files, or folders whose
// content is not listed).
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return nil
		}
		if tempRE.MatchString(d.Name()) {
			out = append(out, p)
			if d.IsDir() {
				return fs.SkipDir
			}
		}
		return nil
	})
	return out
}

// TestVerifySignals: verify's temporary folder (--tmp DIR/rolltpl-verify-*)
// is removed when verify is stopped by SIGTERM, and a rerun removes the
// one a SIGKILL left, reporting it.
func TestVerifySignals(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	writeLlamaSized(t, hf, 256, 8)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		tmp := filepath.Join(dir, sig.String())
		os.Mkdir(tmp, 0o755)
		p := child(t, "verify", "--quiet", "--tmp", tmp, hf)
		waitWritten(tmp, p, 1)
		p.cmd.Process.Signal(sig)
		err := p.wait()
		left := leftovers(t, tmp)
		if err == nil {
			t.Logf("%v: verify ended before the signal", sig)
			continue
		}
		if sig == syscall.SIGTERM {
			if len(left) > 0 || !strings.Contains(p.stderr.String(), "interrupted by SIGTERM") {
				t.Errorf("SIGTERM: left %v; stderr %q", left, &p.stderr)
			}
			continue
		}
		if len(left) != 1 {
			t.Fatalf("SIGKILL left %v", left)
		}
		code, _, stderr := run(t, "", "verify", "--quiet", "--tmp", tmp, hf)
		if code != ExitOK || !strings.Contains(stderr, "removed "+left[0]+", left by an interrupted conversion") {
			t.Errorf("rerun: exit %d: %q", code, stderr)
		}
		if left := leftovers(t, tmp); len(left) > 0 {
			t.Errorf("left after the rerun: %v", left)
		}
	}
}

// TestKillDuringCommit kills (SIGKILL) a conversion replacing a previous
// checkpoint in --to (--force) at each step of moving its output in: the
// journal written, the previous output's entries moved aside, the new
// ones moved in, the previous one removed. A rerun without --force
// recovers --to before refusing it (not empty): exactly the previous
// checkpoint when the killed run had not moved every entry in, exactly
// the new one once it had, no temporary left; a rerun with --force then
// writes the new checkpoint.
func TestKillDuringCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	writeLlamaSized(t, hf, 64, 2)
	prev, next := filepath.Join(dir, "prev"), filepath.Join(dir, "next")
	for _, c := range []struct {
		dst  string
		args []string
	}{{prev, []string{"--tp", "2"}}, {next, nil}} {
		if code, _, stderr := run(t, "", append([]string{"convert", "--quiet", "--from", hf, "--to", c.dst}, c.args...)...); code != ExitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	}
	wantPrev, wantNext := files(t, prev), files(t, next)
	steps := []string{"journal", "aside latest_checkpointed_iteration.txt", "aside mca_config.json", "aside iter_0000001",
		"in iter_0000001", "in mca_config.json", "in latest_checkpointed_iteration.txt", "removed aside"}
	for i, step := range steps {
		t.Run(step, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "out")
			if err := copyTree(prev, dst); err != nil {
				t.Fatal(err)
			}
			p := &proc{cmd: clitest.Command("convert", "--quiet", "--force", "--from", hf, "--to", dst), exited: make(chan struct{})}
			p.cmd.Env = append(p.cmd.Env, killAtEnv+"="+step)
			p.cmd.Stderr = &p.stderr
			err := p.cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("not killed at %q: %v: %s", step, err, &p.stderr)
			}
			code, _, stderr := run(t, "", "convert", "--quiet", "--from", hf, "--to", dst)
			if code != ExitError || !strings.Contains(stderr, "is not empty") {
				t.Fatalf("rerun without --force: exit %d: %s", code, stderr)
			}
			want, what := wantPrev, "previous"
			if i >= slices.Index(steps, "in latest_checkpointed_iteration.txt") {
				want, what = wantNext, "new"
			}
			got := files(t, dst)
			if !sameContent(want, got) {
				sameFiles(t, "recovered --to, want the "+what+" checkpoint", want, got)
				t.Fatalf("recovered --to is not the %s checkpoint; the rerun said: %s", what, stderr)
			}
			if code, _, stderr := run(t, "", "convert", "--quiet", "--force", "--from", hf, "--to", dst); code != ExitOK {
				t.Fatalf("rerun with --force: exit %d: %s", code, stderr)
			}
			sameFiles(t, "rerun", wantNext, files(t, dst))
		})
	}
}
