//go:build unix

package tempname

import (
	"errors"
	"syscall"
)

// pidExists reports whether a process with pid exists (signal 0; EPERM
// means it exists under another user).
func pidExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
