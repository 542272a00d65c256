//go:build linux

package blockio

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// directDir returns a temporary folder on a local file system taking
// O_DIRECT (DirectSupported), or skips the test.
func directDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if !DirectSupported(dir) {
		t.Skipf("no direct I/O on %s", dir)
	}
	return dir
}

// TestDirectOnlyOnLocalFS: DirectAuto writes with direct I/O only on a
// local block file system; on another (tmpfs here, standing for NFS,
// Lustre, FUSE) even a synced file goes through the page cache, unless
// DirectOn forces it.
func TestDirectOnlyOnLocalFS(t *testing.T) {
	defer SetDirect(SetDirect(DirectAuto))
	var s syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &s); err != nil || s.Type != 0x01021994 {
		t.Skip("no tmpfs at /dev/shm")
	}
	shm, err := os.MkdirTemp("/dev/shm", "rolltpl-blockio-")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(shm)
	if DirectSupported(shm) {
		t.Errorf("DirectSupported(%s) on tmpfs", shm)
	}
	src := make([]byte, 1<<20)
	before := DirectWritten()
	got, _, err := copyToFile(t, filepath.Join(shm, "synced"), &Pipe{Sync: true}, 0, src, "")
	if err != nil {
		t.Fatal(err)
	}
	if d := DirectWritten() - before; d != 0 || len(got) != len(src) {
		t.Errorf("tmpfs, DirectAuto, Sync: %d bytes direct, file %d bytes; want 0 direct, %d", d, len(got), len(src))
	}
	if err := syscall.Statfs(os.TempDir(), &s); err == nil && s.Type == 0xEF53 && !DirectSupported(t.TempDir()) {
		t.Errorf("DirectSupported(ext4 %s) = false", os.TempDir())
	}
}

// copyToFile writes head, then n bytes of src from off through p.Copy,
// then tail with f.Write to a new file, and returns the file's bytes and
// Copy's count and error.
func copyToFile(t *testing.T, path string, p *Pipe, head int, src []byte, tail string) ([]byte, int64, error) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(bytes.Repeat([]byte{'h'}, head)); err != nil {
		t.Fatal(err)
	}
	if err := Preallocate(f, int64(head), int64(len(src))); err != nil {
		t.Fatal(err)
	}
	n, cerr := p.Copy(f, int64(len(src)), func(b []byte, off int64) error {
		copy(b, src[off:])
		return nil
	}, nil)
	if cerr == nil {
		if _, err := f.Write([]byte(tail)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return got, n, cerr
}

// TestCopyDirect copies runs of every shape (starting at aligned and
// unaligned file offsets, one block or several, block sizes that are and
// are not multiples of the page) to real files with direct writes on and
// off: the files are identical, hold the bytes in order with the bytes
// written after Copy where they belong, and the whole pages went through
// direct I/O.
func TestCopyDirect(t *testing.T) {
	dir := directDir(t)
	src := make([]byte, 3<<20+777)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	defer SetDirect(SetDirect(DirectOn))
	for _, tc := range []struct {
		head, n, block int
	}{
		{0, 1 << 20, 0},          // one aligned block
		{1, 100 << 10, 0},        // one unaligned block
		{4095, 3<<20 + 777, 0},   // two blocks, unaligned at both ends
		{4096, 3 << 20, 1 << 20}, // aligned blocks
		{64, 3<<20 + 1, 100_000}, // blocks of no whole pages
		{8, 70_000, 4096},        // blocks of one page, none whole
		{0, 70_000, 4096},        // blocks of one page, aligned
		{13, 5000, 0},            // too small for direct I/O
	} {
		t.Run(fmt.Sprintf("%d+%d/%d", tc.head, tc.n, tc.block), func(t *testing.T) {
			want := append(append(bytes.Repeat([]byte{'h'}, tc.head), src[:tc.n]...), "tail"...)
			var files [3][]byte
			for i, mode := range []Direct{DirectOff, DirectOn, DirectAuto} {
				SetDirect(mode)
				on := mode == DirectOn
				before := DirectWritten()
				got, n, err := copyToFile(t, filepath.Join(dir, fmt.Sprint(on)), &Pipe{Block: tc.block}, tc.head, src[:tc.n], "tail")
				if err != nil || n != int64(tc.n) {
					t.Fatalf("mode %d: %d bytes, %v", mode, n, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("mode %d: the file differs (%d bytes, want %d)", mode, len(got), len(want))
				}
				direct := DirectWritten() - before
				// The whole pages of each block go direct when the run is
				// large enough.
				block := cmp.Or(tc.block, DefaultBlock)
				var pages int64
				for off := 0; off < tc.n; off += block {
					lo, hi := tc.head+off, tc.head+min(off+block, tc.n)
					pages += max(0, int64(hi&^4095-(lo+4095)&^4095))
				}
				switch {
				case mode == DirectOff && direct != 0:
					t.Errorf("direct writes off: %d bytes written direct", direct)
				case on && tc.n >= directMin && direct != pages:
					t.Errorf("%d bytes written direct, want the %d of the whole pages", direct, pages)
				case tc.n < directMin && direct != 0:
					t.Errorf("a run of %d bytes: %d bytes written direct", tc.n, direct)
				}
				files[i] = got
			}
			if !bytes.Equal(files[0], files[1]) || !bytes.Equal(files[0], files[2]) {
				t.Errorf("direct, page-cache and auto writes differ")
			}
			// A Pipe for the page cache writes nothing direct.
			before := DirectWritten()
			got, n, err := copyToFile(t, filepath.Join(dir, "pagecache"), &Pipe{Block: tc.block, PageCache: true}, tc.head, src[:tc.n], "tail")
			if err != nil || n != int64(tc.n) || !bytes.Equal(got, want) {
				t.Errorf("PageCache: %d bytes, %v; the file is right: %v", n, err, bytes.Equal(got, want))
			}
			if d := DirectWritten() - before; d != 0 {
				t.Errorf("PageCache: %d bytes written direct", d)
			}
		})
	}
}

// TestCopyDirectErrors: a direct write that fails ends the copy with its
// error, the count is the bytes before it (all in the file, which is
// positioned after them) and no goroutine is left; one that fails with
// EINVAL (alignment the device does not take) falls back to writes
// through the page cache, and the file is complete.
func TestCopyDirectErrors(t *testing.T) {
	dir := directDir(t)
	defer SetDirect(SetDirect(DirectOn))
	src := make([]byte, 5<<20)
	for i := range src {
		src[i] = byte(i * 31)
	}
	before := runtime.NumGoroutine()
	head := 100
	bad := int64(2<<20 + 4096) // file offset of the third block's whole pages
	directFault = func(off int64, n int) error {
		if off == bad {
			return syscall.EIO
		}
		return nil
	}
	defer func() { directFault = nil }()
	path := filepath.Join(dir, "eio")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(bytes.Repeat([]byte{'h'}, head))
	p := &Pipe{Block: 1 << 20}
	n, err := p.Copy(f, int64(len(src)), func(b []byte, off int64) error { copy(b, src[off:]); return nil }, nil)
	if !errors.Is(err, syscall.EIO) || n != bad-int64(head) {
		t.Errorf("failing direct write: %d bytes, %v; want %d and EIO", n, err, bad-int64(head))
	}
	if pos, _ := f.Seek(0, 1); pos != bad {
		t.Errorf("file positioned at %d after the failure, want %d", pos, bad)
	}
	got, _ := os.ReadFile(path)
	if len(got) < int(bad) || !bytes.Equal(got[head:bad], src[:bad-int64(head)]) {
		t.Errorf("the bytes before the failure are not all in the file")
	}
	for i := 0; i < 100 && runtime.NumGoroutine() > before; i++ {
		time.Sleep(time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines left running", g-before)
	}

	calls := 0
	directFault = func(off int64, n int) error {
		calls++
		return syscall.EINVAL
	}
	want := append(append(bytes.Repeat([]byte{'h'}, head), src...), "tail"...)
	got, n, err = copyToFile(t, filepath.Join(dir, "einval"), p, head, src, "tail")
	if err != nil || n != int64(len(src)) || !bytes.Equal(got, want) {
		t.Errorf("after EINVAL: %d bytes, %v; the file is right: %v", n, err, bytes.Equal(got, want))
	}
	if calls != 1 {
		t.Errorf("%d direct writes tried, want 1 (then the page cache only)", calls)
	}
}

// TestCopyDirectNotPossible: a file opened O_APPEND, or read-only, or a
// pipe, is written as before, without direct I/O.
func TestCopyDirectNotPossible(t *testing.T) {
	dir := directDir(t)
	defer SetDirect(SetDirect(DirectOn))
	path := filepath.Join(dir, "append")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if directTo(f, 1<<20, true) != nil {
		t.Errorf("O_APPEND file: direct writer")
	}
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if directTo(ro, 1<<20, true) != nil {
		t.Errorf("read-only file: direct writer")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if directTo(w, 1<<20, true) != nil {
		t.Errorf("pipe: direct writer")
	}
	rw, err := os.Create(filepath.Join(dir, "plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if directTo(rw, directMin-1, true) != nil {
		t.Errorf("%d bytes: direct writer", directMin-1)
	}
	d := directTo(rw, directMin, true)
	if d == nil {
		t.Fatalf("a plain file: no direct writer")
	}
	d.close()
}

// TestChooseDirect: DirectAuto takes the page cache first, then direct
// once, then the way that was faster, but every probeEvery-th block the
// other way; DirectOn always goes direct.
func TestChooseDirect(t *testing.T) {
	defer SetDirect(SetDirect(DirectAuto))
	saved := [2]int64{rateCache.Load(), rateDirect.Load()}
	defer func() { rateCache.Store(saved[0]); rateDirect.Store(saved[1]) }()
	rateCache.Store(0)
	rateDirect.Store(0)
	autoBlocks.Store(0)
	if chooseDirect() {
		t.Errorf("no figures yet: direct")
	}
	rateCache.note(1<<20, time.Millisecond)
	if !chooseDirect() {
		t.Errorf("no direct figure yet: page cache")
	}
	rateDirect.note(1<<20, 3*time.Millisecond)
	count := func() (direct int) {
		for range 10 * probeEvery {
			if chooseDirect() {
				direct++
			}
		}
		return direct
	}
	if n := count(); n != 10 {
		t.Errorf("page cache faster: %d of %d blocks direct, want 10 probes", n, 10*probeEvery)
	}
	for range 8 { // the page cache slows down (a moving average: it takes a few writes)
		rateCache.note(1<<20, 10*time.Millisecond)
	}
	if n := count(); n != 10*probeEvery-10 {
		t.Errorf("direct faster: %d of %d blocks direct, want all but 10 probes", n, 10*probeEvery)
	}
	// A writer for a file that is synced goes direct in auto mode.
	rateCache.Store(1)
	rateDirect.Store(1000)
	autoBlocks.Store(0) // the next choice is not a probe
	dir := directDir(t)
	src := make([]byte, 1<<20)
	for _, sync := range []bool{false, true} {
		before := DirectWritten()
		if _, _, err := copyToFile(t, filepath.Join(dir, fmt.Sprint(sync)), &Pipe{Sync: sync}, 0, src, ""); err != nil {
			t.Fatal(err)
		}
		if d := DirectWritten() - before; sync != (d == int64(len(src))) {
			t.Errorf("Sync %v: %d of %d bytes direct", sync, d, len(src))
		}
	}
	SetDirect(DirectOn)
	for range 8 {
		rateCache.note(1<<20, time.Microsecond)
	}
	if n := count(); n != 10*probeEvery {
		t.Errorf("DirectOn: %d of %d blocks direct", n, 10*probeEvery)
	}
}
