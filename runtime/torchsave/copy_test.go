package torchsave

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/blockio"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestCopy writes the same tensors with Write and with Copy (reading a file
// holding their bytes, in pieces that span tensors, and in one call that
// spans them all and several pipe blocks): the files must be
// byte-identical, CRCs included.
func TestCopy(t *testing.T) {
	root := dict("model", stateDict(
		"a", ts(tensor.BF16, 1200, 1024), // above the parallel-CRC threshold and a pipe block
		"b", ts(tensor.F32, 3, 5),
		"empty", ts(tensor.F16, 0),
		"c", ts(tensor.I64, 129, 7),
	))
	data := fillData(t, root)
	dir := t.TempDir()
	var all []byte
	w0, err := Create(filepath.Join(dir, "x.pt"), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range w0.Tensors() {
		all = append(all, data[ti.Name]...)
	}
	w0.Abort()
	src := filepath.Join(dir, "src.bin")
	if err := os.WriteFile(src, append([]byte("junk"), all...), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	write := func(name string, from bool, piece int) []byte {
		path := filepath.Join(dir, name, "model.pt")
		os.MkdirAll(filepath.Dir(path), 0o755)
		w, err := Create(path, root, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		for off := 0; off < len(all); {
			n := min(len(all)-off, piece)
			var err error
			if from {
				err = w.Copy(int64(n), blockio.ReadAt(f, f.Name(), int64(4+off)))
			} else {
				_, err = w.Write(all[off : off+n])
			}
			if err != nil {
				t.Fatal(err)
			}
			off += n
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := write("plain", false, 700_001) // pieces that cross tensors
	for _, piece := range []int{700_001, len(all)} {
		if b := write(fmt.Sprintf("from-%d", piece), true, piece); !bytes.Equal(a, b) {
			t.Fatalf("Copy in pieces of %d wrote a different file (%d vs %d bytes)", piece, len(b), len(a))
		}
	}
	rf, err := Open(filepath.Join(dir, "from-700001", "model.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	if err := rf.VerifyCRC(); err != nil {
		t.Fatal(err)
	}

	// A source shorter than the data is an error naming the file.
	w, err := Create(filepath.Join(dir, "short.pt"), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	err = w.Copy(int64(len(all)), blockio.ReadAt(f, f.Name(), int64(len(all))))
	if err == nil || !strings.Contains(err.Error(), "src.bin") || !strings.Contains(err.Error(), `"model/a"`) {
		t.Errorf("short source: %v", err)
	} else {
		t.Log(err)
	}
}
