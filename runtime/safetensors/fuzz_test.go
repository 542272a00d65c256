package safetensors

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/rolltpl/rolltpl/lang/langtest"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// fuzzSeeds returns whole files, valid and broken, to seed FuzzParseHeader.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	add := func(specs []Spec, md map[string]string) {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, specs, md)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range specs {
			b, _ := sample(s.DType, int(s.Shape.NumElements()))
			if err := w.WriteTensor(s.Name, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, buf.Bytes())
	}
	add(nil, nil)
	add(nil, map[string]string{"format": "pt"})
	add(roundTripSpecs(), map[string]string{"format": "pt"})
	add([]Spec{{"a", tensor.U8, tensor.Shape{3}}, {"b", tensor.U8, tensor.Shape{0}}, {"c", tensor.F16, nil}}, nil)
	for _, bf := range badFiles {
		seeds = append(seeds, bf.file)
	}
	return seeds
}

// FuzzParseHeader feeds arbitrary files to the header parser. It must not
// panic; the mmap path (parseFile) and the read path (readHeader) must
// agree; every error must be a *FormatError; and an accepted header must
// describe tensors that tile the data region exactly and survive
// re-encoding with the writer.
func FuzzParseHeader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		h, err := parseFile("fuzz", file)
		h2, err2 := readHeader("fuzz", bytes.NewReader(file), int64(len(file)))
		if fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("parseFile error %v, readHeader error %v", err, err2)
		}
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Path != "fuzz" {
				t.Fatalf("error %#v is not a *FormatError for the file", err)
			}
			return
		}
		if diff := cmp.Diff(h, h2, cmpopts.IgnoreUnexported(Header{})); diff != "" {
			t.Fatalf("parseFile and readHeader disagree (-parseFile +readHeader):\n%s", diff)
		}
		checkLayout(t, h, int64(len(file)))

		// Re-encoding the header must give a file with the same tensors.
		specs := make([]Spec, len(h.Tensors))
		for i, ti := range h.Tensors {
			specs[i] = ti.Spec()
		}
		hdr, _, err := encodeHeader(specs, h.Metadata)
		if err != nil {
			t.Fatalf("re-encoding an accepted header: %v", err)
		}
		re, err := parseFile("re", append(hdr, file[h.DataStart():]...))
		if err != nil {
			t.Fatalf("re-encoded header rejected: %v", err)
		}
		rel := func(h *Header) []TensorInfo {
			var out []TensorInfo
			for _, ti := range h.Tensors {
				ti.Offset -= h.DataStart()
				out = append(out, ti)
			}
			return out
		}
		if diff := cmp.Diff(rel(h), rel(re), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("re-encoded header differs (-original +re-encoded):\n%s", diff)
		}
		if diff := cmp.Diff(h.Metadata, re.Metadata, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("re-encoded metadata differs (-original +re-encoded):\n%s", diff)
		}
	})
}

// checkLayout checks the invariants of an accepted header of a file of
// the given size.
func checkLayout(t *testing.T, h *Header, size int64) {
	t.Helper()
	if h.FileSize != size || h.HeaderLen < 2 || h.DataStart() > size {
		t.Fatalf("header length %d, file size %d for a %d-byte file", h.HeaderLen, h.FileSize, size)
	}
	pos := h.DataStart()
	for _, ti := range h.Tensors {
		if ti.Offset != pos {
			t.Fatalf("tensor %q at %d, want %d (tensors must tile the data region)", ti.Name, ti.Offset, pos)
		}
		if ti.DType.Size() <= 0 || ti.Size != byteSize(ti.DType, ti.Shape) {
			t.Fatalf("tensor %q: %v %v has %d bytes", ti.Name, ti.Shape, ti.DType, ti.Size)
		}
		if got, ok := h.Lookup(ti.Name); !ok || !cmp.Equal(got, ti) {
			t.Fatalf("Lookup(%q) = %v, %v, want %v", ti.Name, got, ok, ti)
		}
		pos += ti.Size
	}
	if pos != size {
		t.Fatalf("tensors end at %d, file has %d bytes", pos, size)
	}
	if len(h.byName) != len(h.Tensors) {
		t.Fatalf("%d names for %d tensors", len(h.byName), len(h.Tensors))
	}
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzParseHeader from
// fuzzSeeds when ROLLTPL_UPDATE=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if !langtest.Update() {
		t.Skip("set " + langtest.UpdateEnv + "=1 to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseHeader")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The broken files of badFiles are added by f.Add; commit the valid ones.
	names := []string{"valid-empty", "valid-metadata", "valid-all-dtypes", "valid-zero-size"}
	for i, s := range fuzzSeeds(t)[:len(names)] {
		name := filepath.Join(dir, names[i])
		if err := os.WriteFile(name, fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
