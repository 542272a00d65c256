package torchsave

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// Pickle opcodes (protocol 2, plus the protocol 4 ones the reader accepts).
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opBinFloat       = 'G'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opBinInt2        = 'M'
	opNone           = 'N'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opAppends        = 'e'
	opBinGet         = 'h'
	opLongBinGet     = 'j'
	opEmptyList      = ']'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opSetItems       = 'u'
	opEmptyDict      = '}'
	opEmptyTuple     = ')'
	opProto          = 0x80
	opNewObj         = 0x81
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opShortBinUnicod = 0x8c
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
)

// batchSize is CPython's pickle _BATCHSIZE: SETITEMS/APPENDS carry at most
// this many items.
const batchSize = 1000

// slot is one tensor of the writer, in pickle (and record) order.
type slot struct {
	name string // path in the value tree
	spec TensorSpec
	key  string // storage record key: "0", "1", ...
	size int64  // bytes
}

// pickler emits the protocol 2 pickle CPython's C pickler produces for the
// same object graph, under torch.save's persistent_id. Every object that
// Python memoizes gets a BINPUT; objects that are the same Python object in
// torch's pickling (globals, the "storage" and "cpu" strings) are fetched
// again with BINGET. A *TensorSpec found twice in the Go tree is one
// tensor saved under two keys (Python: sd["a"] = sd["b"] = t): its second
// occurrence is a BINGET of the first, as torch.save's pickler memoizes
// the tensor, and it has one storage record. Everything else in the Go
// tree is a distinct object.
type pickler struct {
	buf     []byte
	memo    int                 // next memo index
	globals map[string]int      // "module\nname" -> memo index
	consts  map[string]int      // interned strings -> memo index
	tensors map[*TensorSpec]int // tensors already pickled -> memo index
	slots   []slot
}

func (p *pickler) op(b ...byte) { p.buf = append(p.buf, b...) }

// put memoizes the object just built, as Pickler.memoize does.
func (p *pickler) put() {
	i := p.memo
	p.memo++
	if i < 256 {
		p.op(opBinPut, byte(i))
	} else {
		p.op(opLongBinPut)
		p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(i))
	}
}

func (p *pickler) get(i int) {
	if i < 256 {
		p.op(opBinGet, byte(i))
	} else {
		p.op(opLongBinGet)
		p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(i))
	}
}

func (p *pickler) global(module, name string) {
	k := module + "\n" + name
	if i, ok := p.globals[k]; ok {
		p.get(i)
		return
	}
	p.op(opGlobal)
	p.buf = append(p.buf, module...)
	p.buf = append(p.buf, '\n')
	p.buf = append(p.buf, name...)
	p.buf = append(p.buf, '\n')
	p.globals[k] = p.memo
	p.put()
}

func (p *pickler) str(s string) {
	p.op(opBinUnicode)
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(len(s)))
	p.buf = append(p.buf, s...)
	p.put()
}

// constStr emits a string that is the same Python object every time.
func (p *pickler) constStr(s string) {
	if i, ok := p.consts[s]; ok {
		p.get(i)
		return
	}
	p.consts[s] = p.memo
	p.str(s)
}

func (p *pickler) int(v int64) {
	switch {
	case v >= 0 && v <= 0xff:
		p.op(opBinInt1, byte(v))
	case v >= 0 && v <= 0xffff:
		p.op(opBinInt2, byte(v), byte(v>>8))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		p.op(opBinInt)
		p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(v))
	default:
		// LONG1: minimal little-endian two's complement, as pickle.encode_long.
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(v))
		n := 8
		for n > 1 {
			top, next := b[n-1], b[n-2]
			if (top == 0 && next&0x80 == 0) || (top == 0xff && next&0x80 != 0) {
				n--
				continue
			}
			break
		}
		p.op(opLong1, byte(n))
		p.buf = append(p.buf, b[:n]...)
	}
}

func (p *pickler) bool(v bool) {
	if v {
		p.op(opNewTrue)
	} else {
		p.op(opNewFalse)
	}
}

func (p *pickler) float(v float64) {
	p.op(opBinFloat)
	p.buf = binary.BigEndian.AppendUint64(p.buf, math.Float64bits(v))
}

// tuple emits a tuple whose elements are written by elems (n of them).
func (p *pickler) tuple(n int, elems func() error) error {
	if n == 0 {
		p.op(opEmptyTuple)
		return nil
	}
	if n > 3 {
		p.op(opMark)
	}
	if err := elems(); err != nil {
		return err
	}
	switch n {
	case 1:
		p.op(opTuple1)
	case 2:
		p.op(opTuple2)
	case 3:
		p.op(opTuple3)
	default:
		p.op(opTuple)
	}
	p.put()
	return nil
}

func (p *pickler) ints(v []int64) {
	p.tuple(len(v), func() error {
		for _, x := range v {
			p.int(x)
		}
		return nil
	})
}

// orderedDict emits collections.OrderedDict() (REDUCE with no arguments).
func (p *pickler) orderedDict() {
	p.global("collections", "OrderedDict")
	p.op(opEmptyTuple, opReduce)
	p.put()
}

// value emits v, found at path in the tree; depth guards against cycles.
func (p *pickler) value(v any, path string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: value nested deeper than %d levels (a cycle?)", pathOrRoot(path), maxDepth)
	}
	switch v := v.(type) {
	case nil:
		p.op(opNone)
	case bool:
		p.bool(v)
	case int:
		p.int(int64(v))
	case int64:
		p.int(v)
	case int32:
		p.int(int64(v))
	case float64:
		p.float(v)
	case float32:
		p.float(float64(v))
	case string:
		p.str(v)
	case Tuple:
		return p.tuple(len(v), func() error {
			for i, x := range v {
				if err := p.value(x, joinPath(path, i), depth+1); err != nil {
					return err
				}
			}
			return nil
		})
	case *List:
		if v == nil {
			return fmt.Errorf("%s: nil *List", pathOrRoot(path))
		}
		p.op(opEmptyList)
		p.put()
		return p.list(v.Items, path, depth)
	case *Dict:
		if v == nil {
			return fmt.Errorf("%s: nil *Dict", pathOrRoot(path))
		}
		return p.dict(v, path, depth)
	case TensorSpec:
		return p.tensor(v, path)
	case *TensorSpec:
		if v == nil {
			return fmt.Errorf("%s: nil *TensorSpec", pathOrRoot(path))
		}
		if i, ok := p.tensors[v]; ok {
			p.get(i)
			return nil
		}
		if err := p.tensor(*v, path); err != nil {
			return err
		}
		p.tensors[v] = p.memo - 1 // the REDUCE result tensor() memoized last
		return nil
	default:
		return fmt.Errorf("%s: cannot pickle a value of Go type %T", pathOrRoot(path), v)
	}
	return nil
}

func pathOrRoot(path string) string {
	if path == "" {
		return "root value"
	}
	return strconv.Quote(path)
}

// list emits the APPEND(S) batches of CPython's batch_list_exact.
func (p *pickler) list(items []any, path string, depth int) error {
	if len(items) == 1 {
		if err := p.value(items[0], joinPath(path, 0), depth+1); err != nil {
			return err
		}
		p.op(opAppend)
		return nil
	}
	for start := 0; start < len(items); start += batchSize {
		end := min(start+batchSize, len(items))
		p.op(opMark)
		for i := start; i < end; i++ {
			if err := p.value(items[i], joinPath(path, i), depth+1); err != nil {
				return err
			}
		}
		p.op(opAppends)
	}
	return nil
}

// pyKey maps a dict key to a Go value that is == exactly when Python
// considers the keys equal (True == 1 == 1.0).
func pyKey(k any) any {
	switch k := k.(type) {
	case bool:
		if k {
			return int64(1)
		}
		return int64(0)
	case int:
		return int64(k)
	case int32:
		return int64(k)
	case float32:
		return pyKey(float64(k))
	case float64:
		if k == math.Trunc(k) && math.Abs(k) < 1<<63 {
			return int64(k)
		}
		return k
	}
	return k
}

func checkKey(k any) error {
	switch k.(type) {
	case nil, bool, int, int32, int64, float64, float32, string:
		return nil
	}
	return fmt.Errorf("dict key of Go type %T: keys must be None, bool, int, float or string", k)
}

func (p *pickler) dict(d *Dict, path string, depth int) error {
	seen := make(map[any]struct{}, len(d.Items))
	for _, it := range d.Items {
		if err := checkKey(it.Key); err != nil {
			return fmt.Errorf("%s: %v", pathOrRoot(path), err)
		}
		k := pyKey(it.Key)
		if _, dup := seen[k]; dup {
			return fmt.Errorf("%s: duplicate key %v", pathOrRoot(path), it.Key)
		}
		seen[k] = struct{}{}
	}
	if d.Attrs != nil && !d.Ordered && len(d.Attrs.Items) > 0 {
		return fmt.Errorf("%s: only an OrderedDict can have Attrs", pathOrRoot(path))
	}
	item := func(it Item) error {
		if err := p.value(it.Key, path, depth+1); err != nil {
			return err
		}
		return p.value(it.Value, joinPath(path, it.Key), depth+1)
	}
	n := len(d.Items)
	if !d.Ordered {
		// save_dict + batch_dict_exact: a lone item uses SETITEM; otherwise
		// MARK ... SETITEMS batches, with an empty trailing batch when the
		// size is a multiple of the batch size.
		p.op(opEmptyDict)
		p.put()
		if n == 0 {
			return nil
		}
		if n == 1 {
			if err := item(d.Items[0]); err != nil {
				return err
			}
			p.op(opSetItem)
			return nil
		}
		i := 0
		for {
			p.op(opMark)
			c := 0
			for i < n && c < batchSize {
				if err := item(d.Items[i]); err != nil {
					return err
				}
				i++
				c++
			}
			p.op(opSetItems)
			if c < batchSize {
				return nil
			}
		}
	}
	// OrderedDict: save_reduce then batch_dict over the items iterator: a
	// batch of one item uses SETITEM, no empty batches; then BUILD with the
	// instance dict if it is not empty.
	p.orderedDict()
	for start := 0; start < n; start += batchSize {
		end := min(start+batchSize, n)
		if end-start == 1 {
			if err := item(d.Items[start]); err != nil {
				return err
			}
			p.op(opSetItem)
			continue
		}
		p.op(opMark)
		for i := start; i < end; i++ {
			if err := item(d.Items[i]); err != nil {
				return err
			}
		}
		p.op(opSetItems)
	}
	if d.Attrs != nil && len(d.Attrs.Items) > 0 {
		attrs := *d.Attrs
		attrs.Ordered = false // an instance __dict__ is a plain dict
		for _, it := range attrs.Items {
			if _, ok := it.Key.(string); !ok {
				return fmt.Errorf("%s: attribute name %v is not a string", pathOrRoot(path), it.Key)
			}
		}
		if err := p.dict(&attrs, path+"/"+"(attrs)", depth+1); err != nil {
			return err
		}
		p.op(opBuild)
	}
	return nil
}

// v3Dtypes are the dtypes torch ≥ 2.1 pickles with _rebuild_tensor_v3 and an
// UntypedStorage, with the torch attribute naming their dtype.
var v3Dtypes = map[tensor.DType]string{
	tensor.F8E4M3: "float8_e4m3fn",
	tensor.F8E5M2: "float8_e5m2",
}

// tensor emits torch.Tensor.__reduce_ex__ of a fresh contiguous CPU tensor
// with its own storage, as torch.save pickles it.
func (p *pickler) tensor(spec TensorSpec, path string) error {
	size := spec.Size()
	if size < 0 {
		return fmt.Errorf("%s: invalid tensor spec %v %v", pathOrRoot(path), spec.DType, spec.Shape)
	}
	key := strconv.Itoa(len(p.slots))
	spec.Shape = slices.Clone(spec.Shape)
	p.slots = append(p.slots, slot{name: path, spec: spec, key: key, size: size})
	numel := spec.Shape.NumElements()
	dt, v3 := v3Dtypes[spec.DType]
	if v3 {
		p.global("torch._utils", "_rebuild_tensor_v3")
	} else {
		p.global("torch._utils", "_rebuild_tensor_v2")
	}
	p.op(opMark)
	// persistent id ('storage', storage type, key, location, numel)
	p.op(opMark)
	p.constStr("storage")
	if v3 {
		p.global("torch.storage", "UntypedStorage") // torch 2.x's name; weights_only allows only this one
	} else {
		p.global("torch", spec.DType.TorchStorage())
	}
	p.str(key)
	p.constStr("cpu")
	if v3 {
		p.int(size) // untyped storages count bytes
	} else {
		p.int(numel)
	}
	p.op(opTuple)
	p.put()
	p.op(opBinPersID)
	p.int(0) // storage_offset
	p.ints(spec.Shape)
	p.ints(contiguousStrides(spec.Shape))
	p.bool(false) // requires_grad
	p.orderedDict()
	if v3 {
		p.global("torch", dt)
	}
	p.op(opTuple)
	p.put()
	p.op(opReduce)
	p.put()
	return nil
}

// maxDepth bounds the nesting of values, in the writer and the reader.
const maxDepth = 200

// encodePickle returns the data.pkl bytes for root and the tensors in the
// order their bytes must follow.
func encodePickle(root any) ([]byte, []slot, error) {
	p := &pickler{globals: map[string]int{}, consts: map[string]int{}, tensors: map[*TensorSpec]int{}}
	p.op(opProto, 2)
	if err := p.value(root, "", 0); err != nil {
		return nil, nil, err
	}
	p.op(opStop)
	return p.buf, p.slots, nil
}
