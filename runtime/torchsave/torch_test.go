package torchsave

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/internal/torchtest"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// torchHelper is the Python side of the torch tests. Modes:
//
//	caps                         print {"version", "float8"}
//	batch JOB.json               JOB = {"save": [[SPEC.json, OUT.pt], ...], "load": [[IN.pt, OUT.json], ...]}:
//	                             save builds the value from SPEC (see spec) and torch.saves it;
//	                             load runs torch.load with weights_only False and True and writes
//	                             {"plain": spec|error, "weights_only": spec|error, "testzip", "names"}
//	exec SCRIPT.py               run a script with torch, OrderedDict and `out` (a dir) defined
const torchHelper = `
import sys, json, base64, struct, collections, zipfile, warnings
warnings.filterwarnings("ignore")
import torch

DT = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16,
      "I32": torch.int32, "I64": torch.int64, "F16": torch.float16, "BF16": torch.bfloat16,
      "F32": torch.float32, "F64": torch.float64}
if hasattr(torch, "float8_e4m3fn"):
    DT["F8_E4M3"] = torch.float8_e4m3fn
    DT["F8_E5M2"] = torch.float8_e5m2
NAME = {v: k for k, v in DT.items()}

def build(v):
    t = v["t"]
    if t == "none": return None
    if t == "bool": return v["v"]
    if t == "int": return int(v["v"])
    if t == "float": return struct.unpack(">d", bytes.fromhex(v["v"]))[0]
    if t == "str": return v["v"]
    if t == "tuple": return tuple(build(x) for x in v["items"])
    if t == "list": return [build(x) for x in v["items"]]
    if t == "dict":
        d = collections.OrderedDict() if v["ordered"] else {}
        for k, x in v["items"]:
            d[build(k)] = build(x)
        if v.get("attrs"):
            for k, x in v["attrs"]["items"]:
                setattr(d, build(k), build(x))
        return d
    if t == "tensor":
        data = bytearray(base64.b64decode(v["data"]))
        dt = DT[v["dtype"]]
        if len(data) == 0:
            return torch.empty(v["shape"], dtype=dt)
        return torch.frombuffer(data, dtype=torch.uint8).view(dt).reshape(v["shape"])
    raise ValueError(t)

def spec(x):
    if x is None: return {"t": "none"}
    if isinstance(x, bool): return {"t": "bool", "v": x}
    if isinstance(x, int): return {"t": "int", "v": str(x)}
    if isinstance(x, float): return {"t": "float", "v": struct.pack(">d", x).hex()}
    if isinstance(x, str): return {"t": "str", "v": x}
    if isinstance(x, tuple): return {"t": "tuple", "items": [spec(y) for y in x]}
    if isinstance(x, list): return {"t": "list", "items": [spec(y) for y in x]}
    if isinstance(x, dict):
        m = {"t": "dict", "ordered": isinstance(x, collections.OrderedDict),
             "items": [[spec(k), spec(y)] for k, y in x.items()]}
        attrs = getattr(x, "__dict__", None)
        if attrs:
            m["attrs"] = {"t": "dict", "ordered": False, "items": [[spec(k), spec(y)] for k, y in attrs.items()]}
        return m
    if isinstance(x, torch.Tensor):
        b = x.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        return {"t": "tensor", "dtype": NAME[x.dtype], "shape": list(x.shape),
                "data": base64.b64encode(b).decode()}
    raise TypeError(type(x))

mode = sys.argv[1]
if mode == "caps":
    print(json.dumps({"version": torch.__version__, "float8": hasattr(torch, "float8_e4m3fn")}))
elif mode == "batch":
    with open(sys.argv[2]) as f:
        job = json.load(f)
    for spec_path, out_path in job.get("save") or []:
        with open(spec_path) as f:
            torch.save(build(json.load(f)), out_path)
    for in_path, out_path in job.get("load") or []:
        out = {}
        for key, wo in (("plain", False), ("weights_only", True)):
            try:
                out[key] = spec(torch.load(in_path, weights_only=wo))
            except Exception as e:
                out[key] = {"t": "error", "v": type(e).__name__ + ": " + str(e)}
        z = zipfile.ZipFile(in_path)
        out["testzip"] = z.testzip()
        out["names"] = z.namelist()
        with open(out_path, "w") as f:
            json.dump(out, f)
elif mode == "exec":
    out = sys.argv[3]
    OrderedDict = collections.OrderedDict
    exec(open(sys.argv[2]).read())
`

type torchCaps struct {
	Version string `json:"version"`
	Float8  bool   `json:"float8"`
}

var (
	helperOnce sync.Once
	helperDir  string
	helperErr  error
	torchMu    sync.Mutex
	torchInfo  = map[string]torchCaps{} // interpreter -> its caps
)

func TestMain(m *testing.M) {
	code := m.Run()
	if helperDir != "" {
		os.RemoveAll(helperDir)
	}
	os.Exit(code)
}

// needTorch writes the helper script (once) and returns the capabilities
// of python, an interpreter torchtest.Run passed (once per interpreter).
func needTorch(t testing.TB, python string) torchCaps {
	t.Helper()
	helperOnce.Do(func() {
		helperDir, helperErr = os.MkdirTemp("", "torchsave-helper")
		if helperErr == nil {
			helperErr = os.WriteFile(filepath.Join(helperDir, "helper.py"), []byte(torchHelper), 0o644)
		}
	})
	if helperErr != nil {
		t.Fatal(helperErr)
	}
	torchMu.Lock()
	defer torchMu.Unlock()
	if caps, ok := torchInfo[python]; ok {
		return caps
	}
	var caps torchCaps
	if err := json.Unmarshal(mustHelper(t, python, "caps"), &caps); err != nil {
		t.Fatal(err)
	}
	torchInfo[python] = caps
	return caps
}

// runHelper runs the torch helper with python.
func runHelper(python string, args ...string) ([]byte, error) {
	cmd := torchtest.Command(python, append([]string{filepath.Join(helperDir, "helper.py")}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, &pyError{err: err, stderr: stderr.String()}
	}
	return out, nil
}

type pyError struct {
	err    error
	stderr string
}

func (e *pyError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

func mustHelper(t testing.TB, python string, args ...string) []byte {
	t.Helper()
	out, err := runHelper(python, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// torchJob runs one batch of torch.save and torch.load calls, to pay for
// Python and torch start-up once.
type torchJob struct {
	Save [][2]string `json:"save"`
	Load [][2]string `json:"load"`
}

// save queues torch.save of tree (with data) at path.
func (j *torchJob) save(t testing.TB, path string, tree any, data map[string][]byte) {
	t.Helper()
	b, err := json.Marshal(spec(tree, "", data))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".json", b, 0o644); err != nil {
		t.Fatal(err)
	}
	j.Save = append(j.Save, [2]string{path + ".json", path})
}

// load queues torch.load of path; result reads the outcome after run.
func (j *torchJob) load(path string) {
	j.Load = append(j.Load, [2]string{path, path + ".load.json"})
}

func (j *torchJob) run(t testing.TB, python string) {
	t.Helper()
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	jp := filepath.Join(t.TempDir(), "job.json")
	if err := os.WriteFile(jp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	mustHelper(t, python, "batch", jp)
}

type loadResult struct {
	Plain       any      `json:"plain"`
	WeightsOnly any      `json:"weights_only"`
	TestZip     *string  `json:"testzip"`
	Names       []string `json:"names"`
}

func loaded(t testing.TB, path string) loadResult {
	t.Helper()
	b, err := os.ReadFile(path + ".load.json")
	if err != nil {
		t.Fatal(err)
	}
	var r loadResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func torchLoad(t testing.TB, python, path string) loadResult {
	t.Helper()
	var j torchJob
	j.load(path)
	j.run(t, python)
	return loaded(t, path)
}

// torchExec runs a Python snippet with torch, OrderedDict and out (a
// directory) in scope.
func torchExec(t testing.TB, python, script string) string {
	t.Helper()
	dir := t.TempDir()
	sp := filepath.Join(dir, "script.py")
	if err := os.WriteFile(sp, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	mustHelper(t, python, "exec", sp, dir)
	return dir
}

func readRecord(t testing.TB, path, name string) []byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/"+name) {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("%s: no record %s", path, name)
	return nil
}

// torchCases are value trees saved both by torch and by us.
func torchCases(caps torchCaps) []struct {
	name string
	root any
	// floats outside tensors: torch 1.13's weights_only unpickler lacks BINFLOAT
	hasFloat bool
} {
	dtypes := allDTypes
	if caps.Float8 {
		dtypes = append(dtypes, tensor.F8E4M3, tensor.F8E5M2)
	}
	many := &Dict{Ordered: true}
	for i := range 300 {
		many.Items = append(many.Items, Item{"decoder.layers." + strconv.Itoa(i) + ".weight", ts(tensor.BF16, 2, int64(i%5+1))})
	}
	big := func(n int, ordered bool) *Dict {
		d := &Dict{Ordered: ordered}
		for i := range n {
			d.Items = append(d.Items, Item{"k" + strconv.Itoa(i), int64(i * 7)})
		}
		return d
	}
	list := func(n int) *List {
		l := &List{}
		for i := range n {
			l.Items = append(l.Items, int64(i))
		}
		return l
	}
	type tc = struct {
		name     string
		root     any
		hasFloat bool
	}
	return []tc{
		{name: "roll", root: dict("model", allDTypesModel(dtypes))},
		{name: "vp", root: dict(
			"model0", stateDict("embedding.word_embeddings.weight", ts(tensor.BF16, 16, 8), "decoder.layers.0.mlp.linear_fc1.weight", ts(tensor.BF16, 32, 8)),
			"model1", stateDict("decoder.layers.0.self_attention.linear_qkv.weight", ts(tensor.F32, 24, 8), "output_layer.weight", ts(tensor.BF16, 16, 8)),
		)},
		{name: "megatron", hasFloat: true, root: dict(
			"model", stateDict("decoder.final_layernorm.weight", ts(tensor.F32, 8)),
			"checkpoint_version", 3.0,
			"iteration", int64(1),
			"args", nil,
			"flags", dict("fp16", false, "bf16", true, "neg", int64(-5), "i16", int64(40000), "i32", int64(-70000),
				"i40", int64(1)<<40, "n40", -(int64(1)<<40), "max", int64(1<<63-1), "min", int64(-1<<63),
				"n128", int64(-128), "n129", int64(-129), "p255", int64(255), "p256", int64(256), "p2_31", int64(1)<<31, "n2_31", -(int64(1)<<31), "n2_31m", -(int64(1)<<31)-1,
				"pi", 3.14159, "unicode", "héllo ✓", "empty_list", &List{}, "tuple", Tuple{int64(1), "two", 3.0},
				"tuple4", Tuple{int64(1), int64(2), int64(3), int64(4)}, "tuple0", Tuple{}, "list1", &List{Items: []any{"one"}}, 2.5, "float key"),
			"rng", &List{Items: []any{int64(1), int64(2), Tuple{true, nil}}},
		)},
		{name: "many", root: dict("model", many)},
		{name: "metadata", root: dict("model", &Dict{Ordered: true,
			Items: []Item{{"weight", ts(tensor.F32, 3, 2)}, {"bias", ts(tensor.F32, 3)}},
			Attrs: dict("_metadata", stateDict("", dict("version", int64(1)))),
		})},
		{name: "batches", root: dict(
			"d999", big(999, false), "d1000", big(1000, false), "d1001", big(1001, false), "d2000", big(2000, false),
			"o999", big(999, true), "o1000", big(1000, true), "o1001", big(1001, true), "o2001", big(2001, true),
			"l1000", list(1000), "l1001", list(1001), "l2000", list(2000),
			"int_keys", dict(int64(5), "a", int64(-2), "b", true, "c", nil, "d"),
		)},
		{name: "bare_tensor", root: ts(tensor.F32, 2, 2)},
	}
}

// TestPickleMatchesTorch checks that data.pkl is byte-for-byte what torch
// writes for the same value, and that our reader reads torch's files.
func TestPickleMatchesTorch(t *testing.T) { torchtest.Run(t, testPickleMatchesTorch) }

func testPickleMatchesTorch(t *testing.T, python string) {
	caps := needTorch(t, python)
	t.Logf("torch %s, float8: %v", caps.Version, caps.Float8)
	cases := torchCases(caps)
	dir := t.TempDir()
	var job torchJob
	theirs := make([]string, len(cases))
	datas := make([]map[string][]byte, len(cases))
	for i, c := range cases {
		datas[i] = fillData(t, c.root)
		theirs[i] = filepath.Join(dir, c.name, "model_optim_rng.pt")
		os.MkdirAll(filepath.Dir(theirs[i]), 0o755)
		job.save(t, theirs[i], c.root, datas[i])
	}
	job.run(t, python)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := datas[i]
			ours := tempPath(t, "model_optim_rng.pt")
			writeFile(t, ours, c.root, data, nil)

			want := readRecord(t, theirs[i], "data.pkl")
			got := readRecord(t, ours, "data.pkl")
			if !bytes.Equal(got, want) {
				t.Errorf("data.pkl differs from torch's (%d vs %d bytes); first difference at byte %d\nours:  %q\ntorch: %q",
					len(got), len(want), firstDiff(got, want), clip(got, firstDiff(got, want)), clip(want, firstDiff(got, want)))
			}

			// Our reader on torch's file gives the original tree.
			f := mustOpen(t, theirs[i])
			if diff := diffJSON(normJSON(t, spec(c.root, "", data)), normJSON(t, spec(f.Root, "", nil))); diff != "" {
				t.Errorf("reading torch's file: mismatch (-want +got):\n%s", diff)
			}
			if f.ArchiveName != "model_optim_rng" {
				t.Errorf("torch's archive folder = %q", f.ArchiveName)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func clip(b []byte, at int) []byte {
	lo := max(0, at-40)
	return b[lo:min(len(b), at+40)]
}

// TestTorchLoadsOurFiles loads our files with torch.load, with and without
// weights_only, and compares every value and tensor byte.
func TestTorchLoadsOurFiles(t *testing.T) { torchtest.Run(t, testTorchLoadsOurFiles) }

func testTorchLoadsOurFiles(t *testing.T, python string) {
	caps := needTorch(t, python)
	old := strings.HasPrefix(caps.Version, "1.")
	cases := torchCases(caps)
	dir := t.TempDir()
	var job torchJob
	paths := make([]string, len(cases))
	datas := make([]map[string][]byte, len(cases))
	for i, c := range cases {
		datas[i] = fillData(t, c.root)
		paths[i] = filepath.Join(dir, c.name, "model_optim_rng.pt")
		os.MkdirAll(filepath.Dir(paths[i]), 0o755)
		writeFile(t, paths[i], c.root, datas[i], nil)
		job.load(paths[i])
	}
	job.run(t, python)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := loaded(t, paths[i])
			want := normJSON(t, spec(c.root, "", datas[i]))
			if diff := diffJSON(want, r.Plain); diff != "" {
				t.Errorf("torch.load(weights_only=False) mismatch (-want +got):\n%s", diff)
			}
			if c.hasFloat && old {
				if m, _ := r.WeightsOnly.(map[string]any); m["t"] != "error" {
					t.Errorf("torch 1.13 weights_only accepted BINFLOAT; update the docs")
				}
			} else if diff := diffJSON(want, r.WeightsOnly); diff != "" {
				t.Errorf("torch.load(weights_only=True) mismatch (-want +got):\n%s", diff)
			}
			if r.TestZip != nil {
				t.Errorf("zipfile.testzip: bad record %s", *r.TestZip)
			}
			wantNames := []string{"model_optim_rng/data.pkl", "model_optim_rng/.format_version", "model_optim_rng/.storage_alignment", "model_optim_rng/byteorder"}
			_, slots, _ := encodePickle(c.root)
			for _, s := range slots {
				wantNames = append(wantNames, "model_optim_rng/data/"+s.key)
			}
			wantNames = append(wantNames, "model_optim_rng/version")
			if diff := diffJSON(wantNames, r.Names); diff != "" {
				t.Errorf("record names (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReadTorchSpecials reads files torch wrote with views, shared and
// non-contiguous storages, parameters, module state dicts and protocol 4.
func TestReadTorchSpecials(t *testing.T) { torchtest.Run(t, testReadTorchSpecials) }

func testReadTorchSpecials(t *testing.T, python string) {
	needTorch(t, python)
	dir := torchExec(t, python, `
base = torch.arange(24, dtype=torch.float32)
m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
torch.save({"model": OrderedDict([("full", base), ("view", base[2:8]), ("mat", base[4:16].view(3, 4)), ("row", base.view(4, 6)[1])])}, out + "/shared.pt")
torch.save({"model": OrderedDict([("ok", base[:6]), ("t", base[:6].view(2, 3).t())])}, out + "/transposed.pt")
torch.save({"model": OrderedDict([("strided", base[::2])])}, out + "/strided.pt")
torch.save({"model": m.state_dict()}, out + "/module.pt")
torch.save({"p": torch.nn.Parameter(torch.ones(2, 2)), "frozen": torch.nn.Parameter(torch.zeros(3), requires_grad=False)}, out + "/param.pt")
torch.save({"model": OrderedDict([("w", torch.ones(3, dtype=torch.bfloat16))]), "n": 2**40, "s": "x" * 300}, out + "/proto4.pt", pickle_protocol=4)
torch.save({"model": OrderedDict([("w", torch.ones(3))])}, out + "/legacy.pt", _use_new_zipfile_serialization=False)
import argparse, io, random
import numpy as np
# What Megatron's own checkpoints hold beside the model: training arguments,
# RNG states (NumPy's among them), and Transformer Engine extra state.
torch.save({"model": OrderedDict([("w", base[:4]), ("w._extra_state", io.BytesIO(b"te"))]),
            "args": argparse.Namespace(lr=0.1, params_dtype=torch.bfloat16), "iteration": 7, "checkpoint_version": 3.0,
            "rng_state": [{"random_rng_state": random.getstate(), "np_rng_state": np.random.get_state(),
                           "torch_rng_state": torch.get_rng_state()}]}, out + "/megatron.pt")
w = torch.ones(2, 3)
torch.save({"model": OrderedDict([("a", w), ("b", w)])}, out + "/same.pt")
`)
	f32 := func(vals ...float32) []byte {
		var b []byte
		for _, v := range vals {
			b = appendF32(b, v)
		}
		return b
	}
	rng := func(lo, hi int) []byte {
		var b []byte
		for i := lo; i < hi; i++ {
			b = appendF32(b, float32(i))
		}
		return b
	}

	t.Run("shared", func(t *testing.T) {
		f := mustOpen(t, filepath.Join(dir, "shared.pt"))
		want := map[string]struct {
			data   []byte
			shape  tensor.Shape
			offset int64
		}{
			"model/full": {rng(0, 24), tensor.Shape{24}, 0},
			"model/view": {rng(2, 8), tensor.Shape{6}, 2},
			"model/mat":  {rng(4, 16), tensor.Shape{3, 4}, 4},
			"model/row":  {rng(6, 12), tensor.Shape{6}, 6},
		}
		if len(f.Tensors()) != 4 {
			t.Fatalf("got %d tensors", len(f.Tensors()))
		}
		for _, tt := range f.Tensors() {
			w := want[tt.Name]
			if !bytes.Equal(tt.Data, w.data) || !tt.Shape.Equal(w.shape) || tt.StorageOffset != w.offset || tt.Storage != "0" {
				t.Errorf("%s: shape %v offset %d storage %s data % x", tt.Name, tt.Shape, tt.StorageOffset, tt.Storage, tt.Data)
			}
		}
	})
	for _, c := range []struct{ file, want string }{
		{"transposed.pt", `tensor "model/t": non-contiguous tensor (shape [3, 2], stride [1, 3]`},
		{"strided.pt", `tensor "model/strided": non-contiguous tensor (shape [12], stride [2]`},
		{"legacy.pt", "not a zip file"},
	} {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join(dir, c.file)
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded, want error %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file or contain %q", err, c.want)
			}
		})
	}
	t.Run("module", func(t *testing.T) {
		f := mustOpen(t, filepath.Join(dir, "module.pt"))
		model, _ := f.Root.(*Dict).Get("model")
		d := model.(*Dict)
		var names []string
		for _, it := range d.Items {
			names = append(names, it.Key.(string))
		}
		if diff := cmp.Diff([]string{"0.weight", "0.bias", "1.weight", "1.bias"}, names); diff != "" {
			t.Errorf("names (-want +got):\n%s", diff)
		}
		md, ok := d.Attrs.Get("_metadata")
		if !ok {
			t.Fatalf("no _metadata attribute: %+v", d.Attrs)
		}
		if v, _ := md.(*Dict).Get("0"); v == nil {
			t.Errorf("_metadata lacks module 0: %+v", md)
		}
		if tt := f.Tensors()[0]; tt.Name != "model/0.weight" || !tt.Shape.Equal(tensor.Shape{3, 4}) || tt.DType != tensor.F32 {
			t.Errorf("first tensor %+v", tt)
		}
		// Round trip through our writer, then torch reads it back equal.
		out := tempPath(t, "module.pt")
		data := map[string][]byte{}
		for _, tt := range f.Tensors() {
			data[tt.Name] = tt.Data
		}
		writeFile(t, out, specTree(f.Root), data, nil)
		g := mustOpen(t, out)
		if diff := diffJSON(normJSON(t, spec(f.Root, "", nil)), normJSON(t, spec(g.Root, "", nil))); diff != "" {
			t.Errorf("rewritten file differs (-torch +ours):\n%s", diff)
		}
		r := torchLoad(t, python, out)
		if diff := diffJSON(normJSON(t, spec(f.Root, "", nil)), r.WeightsOnly); diff != "" {
			t.Errorf("torch.load of the rewritten file differs (-want +got):\n%s", diff)
		}
	})
	t.Run("param", func(t *testing.T) {
		f := mustOpen(t, filepath.Join(dir, "param.pt"))
		p, _ := f.Root.(*Dict).Get("p")
		fr, _ := f.Root.(*Dict).Get("frozen")
		pt, ft := p.(*Tensor), fr.(*Tensor)
		if !pt.RequiresGrad || ft.RequiresGrad || !bytes.Equal(pt.Data, f32(1, 1, 1, 1)) || !bytes.Equal(ft.Data, f32(0, 0, 0)) {
			t.Errorf("parameters: %+v %+v", pt, ft)
		}
	})
	t.Run("proto4", func(t *testing.T) {
		f := mustOpen(t, filepath.Join(dir, "proto4.pt"))
		n, _ := f.Root.(*Dict).Get("n")
		s, _ := f.Root.(*Dict).Get("s")
		if n != int64(1)<<40 || s != strings.Repeat("x", 300) || len(f.Tensors()) != 1 || f.Tensors()[0].DType != tensor.BF16 {
			t.Errorf("proto4: n=%v len(s)=%d tensors=%v", n, len(s.(string)), f.Tensors())
		}
	})
	t.Run("megatron", func(t *testing.T) {
		// Objects of classes the reader does not model are recorded, not
		// constructed; the tensors around them read as usual.
		f := mustOpen(t, filepath.Join(dir, "megatron.pt"))
		root := f.Root.(*Dict)
		args, _ := root.Get("args")
		ns, ok := args.(*Object)
		if !ok || ns.Class != "argparse.Namespace" || ns.Bare {
			t.Fatalf("args: %#v", args)
		}
		if lr, _ := ns.State.(*Dict).Get("lr"); lr != 0.1 {
			t.Errorf("args.lr = %v", lr)
		}
		model, _ := root.Get("model")
		es, _ := model.(*Dict).Get("w._extra_state")
		if o, ok := es.(*Object); !ok || o.Class != "_io.BytesIO" {
			t.Errorf("extra state: %#v", es)
		}
		var names []string
		for _, tt := range f.Tensors() {
			names = append(names, tt.Name)
		}
		if diff := cmp.Diff([]string{"model/w", "rng_state/0/torch_rng_state"}, names); diff != "" {
			t.Errorf("tensors (-want +got):\n%s", diff)
		}
		if it, _ := root.Get("iteration"); it != int64(7) {
			t.Errorf("iteration = %v", it)
		}
	})
	t.Run("same", func(t *testing.T) {
		// torch.save memoizes the tensor: both keys hold one pickled
		// object, and both must be listed.
		f := mustOpen(t, filepath.Join(dir, "same.pt"))
		model, _ := f.Root.(*Dict).Get("model")
		a, _ := model.(*Dict).Get("a")
		b, _ := model.(*Dict).Get("b")
		if a != b {
			t.Errorf("torch did not memoize the tensor: a=%p b=%p", a, b)
		}
		type entry struct {
			Name  string
			Shape tensor.Shape
			Data  []byte
		}
		var got []entry
		for _, tt := range f.Tensors() {
			got = append(got, entry{tt.Name, tt.Shape, tt.Data})
		}
		ones := f32(1, 1, 1, 1, 1, 1)
		want := []entry{{"model/a", tensor.Shape{2, 3}, ones}, {"model/b", tensor.Shape{2, 3}, ones}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("tensors (-want +got):\n%s", diff)
		}
	})
}

// TestSharedTensorMatchesTorch checks that one tensor under two keys (a
// *TensorSpec found twice) pickles as torch.save pickles one Python
// tensor saved under two keys: the second key fetches the memoized
// tensor, and there is one storage record.
func TestSharedTensorMatchesTorch(t *testing.T) { torchtest.Run(t, testSharedTensorMatchesTorch) }

func testSharedTensorMatchesTorch(t *testing.T, python string) {
	needTorch(t, python)
	dir := torchExec(t, python, `
w = torch.zeros(2, 3, dtype=torch.bfloat16)
v = torch.zeros(4)
torch.save({"model": OrderedDict([("embedding.word_embeddings.weight", w), ("x", v), ("output_layer.weight", w), ("y", v), ("z", w)])}, out + "/shared.pt")
`)
	w := &TensorSpec{DType: tensor.BF16, Shape: tensor.Shape{2, 3}}
	v := &TensorSpec{DType: tensor.F32, Shape: tensor.Shape{4}}
	root := dict("model", stateDict("embedding.word_embeddings.weight", w, "x", v, "output_layer.weight", w, "y", v, "z", w))
	ours := tempPath(t, "shared.pt")
	writeFile(t, ours, root, map[string][]byte{"model/embedding.word_embeddings.weight": make([]byte, 12), "model/x": make([]byte, 16)}, nil)
	theirs := filepath.Join(dir, "shared.pt")
	want, got := readRecord(t, theirs, "data.pkl"), readRecord(t, ours, "data.pkl")
	if !bytes.Equal(got, want) {
		at := firstDiff(got, want)
		t.Errorf("data.pkl differs from torch's at byte %d\nours:  %q\ntorch: %q", at, clip(got, at), clip(want, at))
	}
	f := mustOpen(t, ours)
	var names []string
	for _, tt := range f.Tensors() {
		names = append(names, tt.Name)
	}
	wantNames := []string{"model/embedding.word_embeddings.weight", "model/x", "model/output_layer.weight", "model/y", "model/z"}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("tensors (-want +got):\n%s", diff)
	}
}

func appendF32(b []byte, v float32) []byte {
	u := math.Float32bits(v)
	return append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
}

func mustOpen(t testing.TB, path string) *File {
	t.Helper()
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.VerifyCRC(); err != nil {
		t.Error(err)
	}
	return f
}

// specTree turns a read tree into a writer tree (tensors → TensorSpec).
func specTree(v any) any {
	switch v := v.(type) {
	case *Tensor:
		return TensorSpec{DType: v.DType, Shape: v.Shape}
	case *Dict:
		d := &Dict{Ordered: v.Ordered}
		for _, it := range v.Items {
			d.Items = append(d.Items, Item{it.Key, specTree(it.Value)})
		}
		if v.Attrs != nil {
			d.Attrs = specTree(v.Attrs).(*Dict)
		}
		return d
	case *List:
		l := &List{}
		for _, x := range v.Items {
			l.Items = append(l.Items, specTree(x))
		}
		return l
	case Tuple:
		var t Tuple
		for _, x := range v {
			t = append(t, specTree(x))
		}
		return t
	}
	return v
}
