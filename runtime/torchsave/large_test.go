package torchsave

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rolltpl/rolltpl/internal/torchtest"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// largeSize is the byte size of the big tensor: past 4 GiB, and odd.
const largeSize = 4<<30 + 4096 + 7

// largeChunk is the size of the reused buffer the big tensor is streamed
// from; the first 8 bytes of each chunk hold the chunk index.
const largeChunk = 16 << 20

func largeByte(pos int64) byte {
	if pos%largeChunk < 8 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(pos/largeChunk))
		return b[pos%largeChunk]
	}
	return byte(pos % largeChunk * 7)
}

// TestLarge writes a .pt of more than 4 GiB (zip64 sizes, offsets and end
// records), then reads it with our reader and with torch. It needs about
// 4.3 GB of disk and, for torch, twice that in RAM; run it with
// ROLLTPL_LARGE=1.
func TestLarge(t *testing.T) {
	if os.Getenv("ROLLTPL_LARGE") == "" {
		t.Skip("set ROLLTPL_LARGE=1 to write and read a > 4 GiB file")
	}
	root := dict(
		"model", stateDict(
			"small.before", ts(tensor.F32, 16),
			"big", ts(tensor.U8, largeSize),
			"small.after", ts(tensor.BF16, 1000),
			"empty", ts(tensor.F32, 0),
		),
		"iteration", int64(7),
	)
	data := fillData(t, dict("model", stateDict("small.before", ts(tensor.F32, 16), "small.after", ts(tensor.BF16, 1000))))
	path := filepath.Join(t.TempDir(), "model_optim_rng.pt")

	start := time.Now()
	w, err := Create(path, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.WriteTensor("model/small.before", data["model/small.before"]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, largeChunk)
	for i := range buf {
		buf[i] = largeByte(int64(i))
	}
	for pos := int64(0); pos < largeSize; pos += largeChunk {
		binary.LittleEndian.PutUint64(buf, uint64(pos/largeChunk))
		n := min(largeChunk, largeSize-pos)
		if _, err := w.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteTensor("model/small.after", data["model/small.after"]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	st, _ := os.Stat(path)
	t.Logf("wrote %d bytes in %v (%.2f GB/s)", st.Size(), el, float64(st.Size())/el.Seconds()/1e9)

	probes := []int64{0, 1, 7, 8, 9, largeChunk - 1, largeChunk, largeChunk + 8, 1 << 32, 1<<32 + 1, largeSize - largeChunk, largeSize - 8, largeSize - 1}
	for i := int64(0); i < largeSize; i += largeChunk * 17 {
		probes = append(probes, i, i+3)
	}

	start = time.Now()
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var big *Tensor
	for _, tt := range f.Tensors() {
		switch tt.Name {
		case "model/big":
			big = tt
		case "model/small.before", "model/small.after":
			if string(tt.Data) != string(data[tt.Name]) {
				t.Errorf("%s differs", tt.Name)
			}
		}
	}
	if big == nil || int64(len(big.Data)) != largeSize {
		t.Fatalf("big tensor missing or wrong size")
	}
	for _, p := range probes {
		if big.Data[p] != largeByte(p) {
			t.Fatalf("big[%d] = %d, want %d", p, big.Data[p], largeByte(p))
		}
	}
	for _, r := range f.Records() {
		if r.Offset%alignment != 0 {
			t.Errorf("record %s at offset %d", r.Name, r.Offset)
		}
		if r.Name == "version" && r.Offset < 1<<32 {
			t.Errorf("version record at offset %d, want > 4 GiB", r.Offset)
		}
	}
	if err := f.VerifyCRC(); err != nil {
		t.Fatal(err)
	}
	t.Logf("opened, probed and CRC-checked in %v", time.Since(start))
	checkWithArchiveZip(t, path)

	torchtest.Run(t, func(t *testing.T, python string) { largeTorchCheck(t, python, path, probes, data) })
}

// largeTorchCheck has python's torch load the file TestLarge wrote, with
// and without weights_only.
func largeTorchCheck(t *testing.T, python, path string, probes []int64, data map[string][]byte) {
	needTorch(t, python)
	var ps []string
	for _, p := range probes {
		ps = append(ps, strconv.FormatInt(p, 10))
	}
	start := time.Now()
	dir := torchExec(t, python, `
import json, sys, zipfile
path = `+strconv.Quote(path)+`
probes = [`+strings.Join(ps, ",")+`]
res = {}
for wo in (False, True):
    d = torch.load(path, weights_only=wo)
    big = d["model"]["big"]
    res[str(wo)] = {
        "numel": big.numel(),
        "probes": [int(big[p]) for p in probes],
        "after": d["model"]["small.after"].view(torch.uint8).numpy().tobytes().hex(),
        "empty": list(d["model"]["empty"].shape),
        "iteration": d["iteration"],
    }
    del d, big
res["testzip"] = zipfile.ZipFile(path).testzip()
with open(out + "/large.json", "w") as f:
    json.dump(res, f)
`)
	t.Logf("torch loaded it twice in %v", time.Since(start))
	b, err := os.ReadFile(filepath.Join(dir, "large.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]json.RawMessage
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if string(res["testzip"]) != "null" {
		t.Errorf("zipfile.testzip: %s", res["testzip"])
	}
	for _, wo := range []string{"False", "True"} {
		var r struct {
			Numel     int64   `json:"numel"`
			Probes    []int64 `json:"probes"`
			After     string  `json:"after"`
			Empty     []int64 `json:"empty"`
			Iteration int64   `json:"iteration"`
		}
		if err := json.Unmarshal(res[wo], &r); err != nil {
			t.Fatal(err)
		}
		if r.Numel != largeSize || r.Iteration != 7 || len(r.Empty) != 1 || r.Empty[0] != 0 {
			t.Errorf("weights_only=%s: %+v", wo, r)
		}
		for i, p := range probes {
			if r.Probes[i] != int64(largeByte(p)) {
				t.Errorf("weights_only=%s: big[%d] = %d, want %d", wo, p, r.Probes[i], largeByte(p))
			}
		}
		if r.After != hex.EncodeToString(data["model/small.after"]) {
			t.Errorf("weights_only=%s: small.after differs", wo)
		}
	}
}
