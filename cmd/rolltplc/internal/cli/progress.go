package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rolltpl/rolltpl/runtime/exec"
)

// Progress report intervals: a terminal bar is redrawn at most every
// barEvery; a log (stderr a file or a pipe, as under Slurm, Kubernetes or
// nohup) gets one line every logEvery.
var (
	barEvery = 100 * time.Millisecond
	logEvery = 5 * time.Second
)

// progress reports the progress of a conversion on stderr: on a terminal
// a bar redrawn in place (bytes and tensors done and total, rate, ETA); in a log one
// line every logEvery with the same figures, so a long job shows it is
// alive; nothing when quiet. Its update method is an exec progress
// callback; calls come one at a time.
type progress struct {
	w     io.Writer
	label string
	tty   bool             // redraw a bar in place; else print log lines
	every time.Duration    // minimum time between two reports
	now   func() time.Time // the clock (a fake one in tests)
	start time.Time
	last  time.Time // of the last report, or start
	drawn bool      // a bar is on the terminal's current line
	off   bool      // quiet: report nothing
}

// newProgress returns the progress reporter of a command writing to
// e.stderr: a bar when stderr is a terminal, log lines otherwise, nothing
// when quiet.
func newProgress(e *env, quiet bool, label string) *progress {
	tty := isTerminal(e.stderr)
	every := logEvery
	if tty {
		every = barEvery
	}
	return newProgressAt(e.stderr, label, quiet, tty, every, time.Now)
}

// newProgressAt is newProgress with the terminal test, the interval and
// the clock given.
func newProgressAt(w io.Writer, label string, quiet, tty bool, every time.Duration, now func() time.Time) *progress {
	start := now()
	return &progress{w: w, label: label, tty: tty, every: every, now: now, start: start, last: start, off: quiet}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// update is an exec.Options.Progress callback: the figures so far. It
// reports when the interval has passed since the last report, and on a
// terminal also at the end. Nil-safe.
func (p *progress) update(f exec.Progress) {
	if p == nil || p.off {
		return
	}
	now := p.now()
	end := f.Bytes >= f.TotalBytes
	if now.Sub(p.last) < p.every && !(p.tty && end) {
		return
	}
	if !p.tty && end {
		return // the command's summary line follows
	}
	p.last = now
	if p.tty {
		// Back to the start of the line, the bar, then erase what is left
		// of a longer previous bar.
		fmt.Fprint(p.w, "\r"+p.bar(f, now)+"\x1b[K")
		p.drawn = true
		return
	}
	fmt.Fprintln(p.w, p.logLine(f, now))
}

// figures returns the percentage done, the rate in bytes per second and
// the estimated time left ("--" when unknown).
func (p *progress) figures(done, total int64, now time.Time) (pct int, rate float64, eta string) {
	pct = 100
	if total > 0 {
		pct = int(float64(done) / float64(total) * 100)
	}
	if el := now.Sub(p.start).Seconds(); el > 0 {
		rate = float64(done) / el
	}
	switch {
	case done >= total:
		eta = "0s"
	case rate > 0:
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	default:
		eta = "--"
	}
	return pct, rate, eta
}

// bar is the terminal line: "LABEL [=====>    ] DONE / TOTAL  N/M
// tensors  RATE/s  ETA T".
func (p *progress) bar(f exec.Progress, now time.Time) string {
	const width = 30
	pct, rate, eta := p.figures(f.Bytes, f.TotalBytes, now)
	n := min(pct*width/100, width)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	return fmt.Sprintf("%s [%s] %s / %s  %d/%d tensors  %s/s  ETA %s", p.label, bar, exec.HumanBytes(f.Bytes), exec.HumanBytes(f.TotalBytes),
		f.Tensors, f.TotalTensors, exec.HumanBytes(int64(rate)), eta)
}

// logLine is a log line: "LABEL: PCT% DONE / TOTAL, N/M tensors, RATE/s,
// ETA T (ELAPSED)".
func (p *progress) logLine(f exec.Progress, now time.Time) string {
	pct, rate, eta := p.figures(f.Bytes, f.TotalBytes, now)
	return fmt.Sprintf("%s: %d%% %s / %s, %d/%d tensors, %s/s, ETA %s (%s elapsed)", p.label, pct, exec.HumanBytes(f.Bytes),
		exec.HumanBytes(f.TotalBytes), f.Tensors, f.TotalTensors, exec.HumanBytes(int64(rate)), eta, now.Sub(p.start).Round(time.Second))
}

// finish ends the bar's line, if one was drawn.
func (p *progress) finish() {
	if p != nil && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
