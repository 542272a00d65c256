// Package blockio streams bytes to a file through a few reused buffers and
// two goroutines: one fills a block (typically reading it from the page
// cache with pread, or gathering small pieces, or decoding FP8 codes) and
// checksums it, the other writes the block before it. To a regular file
// the whole pages of a large copy may be written with direct I/O, block
// by block, whichever of it and the page cache was faster lately (see
// SetDirect, chooseDirect and directWriter), the rest with pwrite; where
// direct I/O is not possible, with vmsplice and splice (see
// spliceWriter).
//
// On the target VM (formats.md §5) this is the fastest way found to copy
// tensor data between files: for 2 GiB at an unaligned source offset,
// pipelined 2 MiB pread/write ran in 0.65-0.86 s where cp took 0.84-1.0 s,
// copy_file_range 1.15-1.3 s (the kernel's splice path handles unaligned
// page-cache offsets in small pieces) and write(2) straight from a file
// mapping 2.1-2.5 s (one page fault per 4 KiB). Blocks of 2 MiB keep both
// buffers in flight inside the 32 MiB L3; 4 MiB and larger blocks ran
// slower, 16 MiB twice as slow. Writing into the page cache is what
// varies most there: 4 GiB written with pwrite took 0.9-10.6 s of CPU
// time, nearly all of it in the copy into fresh page-cache pages (the
// hypervisor backs guest memory the guest returned to it page by page on
// first touch), where direct writes of the same bytes took 1.6-2.5 s at
// 0.2 s CPU, whatever the memory's state.
package blockio

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync/atomic"
)

// ErrNoSpace is matched (errors.Is) by the error of a Preallocate that
// found no room on the disk or in the quota.
var ErrNoSpace = errors.New("no space for the output")

// spaceError is a failed reservation: its message gives the bytes asked
// for and those free, it unwraps to the system's error and matches
// ErrNoSpace.
type spaceError struct {
	msg string
	err error
}

func (e *spaceError) Error() string        { return e.msg }
func (e *spaceError) Unwrap() error        { return e.err }
func (e *spaceError) Is(target error) bool { return target == ErrNoSpace }

// directAlign is the alignment direct I/O needs of file offsets, lengths
// and memory addresses: the page size, a multiple of every disk's
// logical block size in use.
const directAlign = 4096

// DefaultBlock is the block size a zero Pipe uses.
const DefaultBlock = 2 << 20

// DefaultBuffers is the number of blocks a zero Pipe keeps.
const DefaultBuffers = 3

// Pipe copies byte streams through reused blocks. Its buffers are
// allocated on first use, sized to the copies (see buffers), and kept, so
// one Pipe should serve a whole file.
// A Pipe runs one Copy at a time.
type Pipe struct {
	// Block is the block size (DefaultBlock when 0); Buffers the number of
	// blocks (DefaultBuffers when < 2). Both are read on first use only.
	Block, Buffers int
	// PageCache makes Copy write every byte through the page cache,
	// whatever SetDirect says: for a file that is read back right away
	// (verify's intermediate checkpoint), which the page cache then
	// serves from memory.
	PageCache bool
	// Sync says the file is fsynced once complete: with DirectAuto the
	// whole pages then go direct, as they must reach the disk anyway.
	Sync  bool
	block int
	bufs  [][]byte // nil or at least the copy+directAlign bytes (see buffers, directWriter.place)
}

func (p *Pipe) init() {
	if p.bufs != nil {
		return
	}
	block, n := p.Block, p.Buffers
	if block <= 0 {
		block = DefaultBlock
	}
	if n < 2 {
		n = DefaultBuffers
	}
	p.block = block
	p.bufs = make([][]byte, n)
}

// buffers returns the first k buffers, each at least size+directAlign
// bytes. A buffer is allocated when first needed and grown, to the next
// power of two up to the block size, when a larger copy needs it: a Pipe
// that writes a file of small tensors holds a few KiB, not
// Buffers x Block bytes of fresh memory (which on the target VM costs
// page faults and GC work for every small output file).
func (p *Pipe) buffers(k, size int) [][]byte {
	want := min(p.block, 1<<bits.Len(uint(max(size, 4096)-1)))
	for i := range p.bufs[:k] {
		if len(p.bufs[i]) < want+directAlign {
			p.bufs[i] = make([]byte, want+directAlign)
		}
	}
	return p.bufs[:k]
}

// Direct says how Copy writes to a regular file (see SetDirect).
type Direct int32

const (
	// DirectAuto, the default, chooses block by block between the page
	// cache and direct I/O, by the throughput each had recently.
	DirectAuto Direct = iota
	// DirectOn writes the whole pages of every block with direct I/O.
	DirectOn
	// DirectOff writes every byte through the page cache.
	DirectOff
)

// directMode is SetDirect's setting.
var directMode atomic.Int32

// SetDirect sets how Copy writes to regular files and returns the
// previous setting. Unless DirectOff, Copy writes the whole pages of a
// copy of at least 64 KiB to a regular file (Linux, a file system taking
// O_DIRECT; with DirectAuto only a local block file system, see
// DirectSupported) with direct I/O where it chooses to, through a second
// descriptor of the file: the bytes go from the block to the disk, not
// into the page cache (see directWriter); the partial pages at either end
// go through the page cache.
func SetDirect(d Direct) Direct { return Direct(directMode.Swap(int32(d))) }

// Fill fills b with the bytes at offset off of the stream being copied.
// Copy calls it for consecutive blocks, in order, from one goroutine.
type Fill func(b []byte, off int64) error

// Copy writes n bytes to w, block by block: fill produces each block and
// sum, when not nil, sees it (on the same goroutine as fill) before the
// block is written. While w writes one block, the next is being filled.
// It returns the number of bytes written; an error from fill or w stops
// the copy, and Copy returns only after the filling goroutine has ended.
// A panic in fill or sum is returned as an error. A regular file is left
// positioned after the bytes written (also when they were written at
// explicit offsets, see SetDirect).
func (p *Pipe) Copy(w io.Writer, n int64, fill Fill, sum func(b []byte)) (written int64, err error) {
	if n <= 0 {
		return 0, nil
	}
	p.init()
	block := int64(p.block)
	place := func(raw []byte, off int64, k int) []byte { return raw[:k] }
	var out io.Writer
	if mode := Direct(directMode.Load()); mode != DirectOff && !p.PageCache {
		if dw := directTo(w, n, mode == DirectOn); dw != nil {
			dw.always = p.Sync
			defer func() {
				if cerr := dw.close(); err == nil {
					err = cerr
				}
			}()
			base := dw.pos
			place = func(raw []byte, off int64, k int) []byte { return dw.place(raw, base+off, k) }
			out = dw
		}
	}
	if n <= block {
		b := place(p.buffers(1, int(n))[0], 0, int(n))
		if err := produce(fill, sum, b, 0); err != nil {
			return 0, err
		}
		if out == nil {
			out = w
		}
		k, err := out.Write(b)
		return int64(k), err
	}
	type filled struct {
		raw, b []byte
		err    error
	}
	free := make(chan []byte, len(p.bufs))
	full := make(chan filled, len(p.bufs))
	stop := make(chan struct{})
	for _, b := range p.buffers(len(p.bufs), p.block) {
		free <- b
	}
	go func() {
		defer close(full)
		for off := int64(0); off < n; {
			var raw []byte
			select {
			case <-stop:
				return
			case raw = <-free:
			}
			select {
			case <-stop:
				return
			default:
			}
			b := place(raw, off, int(min(n-off, block)))
			if err := produce(fill, sum, b, off); err != nil {
				full <- filled{err: err}
				return
			}
			full <- filled{raw: raw, b: b}
			off += int64(len(b))
		}
	}()
	// However this returns (a panic in w included), the filling goroutine
	// is stopped and waited for.
	defer func() {
		close(stop)
		for range full {
		}
	}()
	if out == nil {
		var release func()
		out, release = spliceWriter(w)
		defer release()
	}
	for f := range full {
		if f.err != nil {
			return written, f.err
		}
		k, err := out.Write(f.b)
		written += int64(k)
		if err != nil {
			return written, err
		}
		free <- f.raw
	}
	return written, nil
}

// produce fills b and passes it to sum, turning a panic into an error.
func produce(fill Fill, sum func([]byte), b []byte, off int64) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	if err := fill(b, off); err != nil {
		return err
	}
	if sum != nil {
		sum(b)
	}
	return nil
}

// ReadAt is a Fill for n bytes of r from offset base: it reads each block
// with r.ReadAt and reports a short read as an error naming name and the
// offset.
func ReadAt(r io.ReaderAt, name string, base int64) Fill {
	return func(b []byte, off int64) error {
		return ReadFull(r, name, b, base+off)
	}
}

// ReadFull reads len(b) bytes of r at off; a short read is an error naming
// name, the offset and the count.
func ReadFull(r io.ReaderAt, name string, b []byte, off int64) error {
	k, err := r.ReadAt(b, off)
	if k == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		return fmt.Errorf("%s: %d bytes at offset %d: only %d there (file shorter than expected)", name, len(b), off, k)
	}
	return fmt.Errorf("%s: reading %d bytes at offset %d: %v", name, len(b), off, err)
}

// HumanBytes formats a byte count with a binary unit ("1.50 GiB").
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if f < unit || u == "TiB" {
			return fmt.Sprintf("%.2f %s", f, u)
		}
	}
	return fmt.Sprintf("%d B", n)
}
