package torchsave

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/runtime/tempname"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// goCases are value trees for the tests that need no torch.
func goCases() []struct {
	name string
	root any
} {
	type tc = struct {
		name string
		root any
	}
	cases := []tc{
		{"all_dtypes", dict("model", allDTypesModel(append(allDTypes, tensor.F8E4M3, tensor.F8E5M2)))},
		{"vp", dict("model0", stateDict("a", ts(tensor.BF16, 4, 4)), "model1", stateDict("a", ts(tensor.BF16, 4, 4), "b", ts(tensor.F32)))},
		{"values", dict("iteration", int64(1), "checkpoint_version", 3.0, "n", nil, "b", true,
			"nested", dict("l", &List{Items: []any{int64(-1 << 40), "s", Tuple{}, Tuple{int64(1), int64(2), int64(3), int64(4), int64(5)}}}),
			"model", stateDict())},
		{"attrs", dict("model", &Dict{Ordered: true, Items: []Item{{"w", ts(tensor.F16, 2)}},
			Attrs: dict("_metadata", stateDict("", dict("version", int64(1)), "decoder", dict("version", int64(2)))),
		})},
		{"empty_only", dict("model", stateDict("e1", ts(tensor.F32, 0), "e2", ts(tensor.BF16, 5, 0), "e3", ts(tensor.I64, 0)))},
		{"empty", dict()},
	}
	return cases
}

func TestRoundTrip(t *testing.T) {
	for _, c := range goCases() {
		t.Run(c.name, func(t *testing.T) {
			data := fillData(t, c.root)
			path := tempPath(t, "model_optim_rng.pt")
			writeFile(t, path, c.root, data, nil)
			if left, _ := filepath.Glob(path + TempSuffix + "*"); len(left) != 0 {
				t.Errorf("temporary file left behind: %v", left)
			}
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != createMode(t) {
				t.Errorf("mode of the file: %v %v", st.Mode(), err)
			}
			f := mustOpen(t, path)
			if diff := diffJSON(normJSON(t, spec(c.root, "", data)), normJSON(t, spec(f.Root, "", nil))); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
			if f.ArchiveName != "model_optim_rng" {
				t.Errorf("archive folder %q", f.ArchiveName)
			}
			// Records: names, order and 64-byte alignment.
			var names []string
			for _, r := range f.Records() {
				names = append(names, r.Name)
				if r.Offset%alignment != 0 {
					t.Errorf("record %s data at offset %d, not 64-byte aligned", r.Name, r.Offset)
				}
			}
			want := []string{"data.pkl", ".format_version", ".storage_alignment", "byteorder"}
			for i := range f.Tensors() {
				want = append(want, "data/"+itoa(i))
			}
			want = append(want, "version")
			if diff := cmp.Diff(want, names); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
			for _, tt := range f.Tensors() {
				if !bytes.Equal(tt.Data, data[tt.Name]) {
					t.Errorf("%s: data differs", tt.Name)
				}
				if tt.StorageOffset != 0 || cap(tt.Data) != len(tt.Data) {
					t.Errorf("%s: offset %d, cap %d len %d", tt.Name, tt.StorageOffset, cap(tt.Data), len(tt.Data))
				}
			}
			checkWithArchiveZip(t, path)
		})
	}
}

// checkWithArchiveZip reads every record with the standard library, which
// verifies CRC-32s and the zip64 structures.
func checkWithArchiveZip(t *testing.T, path string) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, zf := range zr.File {
		if zf.Method != zip.Store {
			t.Errorf("%s: method %d", zf.Name, zf.Method)
		}
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			t.Errorf("%s: %v", zf.Name, err)
		}
		if uint64(n) != zf.UncompressedSize64 {
			t.Errorf("%s: read %d bytes, want %d", zf.Name, n, zf.UncompressedSize64)
		}
	}
}

func itoa(i int) string { return joinPath("", i) }

// TestWriteStream writes all tensor bytes through io.Writer in odd pieces
// spanning tensor boundaries; the file must equal the WriteTensor one.
func TestWriteStream(t *testing.T) {
	root := dict("model", stateDict(
		"e0", ts(tensor.F32, 0),
		"a", ts(tensor.BF16, 33),
		"e1", ts(tensor.F32, 0),
		"e2", ts(tensor.I64, 3, 0),
		"b", ts(tensor.U8, 1),
		"c", ts(tensor.F64, 100, 3),
		"e3", ts(tensor.F16, 0),
	))
	data := fillData(t, root)
	want := tempPath(t, "x.pt")
	writeFile(t, want, root, data, nil)

	got := tempPath(t, "x.pt")
	w, err := Create(got, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, ti := range w.Tensors() {
		all = append(all, data[ti.Name]...)
	}
	for i, step := 0, 1; i < len(all); step = step*3 + 1 {
		j := min(len(all), i+step)
		if n, err := w.Write(all[i:j]); err != nil || n != j-i {
			t.Fatalf("Write: %d, %v", n, err)
		}
		i = j
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(want)
	b, _ := os.ReadFile(got)
	if !bytes.Equal(a, b) {
		t.Errorf("streamed file differs from the WriteTensor file at byte %d", firstDiff(a, b))
	}
}

func TestArchiveName(t *testing.T) {
	for _, c := range []struct {
		file string
		opts *Options
		want string
	}{
		{"model_optim_rng.pt", nil, "model_optim_rng"},
		{"x.tar.pt", nil, "x.tar"},
		{"noext", nil, "noext"},
		{".pt", nil, "archive"},
		{"a.pt", &Options{ArchiveName: "archive"}, "archive"},
	} {
		path := tempPath(t, c.file)
		root := dict("model", stateDict("w", ts(tensor.F32, 2)))
		writeFile(t, path, root, fillData(t, root), c.opts)
		f := mustOpen(t, path)
		if f.ArchiveName != c.want {
			t.Errorf("%s: archive folder %q, want %q", c.file, f.ArchiveName, c.want)
		}
	}
	if _, err := Create(tempPath(t, "a.pt"), dict(), &Options{ArchiveName: "a/b"}); err == nil {
		t.Error("Create accepted archive name a/b")
	}
}

func TestWriterErrors(t *testing.T) {
	root := dict("model", stateDict("a", ts(tensor.F32, 2), "b", ts(tensor.BF16, 3)))
	data := fillData(t, root)
	for _, c := range []struct {
		name string
		do   func(w *Writer) error
		want string
	}{
		{"wrong name", func(w *Writer) error { return w.WriteTensor("model/b", data["model/b"]) }, `WriteTensor("model/b"): the next tensor is "model/a"`},
		{"short", func(w *Writer) error { return w.WriteTensor("model/a", data["model/a"][:7]) }, `tensor "model/a": WriteTensor got 7 bytes, want 8`},
		{"long", func(w *Writer) error { return w.WriteTensor("model/a", data["model/a"], []byte{1}) }, "got 9 bytes, want 8"},
		{"missing", func(w *Writer) error {
			w.WriteTensor("model/a", data["model/a"])
			return w.Close()
		}, `data/1: tensor "model/b": not written (1 of 2 tensors written)`},
		{"partial", func(w *Writer) error {
			w.Write(data["model/a"][:3])
			return w.Close()
		}, `tensor "model/a": only 3 of 8 bytes written`},
		{"mixed", func(w *Writer) error {
			w.Write(data["model/a"][:3])
			return w.WriteTensor("model/a", data["model/a"])
		}, "while 3 of 8 bytes of this tensor are written"},
		{"beyond", func(w *Writer) error {
			_, err := w.Write(make([]byte, 8+6+1))
			return err
		}, "1 bytes written beyond the last declared tensor"},
		{"extra tensor", func(w *Writer) error {
			w.WriteTensor("model/a", data["model/a"])
			w.WriteTensor("model/b", data["model/b"])
			return w.WriteTensor("model/c")
		}, "all 2 declared tensors are written"},
		{"abort", func(w *Writer) error {
			w.WriteTensor("model/a", data["model/a"])
			w.Abort()
			return w.WriteTensor("model/b", data["model/b"])
		}, "writer aborted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := tempPath(t, "x.pt")
			w, err := Create(path, root, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = c.do(w)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v, want one naming %s and containing %q", err, path, c.want)
			}
			var te *Error
			if !errors.As(err, &te) {
				t.Errorf("error is a %T, want *Error", err)
			}
			if err2 := w.Close(); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("Close after failure: %v", err2)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 0 {
				t.Errorf("files left behind: %v", entries)
			}
		})
	}
}

func TestCreateErrors(t *testing.T) {
	type weird struct{}
	for _, c := range []struct {
		name string
		root any
		want string
	}{
		{"invalid dtype", dict("model", stateDict("w", TensorSpec{DType: tensor.Invalid, Shape: tensor.Shape{2}})), `"model/w": invalid tensor spec`},
		{"negative dim", dict("model", stateDict("w", ts(tensor.F32, 2, -1))), `"model/w": invalid tensor spec`},
		{"overflow", dict("model", stateDict("w", ts(tensor.F64, 1<<40, 1<<40))), `"model/w": invalid tensor spec`},
		{"go type", dict("x", weird{}), `"x": cannot pickle a value of Go type torchsave.weird`},
		{"duplicate", dict("a", int64(1), "a", int64(2)), "duplicate key a"},
		{"python duplicate", dict(int64(1), "x", true, "y"), "duplicate key true"},
		{"key type", dict(Tuple{}, "x"), "keys must be None, bool, int, float or string"},
		{"attrs on dict", &Dict{Attrs: dict("x", int64(1))}, "only an OrderedDict can have Attrs"},
		{"nil dict", dict("x", (*Dict)(nil)), "nil *Dict"},
		{"cycle", func() any { l := &List{}; l.Items = []any{l}; return l }(), "nested deeper than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := tempPath(t, "x.pt")
			w, err := Create(path, c.root, nil)
			if err == nil {
				w.Abort()
				t.Fatalf("Create succeeded, want error %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q, want one naming the file and containing %q", err, c.want)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 0 {
				t.Errorf("files left behind: %v", entries)
			}
		})
	}
	if _, err := Create(filepath.Join(t.TempDir(), "missing", "x.pt"), dict(), nil); err == nil {
		t.Error("Create in a missing directory succeeded")
	}
}

func TestCloseTwice(t *testing.T) {
	path := tempPath(t, "x.pt")
	w, err := Create(path, dict("model", stateDict()), &Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "writer is closed") {
		t.Errorf("second Close: %v", err)
	}
	w.Abort() // no-op after a successful Close
	if _, err := os.Stat(path); err != nil {
		t.Errorf("file gone after Abort following Close: %v", err)
	}
}

// TestTensorsOrder checks Writer.Tensors against the reader's view.
func TestTensorsOrder(t *testing.T) {
	root := dict("model0", stateDict("x", ts(tensor.F32, 2), "y", ts(tensor.F8E4M3, 3)), "model1", stateDict("x", ts(tensor.I8, 1, 1)), "bare", &List{Items: []any{ts(tensor.U8, 4)}})
	path := tempPath(t, "x.pt")
	w, err := Create(path, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []TensorInfo{
		{"model0/x", "data/0", tensor.F32, tensor.Shape{2}, 8},
		{"model0/y", "data/1", tensor.F8E4M3, tensor.Shape{3}, 3},
		{"model1/x", "data/2", tensor.I8, tensor.Shape{1, 1}, 1},
		{"bare/0", "data/3", tensor.U8, tensor.Shape{4}, 4},
	}
	if diff := cmp.Diff(want, w.Tensors()); diff != "" {
		t.Errorf("Tensors (-want +got):\n%s", diff)
	}
	w.Abort()
}

// createMode is the mode os.Create gives a new file here (0666 less the
// umask).
func createMode(t *testing.T) os.FileMode {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mode")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestStaleTemps: the temporary file of a Writer that is still writing is
// listed as live, that of a writer whose process has exited (a killed
// rank job) is stale and removed by RemoveStaleTemps, and an unrelated
// file is left alone.
func TestStaleTemps(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	path := tempPath(t, "model_optim_rng.pt")
	w, err := Create(path, dict("model", stateDict("w", ts(tensor.F32, 4))), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	live := w.tmp
	o, ok := tempname.Parse(filepath.Base(live), filepath.Base(path)+TempSuffix)
	if !ok {
		t.Fatalf("temporary name %s does not record its writer", live)
	}
	dead := fmt.Sprintf("%s%s%s-%d-%d-7", path, TempSuffix, o.Host, cmd.Process.Pid, o.Start)
	old := path + TempSuffix + "12345" // a name without owner fields
	for _, p := range []string{dead, old} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := RemoveStaleTemps(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].Path != dead || !strings.Contains(removed[0].Owner, fmt.Sprint("pid ", cmd.Process.Pid)) {
		t.Errorf("removed %+v, want only %s", removed, dead)
	}
	for _, p := range []string{live, old} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	temps, _ := Temps(path)
	if len(temps) != 2 || temps[0].Stale || temps[1].Stale {
		t.Errorf("Temps after: %+v, want the live writer's and the unknown one", temps)
	}
}

// TestSharedTensorSpec writes one *TensorSpec under three keys: the file
// holds one storage record, and reading it back lists every key with the
// same bytes (torch.save's memoized tensor, read as the keys it is saved
// under).
func TestSharedTensorSpec(t *testing.T) {
	w := &TensorSpec{DType: tensor.F32, Shape: tensor.Shape{2, 2}}
	other := &TensorSpec{DType: tensor.BF16, Shape: tensor.Shape{3}}
	root := dict("model", stateDict("a", w, "b", other, "c", w), "extra", &List{Items: []any{w}})
	data := map[string][]byte{"model/a": []byte("0123456789abcdef"), "model/b": []byte("xyzuvw")}
	path := tempPath(t, "model_optim_rng.pt")
	writeFile(t, path, root, data, nil)
	f := mustOpen(t, path)
	type entry struct {
		Name, Storage string
		Data          string
	}
	var got []entry
	for _, tt := range f.Tensors() {
		got = append(got, entry{tt.Name, tt.Storage, string(tt.Data)})
	}
	want := []entry{
		{"model/a", "0", "0123456789abcdef"},
		{"model/b", "1", "xyzuvw"},
		{"model/c", "0", "0123456789abcdef"},
		{"extra/0", "0", "0123456789abcdef"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tensors (-want +got):\n%s", diff)
	}
	var storages []string
	for _, r := range f.Records() {
		if strings.Contains(r.Name, "data/") {
			storages = append(storages, r.Name)
		}
	}
	if len(storages) != 2 {
		t.Errorf("storage records %v, want 2 (one per distinct tensor)", storages)
	}
}
