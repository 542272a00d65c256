// Package srcfile reads the files rolltpl is given: the front end's
// templates, imports and config.json, the runtime's configs, indexes,
// safetensors and torch files. It reads only regular files, so that a
// named pipe, a device, a socket or a folder given as a file is an error
// naming it instead of a read that never ends (or never starts: opening
// a FIFO with no writer blocks). It is the one owner of that rule; the
// runtime imports it (lang is the lowest layer).
package srcfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// NotRegularError is the error for a path that is not a regular file (a
// FIFO, a device, a socket or a folder): reading one could block forever
// or never end.
type NotRegularError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s: %s, not a regular file; refusing to read it", e.Path, kind(e.Mode))
}

// kind names a file mode's type.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a file of mode " + m.String()
}

// Open opens the regular file name for reading, following symbolic
// links, and returns it with its FileInfo; anything else is a
// [*NotRegularError]. The file is opened
// without blocking, so that opening a FIFO with no writer returns at once
// instead of waiting for one; the flag has no effect on reads of a
// regular file.
func Open(name string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, &NotRegularError{Path: name, Mode: st.Mode()}
	}
	return f, st, nil
}

// ReadFile returns the contents of the regular file name (see [Open]).
func ReadFile(name string) ([]byte, error) {
	return ReadFileMax(name, 0)
}

// ReadFileMax is ReadFile refusing a file of more than limit bytes (limit >
// 0) with an error naming it: nothing is allocated for its size.
func ReadFileMax(name string, limit int64) ([]byte, error) {
	f, st, err := Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if limit > 0 && st.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d bytes accepted for this file", name, st.Size(), limit)
	}
	// The size is a hint: the file may change while it is read.
	r := io.Reader(f)
	if limit > 0 {
		r = io.LimitReader(f, limit+1)
	}
	b := make([]byte, 0, st.Size()+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if limit > 0 && int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: more than the %d bytes accepted for this file", name, limit)
	}
	return b, nil
}
