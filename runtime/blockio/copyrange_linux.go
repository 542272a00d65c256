//go:build linux

package blockio

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// maxCopyRange bounds one copy_file_range call, so that a cancelled or
// failing copy stops within a fraction of a second.
const maxCopyRange = 64 << 20

// CopyRange copies n bytes of src from offset off to dst at dst's current
// offset, which it advances, inside the kernel (copy_file_range(2)): the
// bytes are copied once, page cache to page cache, as cp does, and never
// pass through user memory. It returns ok == false, having written
// nothing, when the kernel or the file systems cannot copy this way
// (another file system, an old kernel, an architecture without the call
// here); the caller then copies otherwise. A source shorter than off+n is
// an error naming it.
func CopyRange(dst, src *os.File, off, n int64) (written int64, ok bool, err error) {
	if copyFileRangeTrap == 0 {
		return 0, false, nil
	}
	start := off
	for written < n {
		k, _, e := syscall.Syscall6(copyFileRangeTrap, src.Fd(), uintptr(unsafe.Pointer(&off)), dst.Fd(), 0, uintptr(min(n-written, maxCopyRange)), 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0 && written == 0 && unsupported(e):
			return 0, false, nil
		case e != 0:
			return written, true, fmt.Errorf("%s: copying %d bytes from offset %d: %w", src.Name(), n, start, e)
		case k == 0:
			return written, true, fmt.Errorf("%s: %d bytes at offset %d: only %d there (file shorter than expected)", src.Name(), n, start, written)
		}
		written += int64(k) // the kernel advanced off
	}
	return written, true, nil
}

// unsupported reports whether copy_file_range failed because it cannot
// copy between these files at all, rather than because of the data or
// the disk.
func unsupported(e syscall.Errno) bool {
	for _, u := range []syscall.Errno{syscall.ENOSYS, syscall.EXDEV, syscall.EOPNOTSUPP, syscall.EINVAL, syscall.EBADF, syscall.EPERM} {
		if errors.Is(e, u) {
			return true
		}
	}
	return false
}
