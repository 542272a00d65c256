//go:build linux

package blockio

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Preallocate reserves disk space for the n bytes of f from off without
// changing its size (fallocate with FALLOC_FL_KEEP_SIZE), so that a full
// disk is reported before anything is written. A file system that cannot
// preallocate is not an error; a full disk or quota is, giving
// the bytes asked for and those free (errors.Is(err, ErrNoSpace)); the
// caller names the file.
func Preallocate(f *os.File, off, n int64) error {
	if n <= 0 {
		return nil
	}
	for {
		err := syscall.Fallocate(int(f.Fd()), 1 /* FALLOC_FL_KEEP_SIZE */, off, n)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
			msg := fmt.Sprintf("reserving %s for the output: %v", HumanBytes(n), err)
			var fs syscall.Statfs_t // Bsize is int32 on 32-bit targets
			if syscall.Fstatfs(int(f.Fd()), &fs) == nil {
				msg += fmt.Sprintf(" (%s free)", HumanBytes(int64(fs.Bavail)*int64(fs.Bsize)))
			}
			return &spaceError{msg: msg, err: err}
		default: // EOPNOTSUPP, ENOSYS, ...: the file system does not preallocate
			return nil
		}
	}
}
