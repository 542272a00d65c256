//go:build !linux

package safetensors

import (
	"io"
	"os"
)

// mapFile reads the first size bytes of f into memory, on systems where
// this package does not use mmap.
func mapFile(f *os.File, size int) ([]byte, error) {
	b := make([]byte, size)
	_, err := io.ReadFull(f, b)
	return b, err
}

func unmapFile([]byte) error { return nil }

func releasePages([]byte) error { return nil }
