package safetensors

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// roundTripSpecs has one [2, 3] tensor of every dtype plus a scalar and
// zero-size tensors.
func roundTripSpecs() []Spec {
	var specs []Spec
	for _, dt := range allDTypes {
		specs = append(specs, Spec{Name: "t." + dt.String(), DType: dt, Shape: tensor.Shape{2, 3}})
	}
	return append(specs,
		Spec{Name: "scalar", DType: tensor.F32, Shape: tensor.Shape{}},
		Spec{Name: "scalar.bf16", DType: tensor.BF16, Shape: nil},
		Spec{Name: "empty", DType: tensor.BF16, Shape: tensor.Shape{0, 4}},
		Spec{Name: "empty.f64", DType: tensor.F64, Shape: tensor.Shape{3, 0}},
		Spec{Name: "long.i64", DType: tensor.I64, Shape: tensor.Shape{5, 7}},
	)
}

// writeSample writes specs with sample data to path; odd tensors are
// written in several parts to exercise multi-slice writes.
func writeSample(t testing.TB, path string, specs []Spec, md map[string]string) {
	t.Helper()
	err := WriteFile(path, specs, md, func(w *Writer) error {
		for i, s := range specs {
			b, _ := sample(s.DType, int(s.Shape.NumElements()))
			if i%2 == 0 {
				if err := w.WriteTensor(s.Name, b); err != nil {
					return err
				}
				continue
			}
			k := len(b) / 3
			if err := w.WriteTensor(s.Name, b[:k], nil, b[k:2*k], b[2*k:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	specs := roundTripSpecs()
	md := map[string]string{"format": "pt", "note": "ünïcode \"quoted\"\n"}
	path := filepath.Join(t.TempDir(), "rt.safetensors")
	writeSample(t, path, specs, md)
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}

	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr, layout, err := encodeHeader(specs, md)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(layout, f.Tensors(), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("layout mismatch (-writer +reader):\n%s", diff)
	}
	if diff := cmp.Diff(md, f.Metadata()); diff != "" {
		t.Errorf("metadata mismatch (-want +got):\n%s", diff)
	}
	if got, want := f.Header().HeaderLen, int64(len(hdr)-8); got != want || got%8 != 0 {
		t.Errorf("HeaderLen = %d, want %d, a multiple of 8", got, want)
	}
	for i, s := range specs {
		ti, ok := f.Lookup(s.Name)
		if !ok {
			t.Errorf("Lookup(%q) failed", s.Name)
			continue
		}
		if !cmp.Equal(ti, f.Tensors()[i], cmpopts.EquateEmpty()) {
			t.Errorf("tensor %d is %v, want %v (file order = spec order)", i, f.Tensors()[i], ti)
		}
		want, _ := sample(s.DType, int(s.Shape.NumElements()))
		if diff := cmp.Diff(want, f.Data(ti), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: data mismatch (-want +got):\n%s", s.Name, diff)
		}
		if !s.Shape.Equal(ti.Shape) || s.DType != ti.DType {
			t.Errorf("%s: got %v %v, want %v %v", s.Name, ti.Shape, ti.DType, s.Shape, s.DType)
		}
		if err := f.Release(ti); err != nil {
			t.Errorf("Release(%s): %v", s.Name, err)
		}
	}
	if _, ok := f.Lookup("nope"); ok {
		t.Error(`Lookup("nope") succeeded`)
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestReferenceBytes checks the exact bytes the reference writer produces
// in its own tests (safetensors/src/tensor.rs).
func TestReferenceBytes(t *testing.T) {
	t.Parallel()
	f32 := []byte{0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64}
	tests := []struct {
		name  string
		specs []Spec
		md    map[string]string
		data  [][]byte
		want  string
	}{{
		name: "empty",
		want: "\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
	}, {
		name: "empty with metadata",
		md:   map[string]string{"framework": "pt"},
		want: "\x28\x00\x00\x00\x00\x00\x00\x00" + `{"__metadata__":{"framework":"pt"}}     `,
	}, {
		name:  "no padding",
		specs: []Spec{{"attn.0", tensor.F32, tensor.Shape{1, 2, 3}}},
		data:  [][]byte{f32},
		want:  "\x40\x00\x00\x00\x00\x00\x00\x00" + `{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}` + string(f32),
	}, {
		name:  "forced alignment",
		specs: []Spec{{"attn0", tensor.F32, tensor.Shape{1, 1, 2, 3}}},
		data:  [][]byte{f32},
		want:  "\x48\x00\x00\x00\x00\x00\x00\x00" + `{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ` + string(f32),
	}, {
		name: "metadata first, sorted keys, tensors in given order",
		specs: []Spec{
			{"z", tensor.U8, tensor.Shape{1}},
			{"a<&>", tensor.F8E4M3, tensor.Shape{2}},
		},
		md:   map[string]string{"format": "pt", "b": "\u2028", "a": "x\ty"},
		data: [][]byte{{1}, {2, 3}},
		want: "\xa8\x00\x00\x00\x00\x00\x00\x00" +
			`{"__metadata__":{"a":"x\ty","b":"` + "\u2028" + `","format":"pt"},` +
			`"z":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},` +
			`"a<&>":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[1,3]}}   ` + "\x01\x02\x03",
	}}
	for _, tc := range tests {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, tc.specs, tc.md)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for i, s := range tc.specs {
			if err := w.WriteTensor(s.Name, tc.data[i]); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, buf.String()); diff != "" {
			t.Errorf("%s: bytes mismatch (-want +got):\n%s", tc.name, diff)
		}
		if got := w.Size(); got != int64(buf.Len()) {
			t.Errorf("%s: Size() = %d, wrote %d bytes", tc.name, got, buf.Len())
		}
		if _, err := parseFile(tc.name, buf.Bytes()); err != nil {
			t.Errorf("%s: reading back: %v", tc.name, err)
		}
	}
}

func TestSortSpecs(t *testing.T) {
	t.Parallel()
	var specs []Spec
	for i := len(allDTypes) - 1; i >= 0; i-- {
		specs = append(specs, Spec{Name: "b", DType: allDTypes[i]}, Spec{Name: "a", DType: allDTypes[i]})
	}
	SortSpecs(specs)
	var got []string
	for _, s := range specs {
		got = append(got, s.Name+":"+s.DType.String())
	}
	want := strings.Fields(`a:I64 b:I64 a:F64 b:F64 a:F32 b:F32 a:I32 b:I32 a:BF16 b:BF16 a:F16 b:F16
		a:I16 b:I16 a:F8_E4M3 b:F8_E4M3 a:F8_E5M2 b:F8_E5M2 a:I8 b:I8 a:U8 b:U8 a:BOOL b:BOOL`)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SortSpecs mismatch (-want +got):\n%s", diff)
	}
}

// TestMultiSlice writes tensors as many ordered pieces, through
// WriteTensor and through Next, and checks the concatenation.
func TestMultiSlice(t *testing.T) {
	t.Parallel()
	specs := []Spec{{"qkv", tensor.BF16, tensor.Shape{6, 4}}, {"gate_up", tensor.F32, tensor.Shape{2, 8}}, {"e", tensor.U8, tensor.Shape{0}}}
	q, _ := sample(tensor.BF16, 24)
	g, _ := sample(tensor.F32, 16)
	var buf bytes.Buffer
	w, err := NewWriter(&buf, specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Rows in an interleaved order, as a QKV conversion would issue them.
	if err := w.WriteTensor("qkv", q[0:8], q[32:40], q[8:16], q[40:48], q[16:32]); err != nil {
		t.Fatal(err)
	}
	tw, err := w.Next("gate_up")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(g); i += 5 {
		if _, err := tw.Write(g[i:min(i+5, len(g))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteTensor("e"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := parseFile("m", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	wantQ := append(append(append(append(append([]byte(nil), q[0:8]...), q[32:40]...), q[8:16]...), q[40:48]...), q[16:32]...)
	got := buf.Bytes()
	if diff := cmp.Diff(wantQ, got[f.Tensors[0].Offset:][:48]); diff != "" {
		t.Errorf("qkv mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(g, got[f.Tensors[1].Offset:][:64]); diff != "" {
		t.Errorf("gate_up mismatch (-want +got):\n%s", diff)
	}
}

// errWriter fails after n bytes.
type errWriter struct{ n int }

func (e *errWriter) Write(p []byte) (int, error) {
	if len(p) > e.n {
		n := e.n
		e.n = 0
		return n, errors.New("disk full")
	}
	e.n -= len(p)
	return len(p), nil
}

func TestWriterErrors(t *testing.T) {
	t.Parallel()
	specs := []Spec{{"a", tensor.F32, tensor.Shape{2}}, {"b", tensor.U8, tensor.Shape{3}}}
	eight, three := make([]byte, 8), make([]byte, 3)
	tests := []struct {
		name  string
		specs []Spec
		run   func(w *Writer) error
		want  string
	}{
		{"duplicate name", []Spec{{"a", tensor.U8, nil}, {"a", tensor.U8, nil}}, nil,
			`safetensors: tensor "a" appears more than once`},
		{"reserved name", []Spec{{"__metadata__", tensor.U8, nil}}, nil,
			`safetensors: tensor name "__metadata__" is reserved`},
		{"invalid UTF-8 name", []Spec{{"a\xff", tensor.U8, nil}}, nil,
			`safetensors: tensor name "a\xff" is not valid UTF-8`},
		{"invalid dtype", []Spec{{"a", tensor.Invalid, nil}}, nil,
			`safetensors: tensor "a": invalid dtype INVALID`},
		{"negative dim", []Spec{{"a", tensor.U8, tensor.Shape{-1}}}, nil,
			`safetensors: tensor "a": invalid or too large shape [-1]`},
		{"huge shape", []Spec{{"a", tensor.F64, tensor.Shape{1 << 31, 1 << 31, 4}}}, nil,
			`safetensors: tensor "a": invalid or too large shape [2147483648, 2147483648, 4]`},
		{"out of order", specs, func(w *Writer) error { return w.WriteTensor("b", three) },
			`safetensors: tensor "b" written out of order: "a" comes first`},
		{"unknown tensor", specs, func(w *Writer) error { return w.WriteTensor("c") },
			`safetensors: tensor "c" is not in the header`},
		{"written twice", specs, func(w *Writer) error {
			w.WriteTensor("a", eight)
			return w.WriteTensor("a", eight)
		}, `safetensors: tensor "a" was already written`},
		{"too few bytes", specs, func(w *Writer) error { return w.WriteTensor("a", eight[:3], eight[:4]) },
			`safetensors: tensor "a": got 7 bytes, want 8 (shape [2] F32)`},
		{"too many bytes", specs, func(w *Writer) error { return w.WriteTensor("a", eight, three) },
			`safetensors: tensor "a": got 11 bytes, want 8 (shape [2] F32)`},
		{"write past end", specs, func(w *Writer) error {
			tw, _ := w.Next("a")
			tw.Write(eight[:6])
			_, err := tw.Write(three)
			return err
		}, `safetensors: tensor "a": write of 3 bytes exceeds the 2 bytes left`},
		{"next before complete", specs, func(w *Writer) error {
			tw, _ := w.Next("a")
			tw.Write(three)
			_, err := w.Next("b")
			return err
		}, `safetensors: tensor "b" begun before tensor "a" was complete (3 of 8 bytes written)`},
		{"stale tensor writer", specs, func(w *Writer) error {
			tw, _ := w.Next("a")
			tw.Write(eight)
			w.Next("b")
			_, err := tw.Write(nil)
			return err
		}, `safetensors: tensor "a" is no longer being written`},
		{"close incomplete", specs, func(w *Writer) error {
			tw, _ := w.Next("a")
			tw.Write(three)
			return w.Close()
		}, `safetensors: tensor "a" is incomplete: 3 of 8 bytes written`},
		{"close missing", specs, func(w *Writer) error {
			w.WriteTensor("a", eight)
			return w.Close()
		}, `safetensors: tensor "b" (2 of 2) was not written`},
		{"write after close", specs, func(w *Writer) error {
			w.Close()
			return w.WriteTensor("a", eight)
		}, `safetensors: Writer is closed`},
		{"close twice", []Spec{}, func(w *Writer) error {
			w.Close()
			return w.Close()
		}, `safetensors: Writer already closed`},
	}
	for _, tc := range tests {
		w, err := NewWriter(io.Discard, tc.specs, nil)
		if err == nil {
			if tc.run == nil {
				t.Errorf("%s: NewWriter succeeded", tc.name)
				continue
			}
			err = tc.run(w)
		}
		got := fmt.Sprint(err)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: error mismatch (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestWriterUnderlyingError(t *testing.T) {
	t.Parallel()
	specs := []Spec{{"a", tensor.F32, tensor.Shape{2}}}
	if _, err := NewWriter(&errWriter{n: 10}, specs, nil); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("NewWriter with failing writer: %v", err)
	}
	w, err := NewWriter(&errWriter{n: 64 + 4}, specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = w.WriteTensor("a", make([]byte, 8))
	if want := `safetensors: writing tensor "a": disk full`; fmt.Sprint(err) != want {
		t.Errorf("WriteTensor error %v, want %s", err, want)
	}
	if err2 := w.Close(); err2 != err {
		t.Errorf("Close error %v, want the sticky %v", err2, err)
	}
}

// TestWriteFileFailure checks that a failing fill leaves neither the file
// nor the temporary file.
func TestWriteFileFailure(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "x.safetensors")
	specs := []Spec{{"a", tensor.F32, tensor.Shape{2}}}
	err := WriteFile(path, specs, nil, func(w *Writer) error { return nil })
	if want := path + `: safetensors: tensor "a" (1 of 1) was not written`; fmt.Sprint(err) != "writing "+want {
		t.Errorf("WriteFile error %v, want writing %s", err, want)
	}
	for _, p := range []string{path, path + ".tmp"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a failed WriteFile", p)
		}
	}
}
