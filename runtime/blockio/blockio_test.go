package blockio

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCopy copies streams of every size class (empty, inside one block,
// exactly one block, several blocks with and without a remainder) from a
// real file and checks the bytes, the order sum sees them in and the
// offsets fill is called with.
func TestCopy(t *testing.T) {
	src := make([]byte, 10_000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	path := filepath.Join(t.TempDir(), "src.bin")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	p := &Pipe{Block: 1000, Buffers: 3}
	for _, tc := range []struct {
		base, n int64
		offs    []int64
	}{
		{0, 0, nil},
		{7, 999, []int64{0}},
		{0, 1000, []int64{0}},
		{13, 1001, []int64{0, 1000}},
		{1, 9000, []int64{0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000}},
		{5, 9995, []int64{0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000}},
	} {
		t.Run(fmt.Sprintf("%d+%d", tc.base, tc.n), func(t *testing.T) {
			var out bytes.Buffer
			var offs []int64
			read := ReadAt(f, path, tc.base)
			var crc uint32
			n, err := p.Copy(&out, tc.n, func(b []byte, off int64) error {
				offs = append(offs, off)
				return read(b, off)
			}, func(b []byte) { crc = crc32.Update(crc, crc32.IEEETable, b) })
			if err != nil {
				t.Fatal(err)
			}
			want := src[tc.base : tc.base+tc.n]
			if n != tc.n || !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("copied %d bytes, want %d; equal: %v", n, tc.n, bytes.Equal(out.Bytes(), want))
			}
			if diff := cmp.Diff(tc.offs, offs); diff != "" {
				t.Errorf("fill offsets (-want +got):\n%s", diff)
			}
			if got := crc32.ChecksumIEEE(want); crc != got {
				t.Errorf("sum saw the blocks out of order: CRC %08x, want %08x", crc, got)
			}
		})
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("disk full")
	}
	w.after--
	return len(p), nil
}

type panicWriter struct{}

func (panicWriter) Write(p []byte) (int, error) { panic("writer") }

// TestCopyErrors: an error from fill or from the writer, or a panic in
// fill, ends the copy with that error, the written count is right, and no
// goroutine is left behind.
func TestCopyErrors(t *testing.T) {
	before := runtime.NumGoroutine()
	p := &Pipe{Block: 100}
	zero := func(b []byte, off int64) error { clear(b); return nil }

	n, err := p.Copy(&failWriter{after: 2}, 1000, zero, nil)
	if err == nil || err.Error() != "disk full" || n != 200 {
		t.Errorf("writer error: n=%d err=%v, want 200 and disk full", n, err)
	}
	n, err = p.Copy(&bytes.Buffer{}, 1000, func(b []byte, off int64) error {
		if off == 500 {
			return errors.New("bad block")
		}
		return nil
	}, nil)
	if err == nil || err.Error() != "bad block" || n != 500 {
		t.Errorf("fill error: n=%d err=%v, want 500 and bad block", n, err)
	}
	_, err = p.Copy(&bytes.Buffer{}, 1000, func(b []byte, off int64) error {
		_ = b[len(b)] // a runtime error: index out of range
		return nil
	}, nil)
	if err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("panic in fill: %v", err)
	}
	_, err = p.Copy(&bytes.Buffer{}, 50, func(b []byte, off int64) error { panic("boom") }, nil)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("panic in fill of a single block: %v", err)
	}
	_, err = p.Copy(&bytes.Buffer{}, 1000, zero, func(b []byte) { panic("sum") })
	if err == nil || !strings.Contains(err.Error(), "sum") {
		t.Errorf("panic in sum: %v", err)
	}
	// A panic in the writer goes on up, but the filling goroutine ends.
	func() {
		defer func() {
			if r := recover(); r != "writer" {
				t.Errorf("recovered %v, want the writer's panic", r)
			}
		}()
		p.Copy(panicWriter{}, 1000, zero, nil)
	}()
	// The block size is fixed at first use.
	p.Block = 15
	if n, err := p.Copy(&bytes.Buffer{}, 1000, zero, nil); n != 1000 || err != nil {
		t.Errorf("after changing Block: %d, %v", n, err)
	}
	for i := 0; i < 100 && runtime.NumGoroutine() > before; i++ {
		time.Sleep(time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines left running", g-before)
	}
}

// TestReadFull: a short read names the file, the offset and the counts.
func TestReadFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "short.bin")
	if err := os.WriteFile(path, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 8)
	if err := ReadFull(f, path, b, 2); err != nil || string(b) != "23456789" {
		t.Fatalf("ReadFull = %q, %v", b, err)
	}
	err = ReadFull(f, path, b, 6)
	want := path + ": 8 bytes at offset 6: only 4 there (file shorter than expected)"
	if err == nil || err.Error() != want {
		t.Errorf("short read: %v\nwant %s", err, want)
	}
	f.Close()
	if err := ReadFull(f, path, b, 0); err == nil || !strings.Contains(err.Error(), path+": reading 8 bytes at offset 0") {
		t.Errorf("closed file: %v", err)
	}
}

// TestBuffersSizedToCopies: a Pipe allocates only what its copies need,
// growing to whole blocks for a copy larger than one block, and the
// bytes come out the same at every size.
func TestBuffersSizedToCopies(t *testing.T) {
	held := func(p *Pipe) (n int) {
		for _, b := range p.bufs {
			n += len(b)
		}
		return n
	}
	p := &Pipe{Block: 1 << 20}
	steps := []struct {
		n       int
		maxHeld int
	}{
		{100, 4096 + directAlign},
		{5000, 8192 + directAlign},
		{300 << 10, 512<<10 + directAlign},
		{3 << 20, DefaultBuffers * (1<<20 + directAlign)},
		{10, DefaultBuffers * (1<<20 + directAlign)},
	}
	for _, s := range steps {
		src := make([]byte, s.n)
		for i := range src {
			src[i] = byte(i * 7)
		}
		var out bytes.Buffer
		if _, err := p.Copy(&out, int64(s.n), func(b []byte, off int64) error {
			copy(b, src[off:])
			return nil
		}, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), src) {
			t.Errorf("%d bytes: copy differs", s.n)
		}
		if h := held(p); h > s.maxHeld {
			t.Errorf("after a copy of %d bytes the Pipe holds %d bytes, want <= %d", s.n, h, s.maxHeld)
		}
	}
}
