package exec

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"unsafe"

	"github.com/rolltpl/rolltpl/runtime/blockio"
	"github.com/rolltpl/rolltpl/runtime/fp8"
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// This file decodes the FP8 weights an HF -> MCA step reads (fp8.go)
// while they are written, never as whole tensors in fresh memory.
//
// The ops see an FP8 weight as a tensor of its dequantized bytes: a
// buffer of anonymous memory (bigAlloc) that nothing touches as long as
// the step's results are views of it, which they are for the layout moves
// templates make (renames, concatenations, the QKV interleave, the TP and
// EP slices of the sharder). Those views are never read. The writer
// recognises them (viewOf) and decodes their elements from the codes,
// read from the source file with pread through a small window per weight
// (codeWindow), straight into the block being written, on blockio.Pipe's
// filling goroutine: decoding overlaps the writes, and at TP > 1 each
// rank file decodes only its own part of each weight, so memory is a few
// windows per executor whatever the model size or the layout.
//
// Unused address space costs nothing, and reading it only maps the zero
// page; but a step whose results are not all views (an op or a split that
// computes: a transposing expert split, a composite transpose) read those
// zeros. Such a step has its weights decoded in place (materialize) and
// is run again; only then is the weight's memory touched, for the step's
// duration.

// deqView is an FP8 weight read by the executor's current step.
type deqView struct {
	d *deqInput
	// buf holds the dequantized bytes once decoded, [start, end) its
	// addresses.
	buf        []byte
	start, end uintptr
	decoded    bool
	// codes is the mapping of the codes; path and off locate them in
	// their file ("" when unknown: then they are copied from codes).
	codes  []byte
	path   string
	off    int64
	scales []float32 // the widened grid, parsed on first use
}

// sliceRange returns the address range of b (0, 0 when empty).
func sliceRange(b []byte) (uintptr, uintptr) {
	if len(b) == 0 {
		return 0, 0
	}
	s := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return s, s + uintptr(len(b))
}

// newView returns the view of the FP8 input in, held until the step ends
// (releaseDeq), and its bytes for the ops.
func (ex *executor) newView(in inputData) []byte {
	n := len(in.data) * in.deq.out.Size()
	v := &deqView{d: in.deq, buf: bigAlloc(n), codes: in.data, path: in.path, off: in.off}
	v.start, v.end = sliceRange(v.buf)
	ex.views = append(ex.views, v)
	return v.buf
}

// gridScales returns the widened scale grid of v.
func (v *deqView) gridScales() ([]float32, error) {
	if v.scales == nil {
		s, err := fp8.Scales(v.d.scaleName, v.d.scaleDT, v.d.grid, v.d.scales)
		if err != nil {
			return nil, err
		}
		v.scales = s
	}
	return v.scales, nil
}

// viewOf returns the undecoded view holding b and the index of b's first
// element, or nil.
func (ex *executor) viewOf(b []byte) (*deqView, int64) {
	s, e := sliceRange(b)
	if e <= s {
		return nil, 0
	}
	for _, v := range ex.views {
		if !v.decoded && s >= v.start && e <= v.end {
			return v, int64(s-v.start) / int64(v.d.out.Size())
		}
	}
	return nil, 0
}

// computed reports whether a piece of ts is neither a view of an
// undecoded FP8 weight nor mapped input, while the step has undecoded
// weights: something computed it, maybe from a weight's untouched bytes.
func (ex *executor) computed(ts ...tensor.Tensor) bool {
	pending := false
	for _, v := range ex.views {
		pending = pending || !v.decoded
	}
	if !pending {
		return false
	}
	for _, t := range ts {
		for _, p := range t.Pieces() {
			if v, _ := ex.viewOf(p); v == nil && ex.inputOf(p) == nil {
				return true
			}
		}
	}
	return false
}

// materialize decodes every undecoded weight of the step into its
// buffer; views of it are then plain memory.
func (ex *executor) materialize() error {
	for _, v := range ex.views {
		if v.decoded {
			continue
		}
		if err := ex.decodeRun(v.buf, v, 0); err != nil {
			return err
		}
		v.decoded = true
		if fp8DecodeHook != nil {
			fp8DecodeHook(v.d.name, int64(len(v.buf)), true)
		}
	}
	return nil
}

// readPieces copies the bytes of pieces to dst, decoding those of views.
func (ex *executor) readPieces(dst []byte, pieces [][]byte) error {
	for _, p := range pieces {
		if v, e := ex.viewOf(p); v != nil {
			if err := ex.decodeTo(dst[:len(p)], v, e); err != nil {
				return err
			}
		} else {
			copy(dst, p)
		}
		dst = dst[len(p):]
	}
	return nil
}

// fp8DecodeHook, when set (by tests), is called with the bytes of every
// run of an FP8 weight decoded as it is written, and of every weight
// decoded whole (materialize).
var fp8DecodeHook func(name string, bytes int64, whole bool)

// decodeTo writes the dequantized bytes of v's elements from e0 to dst,
// a piece being written.
func (ex *executor) decodeTo(dst []byte, v *deqView, e0 int64) error {
	if fp8DecodeHook != nil {
		fp8DecodeHook(v.d.name, int64(len(dst)), false)
	}
	return ex.decodeRun(dst, v, e0)
}

// decodeRun writes the dequantized bytes of v's elements from e0 to dst.
func (ex *executor) decodeRun(dst []byte, v *deqView, e0 int64) error {
	size := v.d.out.Size()
	if len(dst)%size != 0 {
		return fmt.Errorf("tensor %q: internal error: %d bytes are not whole %v elements", v.d.name, len(dst), v.d.out)
	}
	for len(dst) > 0 {
		w, err := ex.window(v, e0, int64(len(dst)/size))
		if err != nil {
			return err
		}
		k := e0 - w.at
		codes := w.buf[k:min(int64(w.n), k+int64(len(dst)/size))]
		if err := w.dec.Decode(dst[:len(codes)*size], codes, e0); err != nil {
			return fmt.Errorf("%s: %w", v.path, err)
		}
		dst = dst[len(codes)*size:]
		e0 += int64(len(codes))
	}
	return nil
}

// codeWindow is a run of one FP8 weight's codes read from its file, and
// the weight's decoder (which keeps the tables of a block row).
type codeWindow struct {
	v    *deqView
	dec  *fp8.Decoder
	buf  []byte
	at   int64 // element index of buf[0]
	n    int   // codes in buf
	next int64 // element index just past the last run asked for
	used int64
}

// Window sizes: codeWindowSize codes per window, at most maxCodeWindows
// windows per executor (the weights whose pieces a step's results
// interleave, such as q, k and v, each keep theirs). A run that starts
// more than maxSkip codes past the end of the previous one (the rows of a
// rank's part of a row-parallel weight, at stride N) is read alone: reading
// ahead would copy the skipped codes, more than a read call costs.
const (
	codeWindowSize = 256 << 10
	maxCodeWindows = 8
	maxSkip        = 8 << 10
)

// window returns the window of v holding element e, for a run of want
// codes. When none does, it reads codes from e on: a window's worth (or
// to the end of the weight), or only the run when it skips more than
// maxSkip codes after the previous one. The least recently used window is
// reused for a new weight.
func (ex *executor) window(v *deqView, e, want int64) (*codeWindow, error) {
	ex.tick++
	var w *codeWindow
	for _, x := range ex.windowsFP8 {
		if x.v == v {
			w = x
			break
		}
	}
	if w == nil {
		if len(ex.windowsFP8) < maxCodeWindows {
			w = &codeWindow{buf: make([]byte, codeWindowSize)}
			ex.windowsFP8 = append(ex.windowsFP8, w)
		} else {
			w = ex.windowsFP8[0]
			for _, x := range ex.windowsFP8 {
				if x.used < w.used {
					w = x
				}
			}
		}
		scales, err := v.gridScales()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.path, err)
		}
		dec, err := v.d.layout.NewDecoder(v.d.name, v.d.out, scales)
		if err != nil {
			return nil, err
		}
		w.v, w.dec, w.n, w.next = v, dec, 0, -1
	}
	w.used = ex.tick
	skip := w.next >= 0 && e-w.next > maxSkip
	w.next = e + want
	if e >= w.at && e < w.at+int64(w.n) {
		return w, nil
	}
	n := min(int64(len(w.buf)), int64(len(v.codes))-e)
	if skip {
		n = min(n, want)
	}
	if n <= 0 {
		return nil, fmt.Errorf("tensor %q: internal error: element %d beyond its %d", v.d.name, e, len(v.codes))
	}
	w.at, w.n = e, 0
	if v.path == "" {
		copy(w.buf[:n], v.codes[e:])
	} else {
		f, err := ex.file(v.path)
		if err != nil {
			return nil, err
		}
		if err := blockio.ReadFull(f, f.Name(), w.buf[:n], v.off+e); err != nil {
			return nil, err
		}
	}
	w.n = int(n)
	return w, nil
}

// releaseDeq ends the step's use of its FP8 weights.
func (ex *executor) releaseDeq() {
	for _, v := range ex.views {
		bigFree(v.buf)
	}
	clear(ex.views)
	ex.views = ex.views[:0]
	for _, w := range ex.windowsFP8 {
		w.v, w.dec, w.n = nil, nil, 0
	}
}

// computedFor is [executor.computed] for the pieces of rank r's stage vp.
func (ex *executor) computedFor(pieces []shard.Piece, r shard.Rank, vp int) bool {
	var ts []tensor.Tensor
	for _, pc := range pieces {
		if pc.Rank == r && pc.Stage == vp {
			ts = append(ts, pc.Data)
		}
	}
	return ex.computed(ts...)
}

// checkCodes reads the codes of every FP8 weight the plan converts
// (pread, in windows) and returns the first NaN code's error, naming the
// file, the tensor and the element. A job writing some of the rank files runs it
// before writing anything: its rank files decode only their own parts
// of the weights, and a NaN code elsewhere would go unnoticed by it.
func (s *hfSource) checkCodes(ctx context.Context) error {
	f := s.plan.FP8
	if f == nil {
		return nil
	}
	buf := make([]byte, 4<<20)
	files := map[string]*os.File{}
	defer func() {
		for _, fd := range files {
			fd.Close()
		}
	}()
	skip := s.plan.skippedInputs()
	for _, k := range slices.Sorted(maps.Keys(f.deq)) {
		in := s.input(k)
		if skip[in.deq.name] {
			continue // ignored or dropped by the template: never decoded
		}
		l := in.deq.layout
		fd := files[in.path]
		if fd == nil {
			var err error
			if fd, err = os.Open(in.path); err != nil {
				return err
			}
			files[in.path] = fd
		}
		for e := int64(0); e < int64(len(in.data)); e += int64(len(buf)) {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			c := buf[:min(int64(len(buf)), int64(len(in.data))-e)]
			if err := blockio.ReadFull(fd, in.path, c, in.off+e); err != nil {
				return err
			}
			if err := l.CheckCodes(in.deq.name, c, e); err != nil {
				return fmt.Errorf("%s: %w; nothing was written", in.path, err)
			}
		}
	}
	return nil
}
