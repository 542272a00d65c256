//go:build linux

package torchsave

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestPreallocated: the space Create reserves for the tensor records is
// exactly what they fill, so nothing stays allocated past the end of the
// file.
func TestPreallocated(t *testing.T) {
	root := dict("model", stateDict(
		"a", ts(tensor.BF16, 3000, 1024),
		"b", ts(tensor.F32, 3, 5),
		"c", ts(tensor.I64, 129, 7),
	))
	data := fillData(t, root)
	path := filepath.Join(t.TempDir(), "m.pt")
	w, err := Create(path, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, ti := range w.Tensors() {
		if _, err := w.Write(data[ti.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := st.Sys().(*syscall.Stat_t).Blocks * 512; alloc > st.Size()+64<<10 {
		t.Errorf("%d bytes allocated for a file of %d", alloc, st.Size())
	}
}
