//go:build linux

package exec

import (
	"os"
	"syscall"
	"unsafe"
)

var pageSize = uintptr(os.Getpagesize())

// virtualRegion reserves n bytes of address space that is never written
// and, as long as nobody reads it, never backed by memory: read-only
// private anonymous memory without swap reservation. The planner builds
// its stand-in tensors on it, since the ops it runs only slice them.
func virtualRegion(n int64) ([]byte, func(), error) {
	if n <= 0 {
		return nil, func() {}, nil
	}
	b, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, nil, err
	}
	return b, func() { syscall.Munmap(b) }, nil
}

// dropPages tells the kernel that the pages holding b are not needed (a
// MADV_DONTNEED over the whole pages b touches). b must lie in a shared
// read-only file mapping: there the pages stay in the page cache and are
// faulted back in if read again, so rounding outwards is harmless.
func dropPages(b []byte) { dropRange(addrRange(b)) }

// dropRange is dropPages for the address range [start, end), which must
// lie in shared read-only file mappings.
func dropRange(start, end uintptr) {
	start &^= pageSize - 1
	end = (end + pageSize - 1) &^ (pageSize - 1)
	if end > start {
		syscall.Syscall(syscall.SYS_MADVISE, start, end-start, syscall.MADV_DONTNEED)
	}
}

// addrRange returns the address range of b.
func addrRange(b []byte) (uintptr, uintptr) {
	if len(b) == 0 {
		return 0, 0
	}
	s := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return s, s + uintptr(len(b))
}

// arena is a reusable staging buffer for the ops that produce new bytes
// (the transposing expert splits, the zero-centred norm): anonymous memory
// with transparent huge pages requested, so that first touch costs far
// less than fresh 4 KiB pages (formats.md §5.2), reused from one op group
// to the next.
type arena struct {
	buf     []byte
	used    int
	retired [][]byte
}

const hugePage = 2 << 20

func (a *arena) alloc(n int) []byte {
	if a.used+n > len(a.buf) {
		// Grow: the old buffer may still be referenced by the current
		// group's results, so it is dropped only at reset.
		size := max(2*len(a.buf), (a.used+n+hugePage-1)/hugePage*hugePage)
		b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		if err != nil {
			return make([]byte, n)
		}
		syscall.Madvise(b, 14) // MADV_HUGEPAGE (Linux)
		if a.buf != nil {
			a.retired = append(a.retired, a.buf)
		}
		a.buf, a.used = b, 0
	}
	p := a.buf[a.used : a.used+n : a.used+n]
	a.used += n
	return p
}

// reset makes the whole buffer available again; results of the previous
// group must not be used afterwards.
func (a *arena) reset() {
	for _, b := range a.retired {
		syscall.Munmap(b)
	}
	a.retired = nil
	a.used = 0
}

func (a *arena) free() {
	a.reset()
	if a.buf != nil {
		syscall.Munmap(a.buf)
		a.buf = nil
	}
}
