package torchsave

import (
	"archive/zip"
	"bytes"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

type rec struct {
	name string
	data []byte
}

// buildZip assembles a zip the way the Writer does, from whole records.
func buildZip(recs ...rec) []byte {
	var b []byte
	var dir []record
	for _, r := range recs {
		crc := crc32.ChecksumIEEE(r.data)
		dir = append(dir, record{name: r.name, offset: int64(len(b)), size: int64(len(r.data)), crc: crc})
		b = append(b, localHeader(r.name, int64(len(b)), int64(len(r.data)), crc)...)
		b = append(b, r.data...)
	}
	return append(b, centralDirectory(dir, int64(len(b)))...)
}

// pickleOf builds a data.pkl with the test pickler.
func pickleOf(build func(p *pickler)) []byte {
	p := &pickler{globals: map[string]int{}, consts: map[string]int{}}
	p.op(opProto, 2)
	build(p)
	p.op(opStop)
	return p.buf
}

// tensorPickle is {"model": OrderedDict(w=tensor)} with free-form tensor
// arguments.
func tensorPickle(storage, key string, numel, offset int64, shape, stride []int64, extra func(p *pickler)) []byte {
	return pickleOf(func(p *pickler) {
		p.op(opEmptyDict)
		p.str("model")
		p.orderedDict()
		p.str("w")
		p.global("torch._utils", "_rebuild_tensor_v2")
		p.op(opMark, opMark)
		p.str("storage")
		p.global("torch", storage)
		p.str(key)
		p.str("cpu")
		p.int(numel)
		p.op(opTuple, opBinPersID)
		p.int(offset)
		p.ints(shape)
		p.ints(stride)
		p.bool(false)
		p.orderedDict()
		if extra != nil {
			extra(p)
		}
		p.op(opTuple, opReduce, opSetItem, opSetItem)
	})
}

func ptFile(pkl []byte, more ...rec) []byte {
	recs := []rec{{"archive/data.pkl", pkl}}
	recs = append(recs, more...)
	recs = append(recs, rec{"archive/version", []byte("3\n")})
	return buildZip(recs...)
}

func openBytes(t *testing.T, data []byte) (*File, error) {
	t.Helper()
	path := tempPath(t, "bad.pt")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err == nil {
		t.Cleanup(func() { f.Close() })
	}
	return f, err
}

func TestReadValid(t *testing.T) {
	data := make([]byte, 24)
	for i := range data {
		data[i] = byte(i)
	}
	// A view at element 2 of a 6-element F32 storage, shape [2, 2].
	pkl := tensorPickle("FloatStorage", "0", 6, 2, []int64{2, 2}, []int64{2, 1}, nil)
	f, err := openBytes(t, ptFile(pkl, rec{"archive/data/0", data}))
	if err != nil {
		t.Fatal(err)
	}
	tt := f.Tensors()
	if len(tt) != 1 || tt[0].Name != "model/w" || !bytes.Equal(tt[0].Data, data[8:24]) || tt[0].DType != tensor.F32 {
		t.Fatalf("tensors: %+v", tt)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if tt[0].Data != nil {
		t.Error("Close left Data set")
	}
}

// TestReadObjects: a call of any class or function the reader does not
// model is recorded as an Object, never executed (reading an untrusted
// file runs no code).
func TestReadObjects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "os.pt")
	if err := os.WriteFile(path, ptFile([]byte("\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.")), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if diff := cmp.Diff(&Object{Class: "os.system", Args: Tuple{"ls"}}, f.Root); diff != "" {
		t.Errorf("root (-want +got):\n%s", diff)
	}
}

func TestReadErrors(t *testing.T) {
	good := make([]byte, 24)
	okPkl := tensorPickle("FloatStorage", "0", 6, 0, []int64{6}, []int64{1}, nil)
	deflated := func() []byte {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		for _, r := range []rec{{"archive/data.pkl", okPkl}, {"archive/data/0", good}, {"archive/version", []byte("3\n")}} {
			w, _ := zw.CreateHeader(&zip.FileHeader{Name: r.name, Method: zip.Deflate})
			w.Write(r.data)
		}
		zw.Close()
		return b.Bytes()
	}()
	badCRC := ptFile(okPkl, rec{"archive/data/0", good})
	badCRC[bytes.Index(badCRC, []byte("_rebuild_tensor_v2"))] ^= 1
	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "not a zip file (0 bytes)"},
		{"garbage", bytes.Repeat([]byte("x"), 100), "no end of central directory record"},
		{"no version", buildZip(rec{"archive/data.pkl", okPkl}, rec{"archive/data/0", good}), "version: record missing"},
		{"bad version", buildZip(rec{"archive/data.pkl", okPkl}, rec{"archive/data/0", good}, rec{"archive/version", []byte("x")}), `malformed version "x"`},
		{"no data.pkl", buildZip(rec{"archive/version", []byte("3\n")}), "data.pkl: record missing"},
		{"big endian", ptFile(okPkl, rec{"archive/data/0", good}, rec{"archive/byteorder", []byte("big")}), `byteorder: byte order "big" is not supported`},
		{"deflated", deflated, "data.pkl: record is compressed (method 8)"},
		{"two folders", buildZip(rec{"a/data.pkl", okPkl}, rec{"b/version", []byte("3\n")}), `b/version: record is outside the archive folder "a"`},
		{"no folder", buildZip(rec{"data.pkl", okPkl}), "data.pkl: record is not inside a folder"},
		{"duplicate", ptFile(okPkl, rec{"archive/data/0", good}, rec{"archive/data/0", good}), "data/0: duplicate record"},
		{"bad crc", badCRC, "data.pkl: CRC-32 mismatch"},
		{"missing storage", ptFile(okPkl), `storage "0": record data/0 missing`},
		{"storage size", ptFile(okPkl, rec{"archive/data/0", good[:20]}), "does not match record data/0 of 20 bytes"},
		{"beyond storage", ptFile(tensorPickle("FloatStorage", "0", 6, 4, []int64{3}, []int64{1}, nil), rec{"archive/data/0", good}),
			`data/0: tensor "model/w": elements [4, 4+3) exceed the storage of 24 bytes`},
		{"negative offset", ptFile(tensorPickle("FloatStorage", "0", 6, -1, []int64{3}, []int64{1}, nil), rec{"archive/data/0", good}), "exceed the storage"},
		{"non-contiguous", ptFile(tensorPickle("FloatStorage", "0", 6, 0, []int64{2, 3}, []int64{1, 2}, nil), rec{"archive/data/0", good}),
			`tensor "model/w": non-contiguous tensor (shape [2, 3], stride [1, 2], expected stride [3, 1])`},
		{"rank mismatch", ptFile(tensorPickle("FloatStorage", "0", 6, 0, []int64{6}, []int64{1, 1}, nil), rec{"archive/data/0", good}), "stride [1, 1] does not match shape [6]"},
		{"negative dim", ptFile(tensorPickle("FloatStorage", "0", 6, 0, []int64{-6}, []int64{1}, nil), rec{"archive/data/0", good}), "invalid shape [-6]"},
		{"metadata", ptFile(tensorPickle("FloatStorage", "0", 6, 0, []int64{6}, []int64{1}, func(p *pickler) {
			p.op(opEmptyDict)
			p.str("neg")
			p.bool(true)
			p.op(opSetItem)
		}), rec{"archive/data/0", good}), "tensor metadata"},
		{"bad storage class", ptFile(tensorPickle("QInt8Storage", "0", 6, 0, []int64{6}, []int64{1}, nil), rec{"archive/data/0", good}),
			"data.pkl at byte 148: persistent id storage type is a reference to torch.QInt8Storage, want torch.<Type>Storage"},
		{"bad opcode", ptFile([]byte("\x80\x02I1\n.")), "data.pkl at byte 2: unsupported pickle opcode 0x49"},
		{"underflow", ptFile([]byte("\x80\x02s.")), "stack underflow"},
		{"no stop", ptFile([]byte("\x80\x02N")), "pickle ends without STOP"},
		{"left over", ptFile([]byte("\x80\x02NN.")), "STOP with 1 values left"},
		{"memo", ptFile([]byte("\x80\x02h\x05.")), "memo entry 5 is not set"},
		{"long string", ptFile([]byte("\x80\x02X\xff\xff\xff\x7fab.")), "runs past the end of the pickle"},
		{"huge long", ptFile([]byte("\x80\x02\x8a\x09123456789.")), "LONG1 integer of 9 bytes"},
		{"lone storage global", ptFile([]byte("\x80\x02ctorch\nFloatStorage\n.")), "unexpected global torch.FloatStorage in the value tree"},
		{"dict key", ptFile([]byte("\x80\x02}]Ns.")), "dict key of type list is not supported"},
		{"dup key", ptFile([]byte("\x80\x02}(K\x01NK\x01Nu.")), "duplicate dict key 1"},
		{"build on dict", ptFile([]byte("\x80\x02}}b.")), "BUILD on a dict"},
		{"reduce args", ptFile([]byte("\x80\x02ccollections\nOrderedDict\nK\x01\x85R.")), "OrderedDict called with arguments"},
		{"deep", ptFile([]byte("\x80\x02" + strings.Repeat("]", 300) + strings.Repeat("a", 299) + ".")), "nested deeper than 200"},
		{"protocol", ptFile([]byte("\x80\x09N.")), "unsupported pickle protocol 9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := openBytes(t, c.file)
			if err == nil {
				t.Fatalf("Open succeeded, want error %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "bad.pt") {
				t.Errorf("error %q, want one naming the file and containing %q", err, c.want)
			}
			var te *Error
			if !errors.As(err, &te) {
				t.Errorf("error is a %T, want *Error", err)
			}
		})
	}
}

func TestVerifyCRC(t *testing.T) {
	root := dict("model", stateDict("w", ts(tensor.F32, 4)))
	path := tempPath(t, "x.pt")
	writeFile(t, path, root, fillData(t, root), nil)
	b, _ := os.ReadFile(path)
	f, err := parseData(path, b)
	if err != nil {
		t.Fatal(err)
	}
	f.Tensors()[0].Data[0] ^= 0xff // the bytes are a private copy here
	if err := f.VerifyCRC(); err == nil || !strings.Contains(err.Error(), "data/0: CRC-32 mismatch") {
		t.Errorf("VerifyCRC: %v", err)
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := Open(tempPath(t, "nope.pt"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file: %v", err)
	}
}
