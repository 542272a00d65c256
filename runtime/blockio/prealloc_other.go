//go:build !linux

package blockio

import "os"

// Preallocate does nothing where fallocate is not available.
func Preallocate(f *os.File, off, n int64) error { return nil }
