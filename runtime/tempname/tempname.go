// Package tempname names the temporary files and folders rolltpl writes
// so that a later run can tell a dead writer's leftovers from a live
// writer's work: every name is a fixed prefix followed by
// "<host>-<pid>-<start>-<random>", the host name, process id and process
// start time (clock ticks since boot, Linux; 0 elsewhere) of the writer.
//
// A temporary is stale when its writer ran on this host and is no longer
// running: no process has its pid, or the process with that pid started
// at another time (the pid was reused, as in a restarted container). A
// temporary written on another host is never stale here: its writer may
// still be running there.
package tempname

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Owner is the writer recorded in a temporary name.
type Owner struct {
	Host  string
	PID   int
	Start uint64
}

func (o Owner) String() string { return fmt.Sprintf("pid %d on host %s", o.PID, o.Host) }

var (
	selfOnce sync.Once
	self     Owner
)

// Self is the Owner recorded by this process.
func Self() Owner {
	selfOnce.Do(func() {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		self = Owner{Host: sanitize(h), PID: os.Getpid(), Start: procStart(os.Getpid())}
	})
	return self
}

// sanitize keeps a host name usable inside a file name.
func sanitize(h string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, h)
}

// New returns a new name: prefix followed by this process's owner fields
// and a random number.
func New(prefix string) string {
	s := Self()
	return fmt.Sprintf("%s%s-%d-%d-%d", prefix, s.Host, s.PID, s.Start, rand.Uint32())
}

// Parse returns the owner recorded in name, which must start with prefix
// and follow it with the fields New writes.
func Parse(name, prefix string) (Owner, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return Owner{}, false
	}
	// From the right: random, start, pid; the host is what remains.
	var nums [3]uint64
	for i := range nums {
		k := strings.LastIndexByte(rest, '-')
		if k < 0 {
			return Owner{}, false
		}
		n, err := strconv.ParseUint(rest[k+1:], 10, 64)
		if err != nil {
			return Owner{}, false
		}
		nums[i], rest = n, rest[:k]
	}
	if rest == "" || nums[2] == 0 || nums[2] > 1<<31 {
		return Owner{}, false
	}
	return Owner{Host: rest, PID: int(nums[2]), Start: nums[1]}, true
}

// Alive reports whether o may still be running: it ran on another host,
// or a process with its pid and start time runs here.
func (o Owner) Alive() bool {
	s := Self()
	if o.Host != s.Host {
		return true
	}
	if o.PID == s.PID {
		return o.Start == s.Start || o.Start == 0 || s.Start == 0
	}
	if !pidExists(o.PID) {
		return false
	}
	if o.Start == 0 {
		return true
	}
	st := procStart(o.PID)
	return st == 0 || st == o.Start
}

// Found is a temporary found in a directory.
type Found struct {
	Path  string
	Owner Owner
}

// Scan lists the entries of dir named prefix+owner fields, split into
// stale ones and the others (live). A missing dir holds none.
func Scan(dir, prefix string) (stale, live []Found, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		o, ok := Parse(e.Name(), prefix)
		if !ok {
			continue
		}
		f := Found{Path: filepath.Join(dir, e.Name()), Owner: o}
		if o.Alive() {
			live = append(live, f)
		} else {
			stale = append(stale, f)
		}
	}
	return stale, live, nil
}

// RemoveError lists the stale temporaries RemoveStale could not remove.
type RemoveError struct {
	Failed []error
}

func (e *RemoveError) Error() string { return errors.Join(e.Failed...).Error() }

// RemoveStale removes the stale temporaries named prefix+owner fields in
// dir (files or whole folders) and returns those removed and the live
// ones left. Those it cannot remove (another user's) are skipped and
// returned as a *RemoveError, after the others were removed.
func RemoveStale(dir, prefix string) (removed, live []Found, err error) {
	stale, live, err := Scan(dir, prefix)
	if err != nil {
		return nil, nil, err
	}
	var failed []error
	for _, f := range stale {
		if err := os.RemoveAll(f.Path); err != nil {
			failed = append(failed, fmt.Errorf("could not remove %s, left by %s which is no longer running: %w", f.Path, f.Owner, err))
			continue
		}
		removed = append(removed, f)
	}
	if len(failed) > 0 {
		return removed, live, &RemoveError{Failed: failed}
	}
	return removed, live, nil
}

// Mkdir creates a new folder in dir named by New(prefix) (perm less the
// umask) and returns its path.
func Mkdir(dir, prefix string, perm fs.FileMode) (string, error) {
	for try := 0; ; try++ {
		p := filepath.Join(dir, New(prefix))
		err := os.Mkdir(p, perm)
		if errors.Is(err, fs.ErrExist) && try < 100 {
			continue
		}
		if err != nil {
			return "", err
		}
		return p, nil
	}
}
