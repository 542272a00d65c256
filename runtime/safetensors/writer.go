package safetensors

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// Spec names a tensor to be written and gives its dtype and shape.
type Spec struct {
	Name  string
	DType tensor.DType
	Shape tensor.Shape
}

// referenceRank is the position of each dtype in the reference
// implementation's Dtype enum, which is declared in increasing alignment.
var referenceRank = [...]int{
	tensor.BOOL:   0,
	tensor.U8:     1,
	tensor.I8:     2,
	tensor.F8E5M2: 3,
	tensor.F8E4M3: 4,
	tensor.I16:    5,
	tensor.F16:    6,
	tensor.BF16:   7,
	tensor.I32:    8,
	tensor.F32:    9,
	tensor.F64:    10,
	tensor.I64:    11,
}

func rank(d tensor.DType) int {
	if int(d) < len(referenceRank) {
		return referenceRank[d]
	}
	return -1
}

// SortSpecs sorts specs into the order in which the reference writer lays
// tensors out: by dtype, widest alignment first (in the reference's enum
// order, so I64 before F64 before F32 ...), then by name. With the header
// padded to a multiple of 8, every tensor then starts at an offset aligned
// to its element size.
func SortSpecs(specs []Spec) {
	slices.SortStableFunc(specs, func(a, b Spec) int {
		return cmp.Or(cmp.Compare(rank(b.DType), rank(a.DType)), cmp.Compare(a.Name, b.Name))
	})
}

// writeChunk bounds the size of a single write to the underlying writer:
// on the target machine one write of several hundred MB is much slower
// than a series of writes of a few MB (formats.md §5.3).
const writeChunk = 4 << 20

// A Writer streams a safetensors file. [NewWriter] writes the complete
// header; the tensors' bytes must then be supplied in the order of the
// specs, each tensor completely, through [Writer.WriteTensor] or the
// io.Writer returned by [Writer.Next]. Every tensor must be visited, even
// one of zero bytes. [Writer.Close] checks that all bytes were written.
//
// A Writer does no buffering and never copies tensor bytes: each slice is
// passed to the underlying writer as is (split into writes of at most a
// few MB).
type Writer struct {
	w       io.Writer
	tensors []TensorInfo
	byName  map[string]int
	size    int64
	next    int           // index of the next tensor to begin
	cur     *tensorWriter // the tensor being written, or nil
	err     error         // sticky error from the underlying writer
	closed  bool
}

// NewWriter lays out the tensors of specs one after another in the given
// order, encodes the header (with metadata as "__metadata__" unless
// metadata is nil; the reference Python writers put {"format": "pt"}
// there and transformers expects it) and writes it to w.
//
// Names must be unique valid UTF-8 other than "__metadata__", dtypes
// valid, and dimensions non-negative.
func NewWriter(w io.Writer, specs []Spec, metadata map[string]string) (*Writer, error) {
	header, tensors, err := encodeHeader(specs, metadata)
	if err != nil {
		return nil, err
	}
	sw := &Writer{w: w, tensors: tensors, byName: make(map[string]int, len(tensors))}
	for i, t := range tensors {
		sw.byName[t.Name] = i
	}
	sw.size = int64(len(header))
	if len(tensors) > 0 {
		last := tensors[len(tensors)-1]
		sw.size = last.Offset + last.Size
	}
	if _, err := w.Write(header); err != nil {
		return nil, fmt.Errorf("safetensors: writing header: %w", err)
	}
	return sw, nil
}

// encodeHeader returns the first 8+N bytes of the file describing specs in
// order, and the resulting tensor layout.
func encodeHeader(specs []Spec, metadata map[string]string) ([]byte, []TensorInfo, error) {
	tensors := make([]TensorInfo, len(specs))
	seen := make(map[string]bool, len(specs))
	var pos int64
	for i, s := range specs {
		switch {
		case s.Name == metadataKey:
			return nil, nil, fmt.Errorf("safetensors: tensor name %q is reserved", s.Name)
		case !utf8.ValidString(s.Name):
			return nil, nil, fmt.Errorf("safetensors: tensor name %q is not valid UTF-8", s.Name)
		case seen[s.Name]:
			return nil, nil, fmt.Errorf("safetensors: tensor %q appears more than once", s.Name)
		case s.DType.Size() <= 0:
			return nil, nil, fmt.Errorf("safetensors: tensor %q: invalid dtype %v", s.Name, s.DType)
		}
		seen[s.Name] = true
		size := byteSize(s.DType, s.Shape)
		if size < 0 || pos > math.MaxInt64/2-size {
			return nil, nil, fmt.Errorf("safetensors: tensor %q: invalid or too large shape %v", s.Name, s.Shape)
		}
		tensors[i] = TensorInfo{Name: s.Name, DType: s.DType, Shape: slices.Clone(s.Shape), Offset: pos, Size: size}
		pos += size
	}

	b := make([]byte, 8, 8+64*(len(specs)+1))
	b = append(b, '{')
	if metadata != nil {
		b = appendQuoted(b, metadataKey, false)
		b = append(b, ':', '{')
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			v := metadata[k]
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, nil, fmt.Errorf("safetensors: metadata %q: %q is not valid UTF-8", k, v)
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = appendQuoted(b, k, false)
			b = append(b, ':')
			b = appendQuoted(b, v, false)
		}
		b = append(b, '}')
	}
	for i, t := range tensors {
		if i > 0 || metadata != nil {
			b = append(b, ',')
		}
		b = appendQuoted(b, t.Name, false)
		b = append(b, `:{"dtype":"`...)
		b = append(b, t.DType.String()...)
		b = append(b, `","shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, `],"data_offsets":[`...)
		b = strconv.AppendInt(b, t.Offset, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, t.Offset+t.Size, 10)
		b = append(b, ']', '}')
	}
	b = append(b, '}')
	for len(b)%8 != 0 {
		b = append(b, ' ')
	}
	n := len(b) - 8
	if n > MaxHeaderSize {
		return nil, nil, fmt.Errorf("safetensors: header of %d bytes exceeds the limit of %d bytes", n, MaxHeaderSize)
	}
	binary.LittleEndian.PutUint64(b, uint64(n))
	for i := range tensors {
		tensors[i].Offset += int64(len(b))
	}
	return b, tensors, nil
}

// Tensors returns the layout of the file: every tensor with its absolute
// offset and size, in file order. The slice must not be modified.
func (w *Writer) Tensors() []TensorInfo { return w.tensors }

// Size returns the total number of bytes the file will have.
func (w *Writer) Size() int64 { return w.size }

// Next begins tensor name, which must be the next tensor in order, and
// returns a writer for its bytes. The previous tensor must be complete.
// The returned writer rejects, without writing anything, a write that
// would exceed the tensor's size, and fails once another tensor has begun.
func (w *Writer) Next(name string) (io.Writer, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	i, ok := w.byName[name]
	switch {
	case !ok:
		return nil, fmt.Errorf("safetensors: tensor %q is not in the header", name)
	case w.cur != nil && w.cur.left > 0:
		t := w.tensors[w.cur.i]
		return nil, fmt.Errorf("safetensors: tensor %q begun before tensor %q was complete (%d of %d bytes written)", name, t.Name, t.Size-w.cur.left, t.Size)
	case i < w.next:
		return nil, fmt.Errorf("safetensors: tensor %q was already written", name)
	case i > w.next:
		return nil, fmt.Errorf("safetensors: tensor %q written out of order: %q comes first", name, w.tensors[w.next].Name)
	}
	w.next++
	w.cur = &tensorWriter{w: w, i: i, left: w.tensors[i].Size}
	return w.cur, nil
}

// WriteTensor writes all bytes of tensor name, which must be the next
// tensor in order, as the concatenation of parts. The parts must add up
// to exactly the tensor's size; otherwise nothing is written.
func (w *Writer) WriteTensor(name string, parts ...[]byte) error {
	if err := w.check(); err != nil {
		return err
	}
	var n int64
	for _, p := range parts {
		n += int64(len(p))
	}
	if i, ok := w.byName[name]; ok && n != w.tensors[i].Size {
		t := w.tensors[i]
		return fmt.Errorf("safetensors: tensor %q: got %d bytes, want %d (shape %v %v)", name, n, t.Size, t.Shape, t.DType)
	}
	tw, err := w.Next(name)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := tw.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// Close checks that every tensor was written completely. It does not close
// the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return errors.New("safetensors: Writer already closed")
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if w.cur != nil && w.cur.left > 0 {
		t := w.tensors[w.cur.i]
		return fmt.Errorf("safetensors: tensor %q is incomplete: %d of %d bytes written", t.Name, t.Size-w.cur.left, t.Size)
	}
	if w.next < len(w.tensors) {
		return fmt.Errorf("safetensors: tensor %q (%d of %d) was not written", w.tensors[w.next].Name, w.next+1, len(w.tensors))
	}
	w.cur = nil
	return nil
}

func (w *Writer) check() error {
	if w.closed {
		return errors.New("safetensors: Writer is closed")
	}
	return w.err
}

// tensorWriter is the io.Writer of one tensor.
type tensorWriter struct {
	w    *Writer
	i    int
	left int64
}

func (tw *tensorWriter) Write(p []byte) (int, error) {
	w := tw.w
	if err := w.check(); err != nil {
		return 0, err
	}
	name := w.tensors[tw.i].Name
	if w.cur != tw {
		return 0, fmt.Errorf("safetensors: tensor %q is no longer being written", name)
	}
	if int64(len(p)) > tw.left {
		return 0, fmt.Errorf("safetensors: tensor %q: write of %d bytes exceeds the %d bytes left", name, len(p), tw.left)
	}
	written := 0
	for len(p) > 0 {
		c := p[:min(len(p), writeChunk)]
		n, err := w.w.Write(c)
		written += n
		tw.left -= int64(n)
		if err == nil && n < len(c) {
			err = io.ErrShortWrite
		}
		if err != nil {
			w.err = fmt.Errorf("safetensors: writing tensor %q: %w", name, err)
			return written, w.err
		}
		p = p[n:]
	}
	return written, nil
}

// WriteFile writes a safetensors file at path: it creates path+".tmp",
// writes the header for specs and metadata as [NewWriter] does, lets fill
// write the tensors, checks that all were written, syncs the file to disk
// and renames it to path. On any error the temporary file is removed and
// path is left untouched.
func WriteFile(path string, specs []Spec, metadata map[string]string, fill func(*Writer) error) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("writing %s: %w", path, err)
		}
	}()
	w, err := NewWriter(f, specs, metadata)
	if err != nil {
		return err
	}
	if err := fill(w); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
