package torchsave

import (
	"bytes"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestF8StorageGlobal checks, without torch, the storage class of F8
// tensors: torch 2.x pickles it as torch.storage.UntypedStorage, and its
// weights_only unpickler (torch.load's default from 2.6) allows only that
// name, not torch.UntypedStorage. Torch's side is in TestPickleMatchesTorch
// and TestTorchLoadsOurFiles under a torch 2.x (see torchtest).
func TestF8StorageGlobal(t *testing.T) {
	root := dict("model", stateDict("e4m3", ts(tensor.F8E4M3, 2, 3), "e5m2", ts(tensor.F8E5M2, 4), "bf16", ts(tensor.BF16, 2)))
	data := fillData(t, root)
	path := tempPath(t, "model_optim_rng.pt")
	writeFile(t, path, root, data, nil)
	pkl := readRecord(t, path, "data.pkl")
	if !bytes.Contains(pkl, []byte("ctorch.storage\nUntypedStorage\n")) || bytes.Contains(pkl, []byte("ctorch\nUntypedStorage\n")) {
		t.Errorf("data.pkl does not name torch.storage.UntypedStorage for F8 storages:\n%q", pkl)
	}
	f := mustOpen(t, path)
	for _, tt := range f.Tensors() {
		if want := data[tt.Name]; !bytes.Equal(tt.Data, want) {
			t.Errorf("%s: read % x, wrote % x", tt.Name, tt.Data, want)
		}
	}
	if len(f.Tensors()) != 3 {
		t.Errorf("read %d tensors, want 3", len(f.Tensors()))
	}
}
