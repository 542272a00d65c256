package blockio

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// NotRegularError is returned by [OpenRegular] and [ReadRegular] for a
// path that is not a regular file (a FIFO, a device, a socket or a
// directory): reading one could block forever or never end.
type NotRegularError struct {
	Path string
	Mode os.FileMode
}

func (e *NotRegularError) Error() string {
	kind := "not a regular file"
	switch {
	case e.Mode&os.ModeNamedPipe != 0:
		kind = "a named pipe (FIFO), not a regular file"
	case e.Mode&os.ModeSocket != 0:
		kind = "a socket, not a regular file"
	case e.Mode&os.ModeDevice != 0:
		kind = "a device, not a regular file"
	case e.Mode.IsDir():
		kind = "a directory, not a regular file"
	}
	return fmt.Sprintf("%s: %s; refusing to read it", e.Path, kind)
}

// OpenRegular opens path for reading, following symbolic links, and
// refuses anything but a regular file. The file is opened non-blocking so
// that opening a FIFO without a writer returns at once instead of waiting
// for one; the flag has no effect on reads of a regular file.
func OpenRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, &NotRegularError{Path: path, Mode: st.Mode()}
	}
	return f, nil
}

// ReadRegular reads the whole regular file at path (see [OpenRegular]);
// a file larger than limit bytes (limit > 0) is an error naming it, and
// nothing is allocated for it.
func ReadRegular(path string, limit int64) ([]byte, error) {
	f, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if limit > 0 && st.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d bytes accepted for this file", path, st.Size(), limit)
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
		return nil, fmt.Errorf("%s: more than the %d bytes accepted for this file", path, limit)
	}
	return b, nil
}
