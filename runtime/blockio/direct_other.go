//go:build !linux

package blockio

import "io"

// directWriter is Linux's; elsewhere there is none.
type directWriter struct {
	pos    int64
	always bool
}

// directTo returns nil: only Linux writes with direct I/O here.
func directTo(w io.Writer, n int64, force bool) *directWriter { return nil }

// DirectSupported returns false: only Linux writes with direct I/O here.
func DirectSupported(dir string) bool { return false }

func (w *directWriter) place(raw []byte, pos int64, k int) []byte { return raw[:k] }
func (w *directWriter) Write(b []byte) (int, error)               { return 0, io.ErrShortWrite }
func (w *directWriter) close() error                              { return nil }

// DirectWritten returns 0: only Linux writes with direct I/O here.
func DirectWritten() int64 { return 0 }
