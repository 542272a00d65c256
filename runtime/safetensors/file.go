package safetensors

import (
	"fmt"
	"os"

	"github.com/rolltpl/rolltpl/lang/srcfile"
)

// File is an open safetensors file, mapped read-only into memory.
//
// A File may be used from several goroutines at once. The slices returned
// by [File.Data] are valid until [File.Close].
type File struct {
	hdr  *Header
	data []byte // the whole file
}

// Open maps the safetensors file at path read-only and validates its
// header (see the package documentation for the checks). Tensor bytes are
// not read until they are used.
func Open(path string) (*File, error) {
	f, st, err := srcfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the mapping stays valid after the descriptor is closed
	size := st.Size()
	if size < 8 {
		// Nothing to map; report the error parseFile would.
		return nil, fileErr(path, "file is %d bytes, too short for the 8-byte header length", size)
	}
	if int64(int(size)) != size {
		return nil, fileErr(path, "file of %d bytes is too large to map", size)
	}
	data, err := mapFile(f, int(size))
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	hdr, err := parseFile(path, data)
	if err != nil {
		unmapFile(data)
		return nil, err
	}
	return &File{hdr: hdr, data: data}, nil
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.hdr.Path }

// Header returns the file's validated header.
func (f *File) Header() *Header { return f.hdr }

// Tensors returns the tensors by increasing offset, which is the order of
// their bytes in the file. The slice must not be modified.
func (f *File) Tensors() []TensorInfo { return f.hdr.Tensors }

// Lookup returns the tensor called name.
func (f *File) Lookup(name string) (TensorInfo, bool) { return f.hdr.Lookup(name) }

// Metadata returns the "__metadata__" map of the header, or nil if there
// is none. The map must not be modified.
func (f *File) Metadata() map[string]string { return f.hdr.Metadata }

// Data returns the bytes of tensor t as a slice of the file mapping,
// without copying. The slice is read-only (writing to it faults) and valid
// until Close; its alignment is whatever the file gives. Data panics if t
// does not lie in the data region of f, for example because it belongs to
// another file.
func (f *File) Data(t TensorInfo) []byte {
	if t.Offset < f.hdr.DataStart() || t.Size < 0 || t.Offset > int64(len(f.data))-t.Size {
		panic(fmt.Sprintf("safetensors: tensor %q at [%d, +%d) is not in the data region of %s", t.Name, t.Offset, t.Size, f.hdr.Path))
	}
	return f.data[t.Offset : t.Offset+t.Size : t.Offset+t.Size]
}

// Release tells the kernel that the pages of tensor t are not needed any
// more (madvise MADV_DONTNEED on the whole pages inside t's byte range; the
// pages at either end may be shared with neighbouring tensors and are
// kept). This drops them from the process's resident set while they stay
// in the page cache, so a converter that streams through a file larger than
// memory keeps its RSS bounded. The bytes remain readable: a later Data
// access simply faults them in again.
func (f *File) Release(t TensorInfo) error {
	if f.data == nil {
		return fmt.Errorf("safetensors: Release on closed file %s", f.hdr.Path)
	}
	ps := int64(os.Getpagesize())
	start := (t.Offset + ps - 1) / ps * ps
	end := (t.Offset + t.Size) / ps * ps
	if t.Offset < 0 || end > int64(len(f.data)) || end <= start {
		return nil
	}
	if err := releasePages(f.data[start:end]); err != nil {
		return fmt.Errorf("%s: tensor %q: madvise: %w", f.hdr.Path, t.Name, err)
	}
	return nil
}

// Close unmaps the file. Slices returned by Data must not be used
// afterwards.
func (f *File) Close() error {
	if f.data == nil {
		return nil
	}
	err := unmapFile(f.data)
	f.data = nil
	if err != nil {
		return fmt.Errorf("%s: munmap: %w", f.hdr.Path, err)
	}
	return nil
}
