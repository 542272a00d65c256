package safetensors

import (
	"os"
	"syscall"
)

// mapFile maps the first size bytes of f read-only and shared.
func mapFile(f *os.File, size int) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
}

func unmapFile(b []byte) error { return syscall.Munmap(b) }

// releasePages drops the page-aligned range b from the resident set.
func releasePages(b []byte) error { return syscall.Madvise(b, syscall.MADV_DONTNEED) }
