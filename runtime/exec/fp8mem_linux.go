//go:build linux

package exec

import "syscall"

// bigAlloc returns n bytes of anonymous memory, mapped for large buffers
// (returned to the system by bigFree, not left to the garbage collector).
func bigAlloc(n int) []byte {
	if n < 1<<16 {
		return make([]byte, n)
	}
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return make([]byte, n)
	}
	return b
}

// bigFree releases a buffer of bigAlloc.
func bigFree(b []byte) {
	if len(b) >= 1<<16 {
		syscall.Munmap(b) // fails harmlessly on a make'd fallback buffer
	}
}
