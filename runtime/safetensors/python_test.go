package safetensors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rolltpl/rolltpl/internal/torchtest"
)

// crossCheckPy reads a safetensors file with nothing but the Python
// standard library (json + struct), then, when they are installed, with
// torch.frombuffer and with the safetensors package, and prints what it
// found as JSON.
const crossCheckPy = `
import json, struct, sys
path = sys.argv[1]
raw = open(path, "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
hdr_bytes = raw[8:8 + n]
pairs = json.loads(hdr_bytes.decode("utf-8"), object_pairs_hook=lambda p: p)
hdr = dict(pairs)
fmt = {"BOOL": "?", "U8": "B", "I8": "b", "I16": "h", "I32": "i", "I64": "q",
       "F16": "e", "F32": "f", "F64": "d", "F8_E4M3": "B", "F8_E5M2": "B"}
out = {"n": n, "padded": n % 8 == 0 and hdr_bytes.rstrip(b" ").endswith(b"}"),
       "keys": [k for k, _ in pairs], "metadata": dict(hdr.get("__metadata__") or {}),
       "size_ok": None, "tensors": {}, "checked_by": ["struct"]}
ends = []
for name, info in pairs:
    if name == "__metadata__":
        continue
    info = dict(info)
    b, e = info["data_offsets"]
    ends.append(e)
    data = raw[8 + n + b: 8 + n + e]
    if info["dtype"] == "BF16":
        vals = [struct.unpack("<f", b"\0\0" + data[i:i + 2])[0] for i in range(0, len(data), 2)]
    else:
        vals = list(struct.unpack("<%d%s" % (len(data) // struct.calcsize(fmt[info["dtype"]]), fmt[info["dtype"]]), data))
    out["tensors"][name] = {"dtype": info["dtype"], "shape": info["shape"], "data_offsets": [b, e],
                            "values": [float(v) for v in vals]}
out["size_ok"] = 8 + n + max(ends + [0]) == len(raw)
try:
    import torch
    tdt = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32,
           "I64": torch.int64, "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
    for name, t in out["tensors"].items():
        if t["dtype"] not in tdt or not t["values"]:
            continue
        b, e = t["data_offsets"]
        x = torch.frombuffer(bytearray(raw[8 + n + b: 8 + n + e]), dtype=tdt[t["dtype"]]).reshape(t["shape"])
        got = [float(v) for v in x.flatten().tolist()]
        if got != t["values"]:
            t["values"] = ["torch disagrees", got]
    out["checked_by"].append("torch " + torch.__version__)
except ImportError:
    pass
try:
    from safetensors.numpy import load_file
    arrays = load_file(path)
    for name, t in out["tensors"].items():
        if t["dtype"].startswith("F8") or t["dtype"] == "BF16":
            continue
        got = [float(v) for v in arrays[name].flatten().tolist()]
        if got != t["values"] or list(arrays[name].shape) != t["shape"]:
            t["values"] = ["safetensors disagrees", got]
    out["checked_by"].append("safetensors")
except ImportError:
    pass
print(json.dumps(out))
`

type pyTensor struct {
	DType       string    `json:"dtype"`
	Shape       []int64   `json:"shape"`
	DataOffsets []int64   `json:"data_offsets"`
	Values      []float64 `json:"values"`
}

type pyResult struct {
	N         int64               `json:"n"`
	Padded    bool                `json:"padded"`
	Keys      []string            `json:"keys"`
	Metadata  map[string]string   `json:"metadata"`
	SizeOK    bool                `json:"size_ok"`
	Tensors   map[string]pyTensor `json:"tensors"`
	CheckedBy []string            `json:"checked_by"`
}

// TestPythonCrossCheck has /usr/bin/python3 read a file written by this
// package and compares what it saw with what was written.
func TestPythonCrossCheck(t *testing.T) {
	t.Parallel()
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no", py)
	}
	specs := roundTripSpecs()
	md := map[string]string{"format": "pt", "ünï": "\"\n"}
	path := filepath.Join(t.TempDir(), "py.safetensors")
	writeSample(t, path, specs, md)

	cmd := torchtest.Command(py, "-c", crossCheckPy, path)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var got pyResult
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python output %q: %v", out, err)
	}
	t.Logf("checked by %v", got.CheckedBy)

	hdr, layout, err := encodeHeader(specs, md)
	if err != nil {
		t.Fatal(err)
	}
	want := pyResult{
		N:         int64(len(hdr) - 8),
		Padded:    true,
		Keys:      []string{"__metadata__"},
		Metadata:  md,
		SizeOK:    true,
		Tensors:   make(map[string]pyTensor),
		CheckedBy: got.CheckedBy,
	}
	for _, ti := range layout {
		_, vals := sample(ti.DType, int(ti.Shape.NumElements()))
		b := ti.Offset - int64(len(hdr))
		want.Keys = append(want.Keys, ti.Name)
		want.Tensors[ti.Name] = pyTensor{
			DType:       ti.DType.String(),
			Shape:       ti.Shape,
			DataOffsets: []int64{b, b + ti.Size},
			Values:      vals,
		}
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("python3 read something else (-want +got):\n%s", diff)
	}
}

// TestPythonIndexFormat checks that WriteIndex produces the bytes of
// json.dumps(index, indent=2, sort_keys=True) + "\n", as transformers
// writes model.safetensors.index.json.
func TestPythonIndexFormat(t *testing.T) {
	t.Parallel()
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no", py)
	}
	path := filepath.Join(t.TempDir(), IndexFileName)
	wm := map[string]string{
		"model.layers.10.mlp.down_proj.weight": "model-00002-of-00002.safetensors",
		"model.layers.9.mlp.down_proj.weight":  "model-00001-of-00002.safetensors",
		"é\x7f<a>&\U0001F600\t":                "x\"y\\.safetensors",
		"Z":                                    "a.safetensors",
	}
	if err := WriteIndex(path, wm, 123456789012); err != nil {
		t.Fatal(err)
	}
	const script = `
import json, sys
text = open(sys.argv[1], encoding="utf-8").read()
print(json.dumps(json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n" == text))
`
	out, err := torchtest.Command(py, "-c", script, path).Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	if string(out) != "true\n" {
		b, _ := os.ReadFile(path)
		t.Errorf("python3 re-encodes the index differently; WriteIndex wrote:\n%s", b)
	}
}
