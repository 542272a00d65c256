//go:build linux

package blockio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// directMin is the smallest copy written with direct I/O: below it the
// second descriptor's open and close cost more than the page cache.
const directMin = 64 << 10

// directFault, when set (by tests), is called before every direct write
// with its file offset and length; an error it returns is that write's.
var directFault func(off int64, n int) error

// directWritten counts the bytes written with direct I/O.
var directWritten atomic.Int64

// DirectWritten returns the number of bytes Copy has written with direct
// I/O since the process started (see SetDirect).
func DirectWritten() int64 { return directWritten.Load() }

// rate is a moving average of the time a kind of write took per MiB, in
// nanoseconds (0: none yet).
type rate struct{ atomic.Int64 }

// note adds a write of n bytes that took d.
func (r *rate) note(n int, d time.Duration) {
	if n < directAlign {
		return
	}
	x := int64(d) * (1 << 20) / int64(n)
	if old := r.Load(); old > 0 {
		x = old + (x-old)/4
	}
	r.Store(max(x, 1))
}

// The recent throughput of page-cache and direct writes of whole blocks,
// for DirectAuto: process-wide, as the state of memory and disk is.
var rateCache, rateDirect rate

// autoBlocks counts DirectAuto's choices; every probeEvery-th goes to
// the way that looks slower, to see whether it still is.
var autoBlocks atomic.Int64

const probeEvery = 16

// chooseDirect reports whether the next block goes direct: always with
// DirectOn; with DirectAuto, the way whose recent writes were faster
// (the page cache first, then direct once, to have both figures), but
// every probeEvery-th block the other way. Writing into the page cache
// is fast while the memory it gets is ready (on the target VM 4 GiB in
// 0.9 s) and slow when it is not (10.6 s: fresh memory the hypervisor
// backs page by page) or when dirty pages are throttled to the disk's
// speed; direct writes go at the disk's speed (1.6-2.5 s there).
func chooseDirect() bool {
	if Direct(directMode.Load()) == DirectOn {
		return true
	}
	c, d := rateCache.Load(), rateDirect.Load()
	switch {
	case c == 0:
		return false
	case d == 0:
		return true
	}
	faster := d < c
	if autoBlocks.Add(1)%probeEvery == 0 {
		return !faster
	}
	return faster
}

// directWriter writes a run of f from pos on, at explicit offsets: the
// whole pages of each block through d, a second descriptor of the same
// file opened with O_DIRECT, and the partial pages at either end of the
// block (and any block whose memory is not aligned like its file offset)
// with pwrite through f. Direct writes move the bytes from the block to
// the disk without copying them into the page cache: on the target VM
// (formats.md §5) 4 GiB took 1.6-2.0 s at 0.2 s CPU, where the same
// bytes written to the page cache took 0.9-10.6 s at as much CPU (the
// hypervisor backs the fresh page-cache memory page by page) and cp
// 2.3-5.5 s. After EINVAL from a direct write (a file system or device
// with other alignment rules) it writes everything with pwrite.
type directWriter struct {
	f, d   *os.File
	pos    int64
	always bool // every block direct, as with DirectOn (Pipe.Sync)
}

// localFS lists the file systems (statfs f_type) where DirectAuto may
// write with direct I/O: local block file systems, where an O_DIRECT
// write goes at the disk's speed. Elsewhere (NFS, where every O_DIRECT
// write is a synchronous round trip; Lustre, GPFS, CephFS, FUSE, overlay,
// tmpfs) Copy writes through the page cache unless SetDirect(DirectOn).
var localFS = map[int64]string{
	0xEF53:     "ext2/3/4",
	0x58465342: "xfs",
	0x9123683E: "btrfs",
}

// directFS reports whether the file system holding fd is in localFS.
func directFS(fd int) bool {
	var s syscall.Statfs_t
	if syscall.Fstatfs(fd, &s) != nil {
		return false
	}
	_, ok := localFS[int64(s.Type)]
	return ok
}

// DirectSupported reports whether Copy may write files in dir with
// direct I/O without SetDirect(DirectOn): dir is on a local block file
// system (see localFS) that takes O_DIRECT.
func DirectSupported(dir string) bool {
	f, err := os.CreateTemp(dir, ".rolltpl-direct-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if !directFS(int(f.Fd())) {
		return false
	}
	d, err := os.OpenFile(f.Name(), os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return false
	}
	d.Close()
	return true
}

// directTo returns the direct writer of w, when w is a regular file open
// for writing at a position (not O_APPEND) whose file system takes
// O_DIRECT and, unless force, is a local one (localFS), and n bytes are
// worth it; nil otherwise.
func directTo(w io.Writer, n int64, force bool) *directWriter {
	f, ok := w.(*os.File)
	if !ok || n < directMin {
		return nil
	}
	fd := int(f.Fd())
	flags, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
	if e != 0 || flags&syscall.O_APPEND != 0 || flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		return nil
	}
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil
	}
	if !force && !directFS(fd) {
		return nil
	}
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil
	}
	// Opening the descriptor's /proc entry opens the same file whatever
	// its name is now; the device and inode are checked all the same.
	d, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	var dst syscall.Stat_t
	if syscall.Fstat(int(d.Fd()), &dst) != nil || dst.Dev != st.Dev || dst.Ino != st.Ino {
		d.Close()
		return nil
	}
	return &directWriter{f: f, d: d, pos: pos}
}

// place returns the first k bytes of raw (a buffer of at least
// k+directAlign bytes) to fill with the bytes at file offset pos: shifted
// so that their address is aligned as pos is, and the whole pages of
// the file are whole pages of memory.
func (w *directWriter) place(raw []byte, pos int64, k int) []byte {
	addr := int64(uintptr(unsafe.Pointer(unsafe.SliceData(raw))))
	s := int((pos - addr) & (directAlign - 1))
	return raw[s : s+k]
}

// Write writes b at the writer's position and advances it. It returns the
// bytes written from the start of b before any error.
func (w *directWriter) Write(b []byte) (int, error) {
	lo := int((w.pos+directAlign-1)&^(directAlign-1) - w.pos) // b[lo:hi]: whole pages
	hi := int((w.pos+int64(len(b)))&^(directAlign-1) - w.pos)
	if w.d == nil || hi <= lo || (uintptr(unsafe.Pointer(unsafe.SliceData(b)))+uintptr(lo))&(directAlign-1) != 0 {
		return w.pwrite(b)
	}
	if !w.always && !chooseDirect() {
		t0 := time.Now()
		k, err := w.pwrite(b)
		if err == nil {
			rateCache.note(k, time.Since(t0))
		}
		return k, err
	}
	done, err := w.pwrite(b[:lo])
	if err != nil {
		return done, err
	}
	t0 := time.Now()
	k, err := w.direct(b[lo:hi])
	if err == nil && w.d != nil {
		rateDirect.note(k, time.Since(t0))
	}
	done += k
	if err != nil {
		return done, err
	}
	k, err = w.pwrite(b[hi:])
	return done + k, err
}

// pwrite writes b at w.pos through the page cache and advances w.pos.
func (w *directWriter) pwrite(b []byte) (int, error) {
	k, err := w.f.WriteAt(b, w.pos)
	w.pos += int64(k)
	return k, err
}

// direct writes b (whole pages, aligned) at w.pos with direct I/O and
// advances w.pos; after EINVAL it closes d and writes b with pwrite
// instead, as it does every later block.
func (w *directWriter) direct(b []byte) (int, error) {
	var k int
	var err error
	if directFault != nil {
		err = directFault(w.pos, len(b))
	}
	if err == nil {
		k, err = w.d.WriteAt(b, w.pos)
		directWritten.Add(int64(k))
	}
	if errors.Is(err, syscall.EINVAL) {
		w.d.Close()
		w.d = nil
		k, err = w.f.WriteAt(b, w.pos)
	}
	w.pos += int64(k)
	return k, err
}

// close closes the direct descriptor and leaves f's position where the
// writer's is, after the last byte written.
func (w *directWriter) close() error {
	if w.d != nil {
		w.d.Close()
	}
	_, err := w.f.Seek(w.pos, io.SeekStart)
	return err
}
