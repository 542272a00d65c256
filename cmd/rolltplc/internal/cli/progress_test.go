package cli

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/runtime/exec"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestProgressBarLine(t *testing.T) {
	p := &progress{label: "HF -> MCA", start: time.Unix(100, 0)}
	got := p.bar(exec.Progress{Bytes: 1 << 30, TotalBytes: 4 << 30, Tensors: 7, TotalTensors: 291}, time.Unix(102, 0))
	want := "HF -> MCA [=======>                      ] 1.00 GiB / 4.00 GiB  7/291 tensors  512.00 MiB/s  ETA 6s"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if isTerminal(&strings.Builder{}) {
		t.Error("a buffer is a terminal")
	}
}

// terminal renders what a terminal shows for s, handling the carriage
// return, the newline and ESC[K (erase to the end of the line): its
// lines, with trailing blanks removed.
func terminal(s string) []string {
	lines := [][]rune{nil}
	col := 0
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		cur := &lines[len(lines)-1]
		switch {
		case rs[i] == '\r':
			col = 0
		case rs[i] == '\n':
			lines = append(lines, nil)
			col = 0
		case rs[i] == '\x1b' && i+2 < len(rs) && rs[i+1] == '[' && rs[i+2] == 'K':
			*cur = (*cur)[:col]
			i += 2
		default:
			for len(*cur) <= col {
				*cur = append(*cur, ' ')
			}
			(*cur)[col] = rs[i]
			col++
		}
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.TrimRight(string(l), " ")
	}
	return out
}

// TestProgressBarRedrawsCleanly: a shorter bar drawn over a longer one
// leaves nothing of it on the screen (once "ETA 0s s").
func TestProgressBarRedrawsCleanly(t *testing.T) {
	clock := &fakeClock{time.Unix(1000, 0)}
	var w strings.Builder
	p := newProgressAt(&w, "HF -> MCA", false, true, 100*time.Millisecond, clock.now)
	const total = 10 << 30
	steps := []struct {
		at      time.Duration
		done    int64
		tensors int
	}{
		{1 * time.Second, 1 << 20, 0},         // slow start: a long ETA
		{2 * time.Second, 5 << 30, 4},         // ETA shrinks
		{2050 * time.Millisecond, 6 << 30, 5}, // within the interval: not drawn
		{3 * time.Second, 9 << 30, 9},
		{4 * time.Second, total, 10}, // the end is always drawn
	}
	var last string
	for _, s := range steps {
		clock.t = time.Unix(1000, 0).Add(s.at)
		f := exec.Progress{Bytes: s.done, TotalBytes: total, Tensors: s.tensors, TotalTensors: 10}
		p.update(f)
		if s.at != 2050*time.Millisecond {
			last = p.bar(f, clock.t)
		}
		if got := terminal(w.String()); len(got) != 1 || got[0] != last {
			t.Fatalf("after %v the terminal shows %q, want %q", s.at, got, last)
		}
	}
	p.finish()
	if diff := cmp.Diff([]string{last, ""}, terminal(w.String())); diff != "" {
		t.Errorf("after finish (-want +got):\n%s", diff)
	}
	if n := strings.Count(w.String(), "\r"); n != 4 {
		t.Errorf("%d redraws, want 4", n)
	}
}

// TestProgressLog: in a log (not a terminal) a line is printed every
// interval, never a carriage return or escape sequence, and none at the end
// (the summary follows); --quiet prints nothing in either mode.
func TestProgressLog(t *testing.T) {
	t0 := time.Unix(1000, 0)
	clock := &fakeClock{t0}
	var w strings.Builder
	p := newProgressAt(&w, "MCA -> HF", false, false, 5*time.Second, clock.now)
	const total = 100 << 20
	for s := 1; s <= 12; s++ { // 12 s at 8 MiB/s, an update every second
		clock.t = t0.Add(time.Duration(s) * time.Second)
		p.update(exec.Progress{Bytes: int64(s) * 8 << 20, TotalBytes: total, Tensors: 2 * s, TotalTensors: 25})
	}
	clock.t = t0.Add(13 * time.Second)
	p.update(exec.Progress{Bytes: total, TotalBytes: total, Tensors: 25, TotalTensors: 25})
	p.finish()
	want := "MCA -> HF: 40% 40.00 MiB / 100.00 MiB, 10/25 tensors, 8.00 MiB/s, ETA 8s (5s elapsed)\n" +
		"MCA -> HF: 80% 80.00 MiB / 100.00 MiB, 20/25 tensors, 8.00 MiB/s, ETA 3s (10s elapsed)\n"
	if diff := cmp.Diff(want, w.String()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}

	for _, tty := range []bool{false, true} {
		var q strings.Builder
		clock.t = t0
		p := newProgressAt(&q, "verify", true, tty, time.Second, clock.now)
		for s := 1; s <= 5; s++ {
			clock.t = t0.Add(time.Duration(s) * time.Second)
			p.update(exec.Progress{Bytes: int64(s), TotalBytes: 5})
		}
		p.finish()
		if q.Len() != 0 {
			t.Errorf("quiet (tty %v) printed %q", tty, q.String())
		}
	}
}

// TestConvertLogsProgress: convert with stderr not a terminal prints
// progress lines (here every nanosecond) before its summary; --quiet
// prints nothing.
func TestConvertLogsProgress(t *testing.T) {
	defer func(d time.Duration) { logEvery = d }(logEvery)
	logEvery = time.Nanosecond
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	writeLlama(t, hf)
	code, _, stderr := run(t, "", "convert", "--from", hf, "--to", filepath.Join(dir, "mca"))
	if code != ExitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	progressLine := regexp.MustCompile(`^HF -> MCA: \d+% [\d.]+ [KMG]?i?B / [\d.]+ [KMG]?i?B, (\d+)/15 tensors, [\d.]+ [KMG]?i?B/s, ETA (\S+) \(\S+ elapsed\)$`)
	n, tensors := 0, 0
	for _, l := range lines[:len(lines)-1] {
		m := progressLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("not a progress line: %q", l)
			continue
		}
		k, _ := strconv.Atoi(m[1])
		if k < tensors {
			t.Errorf("tensors done went back from %d: %q", tensors, l)
		}
		tensors = k
		n++
	}
	if tensors != 14 && tensors != 15 {
		t.Errorf("the last progress line counts %d of 15 tensors done", tensors)
	}
	if n == 0 || !strings.HasPrefix(lines[len(lines)-1], "HF -> MCA (llama): 15 tensors") {
		t.Errorf("want progress lines, then the summary:\n%s", stderr)
	}
	if strings.ContainsAny(stderr, "\r\x1b") {
		t.Errorf("terminal control characters in a log:\n%q", stderr)
	}
	code, _, stderr = run(t, "", "convert", "--quiet", "--from", hf, "--to", filepath.Join(dir, "mca2"))
	if code != ExitOK || stderr != "" {
		t.Errorf("--quiet: exit %d, stderr %q", code, stderr)
	}
}
