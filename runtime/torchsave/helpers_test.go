package torchsave

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// allDTypes are the dtypes torch 1.13 supports among tensor.DType.
var allDTypes = []tensor.DType{
	tensor.BOOL, tensor.U8, tensor.I8, tensor.I16, tensor.I32, tensor.I64,
	tensor.F16, tensor.BF16, tensor.F32, tensor.F64,
}

// testData returns deterministic bytes for a tensor: random bytes, with
// bools restricted to 0 and 1.
func testData(name string, spec TensorSpec) []byte {
	h := fnv.New64a()
	h.Write([]byte(name))
	r := rand.New(rand.NewPCG(h.Sum64(), 7))
	b := make([]byte, spec.Size())
	for i := range b {
		b[i] = byte(r.Uint32())
		if spec.DType == tensor.BOOL {
			b[i] &= 1
		}
	}
	return b
}

// fillData returns path → bytes for every TensorSpec in the tree.
func fillData(t testing.TB, root any) map[string][]byte {
	t.Helper()
	_, slots, err := encodePickle(root)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, s := range slots {
		m[s.name] = testData(s.name, s.spec)
	}
	return m
}

// writeFile writes root with data to path, splitting every tensor into up
// to three chunks passed to WriteTensor.
func writeFile(t testing.TB, path string, root any, data map[string][]byte, opts *Options) {
	t.Helper()
	w, err := Create(path, root, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for i, ti := range w.Tensors() {
		b, ok := data[ti.Name]
		if !ok {
			t.Fatalf("no data for %q", ti.Name)
		}
		var chunks [][]byte
		switch {
		case len(b) >= 3 && i%3 == 1:
			chunks = [][]byte{b[:1], b[1 : len(b)/2], {}, b[len(b)/2:]}
		case i%3 == 2:
			chunks = [][]byte{b}
		default:
			chunks = [][]byte{b[:len(b)/2], b[len(b)/2:]}
		}
		if err := w.WriteTensor(ti.Name, chunks...); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// spec converts a value tree (TensorSpec leaves with data, or *Tensor
// leaves) into a JSON-able form shared with the Python helper:
//
//	{"t": "none"|"bool"|"int"|"float"|"str"|"tuple"|"list"|"dict"|"tensor", ...}
func spec(v any, path string, data map[string][]byte) any {
	switch v := v.(type) {
	case nil:
		return map[string]any{"t": "none"}
	case bool:
		return map[string]any{"t": "bool", "v": v}
	case int:
		return map[string]any{"t": "int", "v": strconv.Itoa(v)}
	case int64:
		return map[string]any{"t": "int", "v": strconv.FormatInt(v, 10)}
	case float64:
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], math.Float64bits(v))
		return map[string]any{"t": "float", "v": hex.EncodeToString(b[:])}
	case string:
		return map[string]any{"t": "str", "v": v}
	case Tuple:
		items := []any{}
		for i, x := range v {
			items = append(items, spec(x, joinPath(path, i), data))
		}
		return map[string]any{"t": "tuple", "items": items}
	case *List:
		items := []any{}
		for i, x := range v.Items {
			items = append(items, spec(x, joinPath(path, i), data))
		}
		return map[string]any{"t": "list", "items": items}
	case *Dict:
		items := []any{}
		for _, it := range v.Items {
			items = append(items, []any{spec(it.Key, "", nil), spec(it.Value, joinPath(path, it.Key), data)})
		}
		m := map[string]any{"t": "dict", "ordered": v.Ordered, "items": items}
		if v.Attrs != nil && len(v.Attrs.Items) > 0 {
			a := spec(v.Attrs, path+"/(attrs)", data).(map[string]any)
			a["ordered"] = false
			m["attrs"] = a
		}
		return m
	case TensorSpec:
		return map[string]any{"t": "tensor", "dtype": v.DType.String(), "shape": shapeJSON(v.Shape),
			"data": base64.StdEncoding.EncodeToString(data[path])}
	case *Tensor:
		return map[string]any{"t": "tensor", "dtype": v.DType.String(), "shape": shapeJSON(v.Shape),
			"data": base64.StdEncoding.EncodeToString(v.Data)}
	}
	panic(fmt.Sprintf("spec: unexpected %T", v))
}

func shapeJSON(s tensor.Shape) []any {
	out := []any{}
	for _, d := range s {
		out = append(out, d)
	}
	return out
}

// normJSON round-trips v through JSON so that it compares equal to decoded
// JSON.
func normJSON(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// diffJSON is cmp.Diff with a fast path for equal values (cmp is slow on
// the large trees of some cases).
func diffJSON(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	return cmp.Diff(want, got)
}

// stateDict returns an OrderedDict of TensorSpecs.
func stateDict(items ...any) *Dict {
	d := &Dict{Ordered: true}
	for i := 0; i < len(items); i += 2 {
		d.Items = append(d.Items, Item{Key: items[i], Value: items[i+1]})
	}
	return d
}

// dict returns a plain dict.
func dict(items ...any) *Dict {
	d := stateDict(items...)
	d.Ordered = false
	return d
}

func ts(dt tensor.DType, shape ...int64) TensorSpec {
	if shape == nil {
		shape = tensor.Shape{}
	}
	return TensorSpec{DType: dt, Shape: shape}
}

// allDTypesModel returns a state dict with every dtype in several shapes.
func allDTypesModel(dtypes []tensor.DType) *Dict {
	d := &Dict{Ordered: true}
	for _, dt := range dtypes {
		n := dt.String()
		d.Items = append(d.Items,
			Item{"layer." + n + ".matrix", ts(dt, 3, 5)},
			Item{"layer." + n + ".vector", ts(dt, 7)},
			Item{"layer." + n + ".scalar", ts(dt)},
			Item{"layer." + n + ".empty", ts(dt, 0)},
			Item{"layer." + n + ".empty3d", ts(dt, 2, 0, 3)},
			Item{"layer." + n + ".ones", ts(dt, 3, 1, 1, 2)},
		)
	}
	return d
}

func tempPath(t testing.TB, name string) string {
	return filepath.Join(t.TempDir(), name)
}
