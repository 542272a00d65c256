package safetensors

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// badFiles are malformed files and the error each must produce, after the
// "<path>: " prefix.
var badFiles = []struct {
	name string
	file []byte
	want string
}{
	{"empty file", nil, "file is 0 bytes, too short for the 8-byte header length"},
	{"short file", []byte("abc"), "file is 3 bytes, too short for the 8-byte header length"},
	{"header over limit", binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+1),
		"header length 100000001 at offset 0 exceeds the limit of 100000000 bytes"},
	{"header length 2^64-1", binary.LittleEndian.AppendUint64(nil, 1<<64-1),
		"header length 18446744073709551615 at offset 0 exceeds the limit of 100000000 bytes"},
	{"header past end", append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...),
		"header length 100 at offset 0 runs past the end of the file (10 bytes)"},
	{"empty header", rawFile("", 0), "header is empty, want a JSON object"},
	{"invalid UTF-8", rawFile("{\"a\xff\":1}", 0), "header is not valid UTF-8 (bad byte at offset 11)"},
	{"leading space", rawFile(` {}`, 0), `header does not start with '{' (found ' ' at offset 8)`},
	{"array header", rawFile(`[1, 2]`, 0), `header does not start with '{' (found '[' at offset 8)`},
	{"truncated JSON", rawFile(`{"a":`, 0), "header is not valid JSON: unexpected end of JSON input (at offset 13)"},
	{"trailing garbage", rawFile(`{} x`, 0), "header is not valid JSON: invalid character 'x' after top-level value (at offset 12)"},
	{"trailing comma", rawFile(`{"a":{},}`, 0), "header is not valid JSON: invalid character '}' looking for beginning of object key string (at offset 17)"},
	{"entry not object", rawFile(`{"w":5}`, 0), `tensor "w": entry is a number, want an object`},
	{"entry null", rawFile(`{"w":null}`, 0), `tensor "w": entry is null, want an object`},
	{"missing dtype", rawFile(`{"w":{"shape":[1],"data_offsets":[0,1]}}`, 1), `tensor "w": entry has no "dtype"`},
	{"missing shape", rawFile(`{"w":{"dtype":"U8","data_offsets":[0,1]}}`, 1), `tensor "w": entry has no "shape"`},
	{"missing data_offsets", rawFile(`{"w":{"dtype":"U8","shape":[1]}}`, 1), `tensor "w": entry has no "data_offsets"`},
	{"unknown dtype", rawFile(`{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}`, 1), `tensor "w": unknown dtype "Q4"`},
	{"unsupported dtype U16", rawFile(`{"w":{"dtype":"U16","shape":[1],"data_offsets":[0,2]}}`, 2), `tensor "w": unknown dtype "U16"`},
	{"dtype not string", rawFile(`{"w":{"dtype":7,"shape":[1],"data_offsets":[0,1]}}`, 1), `tensor "w": dtype is a number, want a string`},
	{"negative dim", rawFile(`{"w":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]}}`, 24),
		`tensor "w": shape element 1 is -3, want a non-negative integer below 2^63`},
	{"float dim", rawFile(`{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}`, 8),
		`tensor "w": shape element 0 is 2.5, want a non-negative integer below 2^63`},
	{"null dim", rawFile(`{"w":{"dtype":"F32","shape":[null],"data_offsets":[0,4]}}`, 4),
		`tensor "w": shape element 0 is null, want a non-negative integer below 2^63`},
	{"huge dim", rawFile(`{"w":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,1]}}`, 1),
		`tensor "w": shape element 0 is 9223372036854775808, want a non-negative integer below 2^63`},
	{"shape not array", rawFile(`{"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}`, 8),
		`tensor "w": shape is a string, want an array of integers`},
	{"three offsets", rawFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, 1),
		`tensor "w": data_offsets has 3 elements, want [begin, end]`},
	{"negative offset", rawFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}`, 1),
		`tensor "w": data_offsets element 0 is -1, want a non-negative integer below 2^63`},
	{"reversed offsets", rawFile(`{"w":{"dtype":"U8","shape":[6],"data_offsets":[10,4]}}`, 10),
		`tensor "w": data_offsets [10, 4] end before they begin`},
	{"size mismatch", rawFile(`{"model.embed_tokens.weight":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,10]}}`, 10),
		`tensor "model.embed_tokens.weight": data_offsets [0, 10] do not match shape [2, 3] BF16 (12 bytes)`},
	{"scalar size mismatch", rawFile(`{"s":{"dtype":"F64","shape":[],"data_offsets":[0,4]}}`, 4),
		`tensor "s": data_offsets [0, 4] do not match shape [] F64 (8 bytes)`},
	{"shape overflow", rawFile(`{"w":{"dtype":"F64","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}}`, 8),
		`tensor "w": shape [4294967296, 4294967296, 4] F64 is too large (more than 2^63 bytes)`},
	{"past data end", rawFile(`{"w":{"dtype":"U8","shape":[12],"data_offsets":[0,12]}}`, 8),
		`tensor "w": data_offsets [0, 12] run past the end of the data region (8 bytes at offset 63)`},
	{"overlap", rawFile(`{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}}`, 12),
		`tensor "b": data_offsets [4, 12] overlap tensor "a" at [0, 8]`},
	{"identical offsets", rawFile(`{"b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"a":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}}`, 4),
		`tensor "b": data_offsets [0, 4] overlap tensor "a" at [0, 4]`},
	{"empty tensor inside another", rawFile(`{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"z":{"dtype":"U8","shape":[0],"data_offsets":[4,4]}}`, 8),
		`tensor "z": data_offsets [4, 4] overlap tensor "a" at [0, 8]`},
	{"hole", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}`, 12),
		`tensor "b": data_offsets [8, 12] leave bytes [4, 8) of the data region unused (holes are not allowed)`},
	{"first not at zero", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}`, 8),
		`tensor "a": data_offsets [4, 8] leave bytes [0, 4) of the data region unused (holes are not allowed)`},
	{"trailing bytes", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, 6),
		`2 bytes at offset 65 after the last tensor belong to no tensor (data region is 6 bytes, tensors end at 4)`},
	{"data without tensors", rawFile(`{}`, 3),
		`3 bytes at offset 10 after the last tensor belong to no tensor (data region is 3 bytes, tensors end at 0)`},
	{"duplicate tensor", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, 4),
		`tensor "a": appears more than once in the header`},
	{"duplicate field", rawFile(`{"a":{"dtype":"U8","dtype":"I8","shape":[4],"data_offsets":[0,4]}}`, 4),
		`tensor "a": key "dtype" appears more than once in the entry`},
	{"metadata value not string", rawFile(`{"__metadata__":{"format":1}}`, 0),
		`__metadata__: value of key "format" is a number, want a string`},
	{"metadata nested object", rawFile(`{"__metadata__":{"cfg":{"a":"b"}}}`, 0),
		`__metadata__: value of key "cfg" is an object, want a string`},
	{"metadata not object", rawFile(`{"__metadata__":["pt"]}`, 0), `__metadata__ is an array, want an object`},
	{"metadata duplicate key", rawFile(`{"__metadata__":{"a":"1","a":"2"}}`, 0), `__metadata__: key "a" appears more than once`},
	{"duplicate metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, 0), `"__metadata__" appears more than once in the header`},
}

func TestBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i, tc := range badFiles {
		path := filepath.Join(dir, "bad.safetensors")
		if i%2 == 1 {
			path = filepath.Join(dir, "model-00001.safetensors")
		}
		if err := os.WriteFile(path, tc.file, 0o644); err != nil {
			t.Fatal(err)
		}
		want := path + ": " + tc.want
		check := func(how string, err error) {
			t.Helper()
			if err == nil {
				t.Errorf("%s: %s succeeded, want error %q", tc.name, how, want)
				return
			}
			if diff := cmp.Diff(want, err.Error()); diff != "" {
				t.Errorf("%s: %s error mismatch (-want +got):\n%s", tc.name, how, diff)
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Path != path {
				t.Errorf("%s: %s error %#v is not a *FormatError for %s", tc.name, how, err, path)
			}
		}
		f, err := Open(path)
		if err == nil {
			f.Close()
		}
		check("Open", err)
		_, err = ReadHeader(path)
		check("ReadHeader", err)
		_, err = parseFile(path, tc.file)
		check("parseFile", err)
	}
}

// TestReferenceVector reads the file from the reference implementation's
// documentation example.
func TestReferenceVector(t *testing.T) {
	t.Parallel()
	file := []byte("<\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}" +
		"\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00")
	path := writeRaw(t, "ref.safetensors", file)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := []TensorInfo{{Name: "test", DType: tensor.I32, Shape: tensor.Shape{2, 2}, Offset: 68, Size: 16}}
	if diff := cmp.Diff(want, f.Tensors()); diff != "" {
		t.Errorf("Tensors mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(file[68:], f.Data(f.Tensors()[0])); diff != "" {
		t.Errorf("Data mismatch (-want +got):\n%s", diff)
	}
	if f.Metadata() != nil {
		t.Errorf("Metadata = %v, want nil", f.Metadata())
	}
}

// TestHeaderQuirks covers valid headers that are unusual: entries out of
// offset order, padding, unknown entry keys, null metadata, escapes.
func TestHeaderQuirks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    []byte
		want    []TensorInfo // offsets relative to the data region
		wantMD  map[string]string
		wantErr bool
	}{{
		name: "entries in name order, padding, unknown key",
		file: rawFile(`{"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"a":{"extra":[1],"dtype":"F16","shape":[1],"data_offsets":[2,4]}}   `, 4),
		want: []TensorInfo{
			{Name: "b", DType: tensor.U8, Shape: tensor.Shape{2}, Offset: 0, Size: 2},
			{Name: "a", DType: tensor.F16, Shape: tensor.Shape{1}, Offset: 2, Size: 2},
		},
	}, {
		name: "null metadata is absent",
		file: rawFile(`{"__metadata__":null}`, 0),
	}, {
		name:   "empty metadata, escaped names",
		file:   rawFile(`{"__metadata__":{},"a\"\u00e9":{"dtype":"BOOL","shape":[0,5],"data_offsets":[0,0]},"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}`, 8),
		wantMD: map[string]string{},
		want: []TensorInfo{
			{Name: "a\"é", DType: tensor.BOOL, Shape: tensor.Shape{0, 5}, Offset: 0, Size: 0},
			{Name: "s", DType: tensor.I64, Shape: tensor.Shape{}, Offset: 0, Size: 8},
		},
	}, {
		name:   "metadata",
		file:   rawFile(`{"__metadata__":{"format":"pt","x":""}}`, 0),
		wantMD: map[string]string{"format": "pt", "x": ""},
	}}
	for _, tc := range tests {
		h, err := parseFile("q.safetensors", tc.file)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var got []TensorInfo
		for _, ti := range h.Tensors {
			ti.Offset -= h.DataStart()
			got = append(got, ti)
		}
		if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: tensors mismatch (-want +got):\n%s", tc.name, diff)
		}
		if diff := cmp.Diff(tc.wantMD, h.Metadata); diff != "" {
			t.Errorf("%s: metadata mismatch (-want +got):\n%s", tc.name, diff)
		}
		for _, ti := range h.Tensors {
			if got, ok := h.Lookup(ti.Name); !ok || !cmp.Equal(got, ti) {
				t.Errorf("%s: Lookup(%q) = %v, %v", tc.name, ti.Name, got, ok)
			}
		}
	}
}

// recordingReaderAt records the furthest byte read.
type recordingReaderAt struct {
	r   *os.File
	mu  sync.Mutex
	max int64
}

func (r *recordingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	r.max = max(r.max, off+int64(len(p)))
	r.mu.Unlock()
	return r.r.ReadAt(p, off)
}

// TestReadHeaderSparse reads the header of a sparse 2 GiB file whose data
// region is never read: corrupting the data changes nothing, and the reads
// stay inside the header.
func TestReadHeaderSparse(t *testing.T) {
	t.Parallel()
	const size = 2 << 30
	// The header length depends on the number of digits of the data size,
	// which is 10 digits for any header of reasonable size.
	dataLen := int64(size - 8 - 200)
	specs := []Spec{{Name: "big.weight", DType: tensor.BF16}, {Name: "tail", DType: tensor.U8, Shape: tensor.Shape{6}}}
	var hdr []byte
	for range 3 {
		specs[0].Shape = tensor.Shape{dataLen / 2 / 64, 64}
		h, _, err := encodeHeader(specs, map[string]string{"format": "pt"})
		if err != nil {
			t.Fatal(err)
		}
		hdr = h
		dataLen = size - int64(len(hdr)) - 6
		dataLen -= dataLen % 128
	}
	total := int64(len(hdr)) + specs[0].Shape.NumElements()*2 + 6
	path := filepath.Join(t.TempDir(), "sparse.safetensors")
	if err := os.WriteFile(path, hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, total); err != nil {
		t.Skipf("cannot make a sparse file: %v", err)
	}
	if total > size || total < size-256 {
		t.Fatalf("file size %d, want about 2 GiB", total)
	}

	before, err := ReadHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, off := range []int64{int64(len(hdr)), 1 << 30, total - 1} {
		if _, err := f.WriteAt([]byte{0xde, 0xad}[:min(2, total-off)], off); err != nil {
			t.Fatal(err)
		}
	}
	after, err := ReadHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, after, cmpopts.IgnoreUnexported(Header{})); diff != "" {
		t.Errorf("header changed after corrupting data (-before +after):\n%s", diff)
	}
	if got, want := after.FileSize, total; got != want {
		t.Errorf("FileSize = %d, want %d", got, want)
	}
	if got := after.Tensors[len(after.Tensors)-1]; got.Offset+got.Size != total {
		t.Errorf("last tensor ends at %d, want %d", got.Offset+got.Size, total)
	}

	rec := &recordingReaderAt{r: f}
	if _, err := readHeader(path, rec, total); err != nil {
		t.Fatal(err)
	}
	if rec.max != int64(len(hdr)) {
		t.Errorf("readHeader read up to offset %d, want exactly the header (%d bytes)", rec.max, len(hdr))
	}
}

func TestReadHeaderMatchesOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "m.safetensors")
	specs := []Spec{{"a", tensor.F32, tensor.Shape{3, 5}}, {"b", tensor.I8, tensor.Shape{7}}, {"c", tensor.F64, nil}}
	err := WriteFile(path, specs, map[string]string{"format": "pt"}, func(w *Writer) error {
		for _, s := range specs {
			b, _ := sample(s.DType, int(s.Shape.NumElements()))
			if err := w.WriteTensor(s.Name, b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := ReadHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if diff := cmp.Diff(f.Header(), h, cmpopts.IgnoreUnexported(Header{})); diff != "" {
		t.Errorf("ReadHeader and Open disagree (-Open +ReadHeader):\n%s", diff)
	}
	if _, err := ReadHeader(filepath.Dir(path)); err == nil {
		t.Error("ReadHeader of a directory succeeded")
	}
	if _, err := Open(filepath.Join(filepath.Dir(path), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file: %v, want ErrNotExist", err)
	}
}
