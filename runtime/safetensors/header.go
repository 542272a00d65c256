package safetensors

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"unicode/utf8"

	"github.com/rolltpl/rolltpl/lang/srcfile"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// MaxHeaderSize is the largest JSON header accepted, in bytes. It is the
// limit of the reference implementation (MAX_HEADER_SIZE).
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header key of the string→string metadata.
const metadataKey = "__metadata__"

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType tensor.DType
	Shape tensor.Shape
	// Offset is the absolute file offset of the first byte of the tensor
	// and Size its length in bytes (NumElements × DType.Size()).
	Offset, Size int64
}

// Spec returns the name, dtype and shape of t, for writing a tensor like t.
func (t TensorInfo) Spec() Spec {
	return Spec{Name: t.Name, DType: t.DType, Shape: t.Shape}
}

// Header is the validated header of a safetensors file.
type Header struct {
	Path string // the file as it was passed to Open or ReadHeader
	// HeaderLen is N, the length of the JSON header including any padding;
	// the data region starts at file offset 8+N.
	HeaderLen int64
	FileSize  int64
	// Metadata is the "__metadata__" map, nil when the header has none.
	Metadata map[string]string
	// Tensors lists the tensors by increasing offset. It covers the data
	// region exactly and must not be modified.
	Tensors []TensorInfo

	byName map[string]int
}

// DataStart returns the file offset of the data region, 8+HeaderLen.
func (h *Header) DataStart() int64 { return 8 + h.HeaderLen }

// Lookup returns the tensor called name.
func (h *Header) Lookup(name string) (TensorInfo, bool) {
	i, ok := h.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return h.Tensors[i], true
}

// ReadHeader reads and validates the header of the safetensors file at path
// with ordinary reads of its first 8+N bytes; it never reads the data
// region, whose size it takes from the file's size. It applies the same
// checks as [Open].
func ReadHeader(path string) (*Header, error) {
	f, st, err := srcfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readHeader(path, f, st.Size())
}

// readHeader reads the header of a file of the given size through r.
func readHeader(path string, r io.ReaderAt, size int64) (*Header, error) {
	var prefix [8]byte
	if size >= 8 {
		if err := readFull(r, prefix[:], 0); err != nil {
			return nil, fmt.Errorf("%s: reading header length: %w", path, err)
		}
	}
	n, err := headerLen(path, prefix[:], size)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, n)
	if err := readFull(r, raw, 8); err != nil {
		return nil, fmt.Errorf("%s: reading %d-byte header: %w", path, n, err)
	}
	return parseHeader(path, raw, size)
}

// readFull reads len(p) bytes at off. Unlike a bare ReadAt it accepts io.EOF
// together with a complete read, as the io.ReaderAt contract allows.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF // the file shrank under us
	}
	return err
}

// parseFile parses the header of the complete file contents b (an mmap'd
// file).
func parseFile(path string, b []byte) (*Header, error) {
	n, err := headerLen(path, b, int64(len(b)))
	if err != nil {
		return nil, err
	}
	return parseHeader(path, b[8:8+n], int64(len(b)))
}

// headerLen decodes and checks the 8-byte header length at the start of a
// file of the given size; prefix holds at least the first min(8, size)
// bytes of the file.
func headerLen(path string, prefix []byte, size int64) (int64, error) {
	if size < 8 {
		return 0, fileErr(path, "file is %d bytes, too short for the 8-byte header length", size)
	}
	n := binary.LittleEndian.Uint64(prefix)
	if n > MaxHeaderSize {
		return 0, fileErr(path, "header length %d at offset 0 exceeds the limit of %d bytes", n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return 0, fileErr(path, "header length %d at offset 0 runs past the end of the file (%d bytes)", n, size)
	}
	return int64(n), nil
}

// checkHeaderStart checks that raw, the N header bytes of a file, are
// valid UTF-8 and start with '{'.
func checkHeaderStart(path string, raw []byte) error {
	if !utf8.Valid(raw) {
		i := 0
		for i < len(raw) {
			r, w := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && w <= 1 {
				break
			}
			i += w
		}
		return fileErr(path, "header is not valid UTF-8 (bad byte at offset %d)", 8+i)
	}
	if len(raw) == 0 {
		return fileErr(path, "header is empty, want a JSON object")
	}
	if raw[0] != '{' {
		return fileErr(path, "header does not start with '{' (found %q at offset 8)", raw[0])
	}
	return nil
}

// parseHeader parses and validates raw, the N header bytes of a file of
// fileSize bytes.
func parseHeader(path string, raw []byte, fileSize int64) (*Header, error) {
	n := int64(len(raw))
	if err := checkHeaderStart(path, raw); err != nil {
		return nil, err
	}
	h := &Header{Path: path, HeaderLen: n, FileSize: fileSize}
	if err := h.decode(raw); err != nil {
		return nil, err
	}
	// Writers list the tensors in offset order; then validate's sort
	// keeps every index of byName.
	inOrder := slices.IsSortedFunc(h.Tensors, byOffsets)
	if err := h.validate(); err != nil {
		return nil, err
	}
	if !inOrder {
		for i, t := range h.Tensors {
			h.byName[t.Name] = i // the index after validate's sort
		}
	}
	return h, nil
}

// decode decodes raw, a header known to be valid UTF-8 and to start with
// '{', into h.Tensors (in document order, offsets still [begin, end)
// relative to the data region in Offset and Size), h.Metadata and the keys
// of h.byName, in one pass. Its errors are those of decoding with
// encoding/json after checking the whole header with it (see [decoder]):
// a syntax error anywhere wins, then the first problem in document order.
func (h *Header) decode(raw []byte) error {
	err := h.decodeMembers(raw)
	if err == nil {
		return nil
	}
	if off, serr := checkJSON(raw); serr != nil {
		return fileErr(h.Path, "header is not valid JSON: %v (at offset %d)", serr, 8+off)
	}
	if err == errSyntax { // the decoder and encoding/json disagree: a bug
		return fileErr(h.Path, "header is not valid JSON")
	}
	return err
}

// decodeMembers is decode without the syntax check of a failing header.
func (h *Header) decodeMembers(raw []byte) error {
	path := h.Path
	d := &decoder{b: raw}
	// Shapes share one backing array; a typical entry of ~100 header
	// bytes has two or three dimensions. The estimate is capped, and the
	// array grows with the shapes actually read.
	arena := make([]int64, 0, min(len(raw)/32+1, 1<<16))
	// Entries of real headers take 100 to 150 bytes; the slice and map
	// grow if they are shorter.
	if n := len(raw) / 100; n > 0 {
		h.Tensors = make([]TensorInfo, 0, n) // nil when there are none, as before
	}
	h.byName = make(map[string]int, len(raw)/100)
	// Names are substrings of one copy of the header (names are most of
	// its bytes) rather than one allocation each; an escaped name is a
	// string of its own.
	text := string(raw)
	haveMetadata := false
	err := d.object(func(key []byte) error {
		if string(key) == metadataKey {
			if haveMetadata {
				return fileErr(path, "%q appears more than once in the header", metadataKey)
			}
			haveMetadata = true
			m, err := d.metadata(path)
			h.Metadata = m
			return err
		}
		name := text[d.viewStart:d.viewEnd]
		if d.viewEnd == 0 {
			name = string(key)
		}
		n := len(h.byName)
		if h.byName[name] = n; len(h.byName) == n { // one map operation
			return tensorErr(path, name, "appears more than once in the header")
		}
		t, err := d.entry(path, name, &arena)
		if err != nil {
			return err
		}
		h.Tensors = append(h.Tensors, t)
		return nil
	})
	if err != nil {
		return err
	}
	return d.end()
}

// metadata decodes the value of "__metadata__": null (serde reads it as
// an absent Option) or an object of strings.
func (d *decoder) metadata(path string) (map[string]string, error) {
	if d.peek() == 'n' {
		_, err := d.literal("null")
		return nil, err
	}
	if d.peek() != '{' {
		return nil, fileErr(path, "%s is %s, want an object", metadataKey, article(d.kind()))
	}
	m := make(map[string]string)
	err := d.object(func(k []byte) error {
		key := string(k)
		if _, dup := m[key]; dup {
			return fileErr(path, "%s: key %q appears more than once", metadataKey, key)
		}
		if d.peek() != '"' {
			return fileErr(path, "%s: value of key %q is %s, want a string", metadataKey, key, article(d.kind()))
		}
		v, err := d.str()
		m[key] = string(v)
		return err
	})
	return m, err
}

// entry decodes the header entry of tensor name, an object with "dtype",
// "shape" and "data_offsets" (other keys are ignored, as in the
// reference); the shape is appended to *arena. The offsets of the result
// are still relative to the data region, begin in Offset and end in Size.
func (d *decoder) entry(path, name string, arena *[]int64) (TensorInfo, error) {
	t := TensorInfo{Name: name}
	if d.peek() != '{' {
		return t, tensorErr(path, name, "entry is %s, want an object", article(d.kind()))
	}
	var haveDType, haveShape, haveOffsets bool
	var keys keySet
	err := d.object(func(k []byte) error {
		if keys.add(k) {
			return tensorErr(path, name, "key %q appears more than once in the entry", k)
		}
		switch string(k) {
		case "dtype":
			if d.peek() != '"' {
				return tensorErr(path, name, "dtype is %s, want a string", article(d.kind()))
			}
			s, err := d.str()
			if err != nil {
				return err
			}
			var ok bool
			if t.DType, ok = dtype(s); !ok {
				return tensorErr(path, name, "unknown dtype %q", s)
			}
			haveDType = true
		case "shape":
			dims, err := d.ints(arena)
			if err != nil {
				return wrapEntry(path, name, "shape", err)
			}
			t.Shape = tensor.Shape(dims)
			haveShape = true
		case "data_offsets":
			mark := len(*arena)
			offsets, err := d.ints(arena)
			*arena = (*arena)[:mark] // the offsets are not kept
			if err != nil {
				return wrapEntry(path, name, "data_offsets", err)
			}
			if len(offsets) != 2 {
				return tensorErr(path, name, "data_offsets has %d elements, want [begin, end]", len(offsets))
			}
			t.Offset, t.Size = offsets[0], offsets[1] // fixed up by validate
			haveOffsets = true
		default:
			return d.skip()
		}
		return nil
	})
	switch {
	case err != nil:
		return t, err
	case !haveDType:
		return t, tensorErr(path, name, `entry has no "dtype"`)
	case !haveShape:
		return t, tensorErr(path, name, `entry has no "shape"`)
	case !haveOffsets:
		return t, tensorErr(path, name, `entry has no "data_offsets"`)
	}
	return t, nil
}

// wrapEntry turns a plain error of decoding the field of tensor name's
// entry into a *FormatError; errSyntax passes through.
func wrapEntry(path, name, field string, err error) error {
	if err == errSyntax {
		return err
	}
	return tensorErr(path, name, "%s %v", field, err)
}

// dtypes maps the spelling of every dtype [tensor.ParseDType] knows to it,
// for lookups without allocating.
var dtypes = func() map[string]tensor.DType {
	m := map[string]tensor.DType{}
	for dt := tensor.DType(1); dt.Size() > 0; dt++ {
		if p, err := tensor.ParseDType(dt.String()); err == nil && p == dt {
			m[dt.String()] = dt
		}
	}
	return m
}()

// dtype returns the dtype spelled s.
func dtype(s []byte) (tensor.DType, bool) {
	dt, ok := dtypes[string(s)]
	return dt, ok
}

// byteSize returns the number of bytes of a tensor of the given dtype and
// shape, or -1 if it overflows int64 or the shape is invalid.
func byteSize(dt tensor.DType, shape tensor.Shape) int64 {
	n := shape.NumElements()
	size := int64(dt.Size())
	if n < 0 || size <= 0 || (n > 0 && n > math.MaxInt64/size) {
		return -1
	}
	return n * size
}

// byOffsets orders tensors whose Offset and Size hold [begin, end) by
// begin, then end, then name: a total order, names being distinct.
func byOffsets(a, b TensorInfo) int {
	return cmp.Or(cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.Size, b.Size), cmp.Compare(a.Name, b.Name))
}

// validate checks the tensors' offsets, still [begin, end) pairs relative
// to the data region in Offset and Size, sorts the tensors by offset and
// turns the offsets into absolute file offsets and sizes.
func (h *Header) validate() error {
	path := h.Path
	dataStart := h.DataStart()
	dataLen := h.FileSize - dataStart
	ts := h.Tensors
	// Offset holds begin and Size holds end here.
	slices.SortFunc(ts, byOffsets)
	var pos int64 // where the next tensor must begin
	for i := range ts {
		t := &ts[i]
		begin, end := t.Offset, t.Size
		if end < begin {
			return tensorErr(path, t.Name, "data_offsets [%d, %d] end before they begin", begin, end)
		}
		want := byteSize(t.DType, t.Shape)
		if want < 0 {
			return tensorErr(path, t.Name, "shape %v %v is too large (more than 2^63 bytes)", t.Shape, t.DType)
		}
		if end-begin != want {
			return tensorErr(path, t.Name, "data_offsets [%d, %d] do not match shape %v %v (%d bytes)", begin, end, t.Shape, t.DType, want)
		}
		if end > dataLen {
			return tensorErr(path, t.Name, "data_offsets [%d, %d] run past the end of the data region (%d bytes at offset %d)", begin, end, dataLen, dataStart)
		}
		if begin < pos {
			p := ts[i-1]
			return tensorErr(path, t.Name, "data_offsets [%d, %d] overlap tensor %q at [%d, %d]", begin, end, p.Name, p.Offset-dataStart, p.Offset-dataStart+p.Size)
		}
		if begin > pos {
			return tensorErr(path, t.Name, "data_offsets [%d, %d] leave bytes [%d, %d) of the data region unused (holes are not allowed)", begin, end, pos, begin)
		}
		pos = end
		t.Offset, t.Size = dataStart+begin, end-begin
	}
	if pos != dataLen {
		return fileErr(path, "%d bytes at offset %d after the last tensor belong to no tensor (data region is %d bytes, tensors end at %d)", dataLen-pos, dataStart+pos, dataLen, pos)
	}
	return nil
}
