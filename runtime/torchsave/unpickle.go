package torchsave

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// global is a resolved, allowed GLOBAL.
type global struct {
	module, name string
	kind         globalKind
	dtype        tensor.DType // storage class or torch dtype
}

type globalKind uint8

const (
	gOrderedDict globalKind = iota + 1
	gRebuildV2
	gRebuildV3
	gRebuildParameter
	gStorage // torch.XStorage: dtype set
	gUntypedStorage
	gDtype // torch.float8_e4m3fn etc.: dtype set
)

func (g *global) String() string { return g.module + "." + g.name }

// allowedGlobals maps "module.name" to its meaning.
var allowedGlobals = func() map[string]*global {
	m := map[string]*global{}
	add := func(module, name string, kind globalKind, dt tensor.DType) {
		m[module+"."+name] = &global{module: module, name: name, kind: kind, dtype: dt}
	}
	add("collections", "OrderedDict", gOrderedDict, 0)
	add("torch._utils", "_rebuild_tensor_v2", gRebuildV2, 0)
	add("torch._utils", "_rebuild_tensor_v3", gRebuildV3, 0)
	add("torch._utils", "_rebuild_parameter", gRebuildParameter, 0)
	add("torch", "UntypedStorage", gUntypedStorage, 0)
	add("torch.storage", "UntypedStorage", gUntypedStorage, 0) // what torch 2.x writes
	for dt := tensor.BOOL; dt <= tensor.F64; dt++ {
		if s := dt.TorchStorage(); s != "" {
			add("torch", s, gStorage, dt)
		}
	}
	for name, dt := range map[string]tensor.DType{
		"bool": tensor.BOOL, "uint8": tensor.U8, "int8": tensor.I8,
		"int16": tensor.I16, "short": tensor.I16, "int32": tensor.I32, "int": tensor.I32,
		"int64": tensor.I64, "long": tensor.I64,
		"float8_e4m3fn": tensor.F8E4M3, "float8_e5m2": tensor.F8E5M2,
		"float16": tensor.F16, "half": tensor.F16, "bfloat16": tensor.BF16,
		"float32": tensor.F32, "float": tensor.F32, "float64": tensor.F64, "double": tensor.F64,
	} {
		add("torch", name, gDtype, dt)
	}
	return m
}()

// storageRef is the result of BINPERSID.
type storageRef struct {
	key      string
	dtype    tensor.DType // Invalid for an UntypedStorage
	location string
	numel    int64 // elements (bytes for an UntypedStorage)
}

// mark is the MARK sentinel on the stack.
type mark struct{}

// unpickler is a restricted pickle machine for torch.save's data.pkl.
type unpickler struct {
	data  []byte
	pos   int
	stack []any
	marks []int // stack lengths at each MARK
	memo  map[uint32]any
	// dictIndex tracks the keys of dicts being filled, to reject duplicates.
	dictIndex map[*Dict]map[any]int
	// storage resolves a persistent id; it checks the record exists.
	storage func(pid Tuple) (*storageRef, error)
	// storages maps each tensor built to its storage.
	storages map[*Tensor]*storageRef
}

// errAt is an unpickling error at a byte offset of data.pkl.
type errAt struct {
	off int
	err error
}

func (e *errAt) Error() string { return e.err.Error() }

func (u *unpickler) fail(at int, format string, args ...any) error {
	return &errAt{off: at, err: fmt.Errorf(format, args...)}
}

func (u *unpickler) need(n int) ([]byte, error) {
	if n < 0 || len(u.data)-u.pos < n {
		return nil, u.fail(u.pos, "unexpected end of pickle")
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) pop(at int) (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) <= u.marks[len(u.marks)-1]) {
		return nil, u.fail(at, "stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top(at int) (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) <= u.marks[len(u.marks)-1]) {
		return nil, u.fail(at, "stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark pops everything down to the last MARK and the MARK itself.
func (u *unpickler) popMark(at int) ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.fail(at, "no MARK on the stack")
	}
	k := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[k:]...)
	u.stack = u.stack[:k]
	return items, nil
}

func (u *unpickler) readLine(at int) (string, error) {
	i := bytes.IndexByte(u.data[u.pos:min(len(u.data), u.pos+256)], '\n')
	if i < 0 {
		return "", u.fail(at, "GLOBAL: unterminated or overlong name")
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

// resolveGlobal returns the global the reader models, or, for any other,
// an *Object standing for the bare reference: it is recorded, never
// imported or called.
func (u *unpickler) resolveGlobal(at int, module, name string) (any, error) {
	if g, ok := allowedGlobals[module+"."+name]; ok {
		return g, nil
	}
	if module == "" || name == "" {
		return nil, u.fail(at, "global %q.%q: empty module or name", module, name)
	}
	return &Object{Class: module + "." + name, Bare: true}, nil
}

// construct records a call of an unmodelled class or function (REDUCE or
// NEWOBJ) as an *Object.
func construct(callee *Object, args Tuple) (*Object, error) {
	if !callee.Bare {
		return nil, fmt.Errorf("call of a %s object", callee.Class)
	}
	return &Object{Class: callee.Class, Args: args}, nil
}

// TypeName names the Python type of a value of the tree, for messages:
// "tensor", "OrderedDict", "None", "argparse.Namespace object", ...
func TypeName(v any) string { return typeName(v) }

func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case *Dict:
		if v.Ordered {
			return "OrderedDict"
		}
		return "dict"
	case *List:
		return "list"
	case Tuple:
		return "tuple"
	case *Tensor:
		return "tensor"
	case *global:
		return "global " + v.String()
	case *Object:
		if v.Bare {
			return "reference to " + v.Class
		}
		return v.Class + " object"
	case *storageRef:
		return "storage"
	case mark:
		return "MARK"
	}
	return fmt.Sprintf("%T", v)
}

func hashable(v any) bool {
	switch v.(type) {
	case nil, bool, int64, float64, string:
		return true
	}
	return false
}

// setItem adds k: v to d; replace allows overwriting an existing key (as
// BUILD does for attributes), otherwise a duplicate key is an error.
func (u *unpickler) setItem(at int, d *Dict, k, v any, replace bool) error {
	if !hashable(k) {
		return u.fail(at, "dict key of type %s is not supported", typeName(k))
	}
	idx := u.dictIndex[d]
	if idx == nil {
		idx = make(map[any]int, len(d.Items)+1)
		for i, it := range d.Items {
			idx[pyKey(it.Key)] = i
		}
		u.dictIndex[d] = idx
	}
	if i, dup := idx[pyKey(k)]; dup {
		if !replace {
			return u.fail(at, "duplicate dict key %v", k)
		}
		d.Items[i].Value = v
		return nil
	}
	idx[pyKey(k)] = len(d.Items)
	d.Items = append(d.Items, Item{Key: k, Value: v})
	return nil
}

// run executes the pickle and returns the value STOP finds.
func (u *unpickler) run() (any, error) {
	u.memo = map[uint32]any{}
	u.dictIndex = map[*Dict]map[any]int{}
	u.storages = map[*Tensor]*storageRef{}
	for {
		at := u.pos
		if u.pos >= len(u.data) {
			return nil, u.fail(at, "pickle ends without STOP")
		}
		op := u.data[u.pos]
		u.pos++
		switch op {
		case opProto:
			b, err := u.need(1)
			if err != nil {
				return nil, err
			}
			if b[0] < 2 || b[0] > 5 {
				return nil, u.fail(at, "unsupported pickle protocol %d", b[0])
			}
		case opFrame:
			if _, err := u.need(8); err != nil {
				return nil, err
			}
		case opStop:
			v, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			if len(u.stack) != 0 || len(u.marks) != 0 {
				return nil, u.fail(at, "STOP with %d values left on the stack", len(u.stack))
			}
			return v, nil
		case opMark:
			u.marks = append(u.marks, len(u.stack))
		case opPop:
			if _, err := u.pop(at); err != nil {
				return nil, err
			}
		case opPopMark:
			if _, err := u.popMark(at); err != nil {
				return nil, err
			}
		case opNone:
			u.stack = append(u.stack, nil)
		case opNewTrue:
			u.stack = append(u.stack, true)
		case opNewFalse:
			u.stack = append(u.stack, false)
		case opBinInt:
			b, err := u.need(4)
			if err != nil {
				return nil, err
			}
			u.stack = append(u.stack, int64(int32(binary.LittleEndian.Uint32(b))))
		case opBinInt1:
			b, err := u.need(1)
			if err != nil {
				return nil, err
			}
			u.stack = append(u.stack, int64(b[0]))
		case opBinInt2:
			b, err := u.need(2)
			if err != nil {
				return nil, err
			}
			u.stack = append(u.stack, int64(binary.LittleEndian.Uint16(b)))
		case opLong1:
			b, err := u.need(1)
			if err != nil {
				return nil, err
			}
			n := int(b[0])
			if n > 8 {
				return nil, u.fail(at, "LONG1 integer of %d bytes does not fit in int64", n)
			}
			b, err = u.need(n)
			if err != nil {
				return nil, err
			}
			var v int64
			if n > 0 {
				var buf [8]byte
				copy(buf[:], b)
				if b[n-1]&0x80 != 0 {
					for i := n; i < 8; i++ {
						buf[i] = 0xff
					}
				}
				v = int64(binary.LittleEndian.Uint64(buf[:]))
			}
			u.stack = append(u.stack, v)
		case opBinFloat:
			b, err := u.need(8)
			if err != nil {
				return nil, err
			}
			u.stack = append(u.stack, math.Float64frombits(binary.BigEndian.Uint64(b)))
		case opBinUnicode, opShortBinUnicod:
			var n int
			if op == opBinUnicode {
				b, err := u.need(4)
				if err != nil {
					return nil, err
				}
				n64 := binary.LittleEndian.Uint32(b)
				if uint64(n64) > uint64(len(u.data)-u.pos) {
					return nil, u.fail(at, "string of %d bytes runs past the end of the pickle", n64)
				}
				n = int(n64)
			} else {
				b, err := u.need(1)
				if err != nil {
					return nil, err
				}
				n = int(b[0])
			}
			b, err := u.need(n)
			if err != nil {
				return nil, err
			}
			u.stack = append(u.stack, string(b))
		case opEmptyDict:
			u.stack = append(u.stack, &Dict{})
		case opEmptyList:
			u.stack = append(u.stack, &List{})
		case opEmptyTuple:
			u.stack = append(u.stack, Tuple{})
		case opTuple:
			items, err := u.popMark(at)
			if err != nil {
				return nil, err
			}
			u.stack = append(u.stack, Tuple(items))
		case opTuple1, opTuple2, opTuple3:
			n := int(op - opTuple1 + 1)
			if len(u.stack) < n || (len(u.marks) > 0 && len(u.stack)-n < u.marks[len(u.marks)-1]) {
				return nil, u.fail(at, "stack underflow")
			}
			t := append(Tuple(nil), u.stack[len(u.stack)-n:]...)
			u.stack = u.stack[:len(u.stack)-n]
			u.stack = append(u.stack, t)
		case opGlobal:
			module, err := u.readLine(at)
			if err != nil {
				return nil, err
			}
			name, err := u.readLine(at)
			if err != nil {
				return nil, err
			}
			g, err := u.resolveGlobal(at, module, name)
			if err != nil {
				return nil, err
			}
			u.stack = append(u.stack, g)
		case opStackGlobal:
			nv, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			mv, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			module, ok1 := mv.(string)
			name, ok2 := nv.(string)
			if !ok1 || !ok2 {
				return nil, u.fail(at, "STACK_GLOBAL needs two strings")
			}
			g, err := u.resolveGlobal(at, module, name)
			if err != nil {
				return nil, err
			}
			u.stack = append(u.stack, g)
		case opBinPut, opLongBinPut, opMemoize:
			var idx uint32
			switch op {
			case opBinPut:
				b, err := u.need(1)
				if err != nil {
					return nil, err
				}
				idx = uint32(b[0])
			case opLongBinPut:
				b, err := u.need(4)
				if err != nil {
					return nil, err
				}
				idx = binary.LittleEndian.Uint32(b)
			default:
				idx = uint32(len(u.memo))
			}
			v, err := u.top(at)
			if err != nil {
				return nil, err
			}
			u.memo[idx] = v
		case opBinGet, opLongBinGet:
			var idx uint32
			if op == opBinGet {
				b, err := u.need(1)
				if err != nil {
					return nil, err
				}
				idx = uint32(b[0])
			} else {
				b, err := u.need(4)
				if err != nil {
					return nil, err
				}
				idx = binary.LittleEndian.Uint32(b)
			}
			v, ok := u.memo[idx]
			if !ok {
				return nil, u.fail(at, "memo entry %d is not set", idx)
			}
			u.stack = append(u.stack, v)
		case opBinPersID:
			v, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			pid, ok := v.(Tuple)
			if !ok {
				return nil, u.fail(at, "persistent id is a %s, want a tuple", typeName(v))
			}
			ref, err := u.storage(pid)
			if err != nil {
				return nil, &errAt{off: at, err: err}
			}
			u.stack = append(u.stack, ref)
		case opReduce:
			av, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			fv, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			args, ok := av.(Tuple)
			if !ok {
				return nil, u.fail(at, "REDUCE arguments are a %s, want a tuple", typeName(av))
			}
			var v any
			switch f := fv.(type) {
			case *global:
				v, err = u.reduce(f, args)
			case *Object:
				v, err = construct(f, args)
			default:
				return nil, u.fail(at, "REDUCE on a %s", typeName(fv))
			}
			if err != nil {
				return nil, &errAt{off: at, err: err}
			}
			u.stack = append(u.stack, v)
		case opNewObj:
			av, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			cv, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			args, ok := av.(Tuple)
			if !ok {
				return nil, u.fail(at, "NEWOBJ arguments are a %s, want a tuple", typeName(av))
			}
			c, ok := cv.(*Object)
			if !ok {
				return nil, u.fail(at, "NEWOBJ on a %s", typeName(cv))
			}
			v, err := construct(c, args)
			if err != nil {
				return nil, &errAt{off: at, err: err}
			}
			u.stack = append(u.stack, v)
		case opBuild:
			state, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			inst, err := u.top(at)
			if err != nil {
				return nil, err
			}
			if o, ok := inst.(*Object); ok && !o.Bare {
				o.State = state
				continue
			}
			d, ok := inst.(*Dict)
			if !ok || !d.Ordered {
				return nil, u.fail(at, "BUILD on a %s; only OrderedDict attributes are supported", typeName(inst))
			}
			sd, ok := state.(*Dict)
			if !ok {
				return nil, u.fail(at, "BUILD state is a %s, want a dict", typeName(state))
			}
			if d.Attrs == nil {
				d.Attrs = &Dict{}
			}
			for _, it := range sd.Items {
				if _, ok := it.Key.(string); !ok {
					return nil, u.fail(at, "attribute name %v is not a string", it.Key)
				}
				if err := u.setItem(at, d.Attrs, it.Key, it.Value, true); err != nil {
					return nil, err
				}
			}
		case opSetItem:
			v, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			k, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			dv, err := u.top(at)
			if err != nil {
				return nil, err
			}
			d, ok := dv.(*Dict)
			if !ok {
				return nil, u.fail(at, "SETITEM on a %s", typeName(dv))
			}
			if err := u.setItem(at, d, k, v, false); err != nil {
				return nil, err
			}
		case opSetItems:
			items, err := u.popMark(at)
			if err != nil {
				return nil, err
			}
			dv, err := u.top(at)
			if err != nil {
				return nil, err
			}
			d, ok := dv.(*Dict)
			if !ok {
				return nil, u.fail(at, "SETITEMS on a %s", typeName(dv))
			}
			if len(items)%2 != 0 {
				return nil, u.fail(at, "SETITEMS with an odd number (%d) of values", len(items))
			}
			for i := 0; i < len(items); i += 2 {
				if err := u.setItem(at, d, items[i], items[i+1], false); err != nil {
					return nil, err
				}
			}
		case opAppend:
			v, err := u.pop(at)
			if err != nil {
				return nil, err
			}
			lv, err := u.top(at)
			if err != nil {
				return nil, err
			}
			l, ok := lv.(*List)
			if !ok {
				return nil, u.fail(at, "APPEND on a %s", typeName(lv))
			}
			l.Items = append(l.Items, v)
		case opAppends:
			items, err := u.popMark(at)
			if err != nil {
				return nil, err
			}
			lv, err := u.top(at)
			if err != nil {
				return nil, err
			}
			l, ok := lv.(*List)
			if !ok {
				return nil, u.fail(at, "APPENDS on a %s", typeName(lv))
			}
			l.Items = append(l.Items, items...)
		default:
			return nil, u.fail(at, "unsupported pickle opcode 0x%02x (%q)", op, rune(op))
		}
	}
}

// reduce applies an allowed callable.
func (u *unpickler) reduce(g *global, args Tuple) (any, error) {
	switch g.kind {
	case gOrderedDict:
		if len(args) != 0 {
			return nil, errors.New("collections.OrderedDict called with arguments; only OrderedDict() is supported")
		}
		return &Dict{Ordered: true}, nil
	case gRebuildV2, gRebuildV3:
		t, st, err := rebuildTensor(g, args)
		if err != nil {
			return nil, err
		}
		u.storages[t] = st
		return t, nil
	case gRebuildParameter:
		// _rebuild_parameter(data, requires_grad, backward_hooks)
		if len(args) != 3 {
			return nil, fmt.Errorf("%s takes 3 arguments, got %d", g, len(args))
		}
		t, ok := args[0].(*Tensor)
		if !ok {
			return nil, fmt.Errorf("%s: data is a %s, want a tensor", g, typeName(args[0]))
		}
		rg, ok := args[1].(bool)
		if !ok {
			return nil, fmt.Errorf("%s: requires_grad is a %s, want a bool", g, typeName(args[1]))
		}
		if _, ok := args[2].(*Dict); !ok {
			return nil, fmt.Errorf("%s: backward_hooks is a %s, want an OrderedDict", g, typeName(args[2]))
		}
		p := *t
		p.RequiresGrad = rg
		u.storages[&p] = u.storages[t]
		return &p, nil
	}
	return nil, fmt.Errorf("%s is not callable", g)
}

// rebuildTensor handles
//
//	_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
//	_rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
func rebuildTensor(g *global, args Tuple) (*Tensor, *storageRef, error) {
	n := 6
	if g.kind == gRebuildV3 {
		n = 7
	}
	if len(args) != n && len(args) != n+1 {
		return nil, nil, fmt.Errorf("%s takes %d or %d arguments, got %d", g, n, n+1, len(args))
	}
	st, ok := args[0].(*storageRef)
	if !ok {
		return nil, nil, fmt.Errorf("%s: storage is a %s, want a persistent storage", g, typeName(args[0]))
	}
	off, ok := args[1].(int64)
	if !ok {
		return nil, nil, fmt.Errorf("%s: storage_offset is a %s, want an int", g, typeName(args[1]))
	}
	shape, err := intTuple(args[2])
	if err != nil {
		return nil, nil, fmt.Errorf("%s: size: %v", g, err)
	}
	stride, err := intTuple(args[3])
	if err != nil {
		return nil, nil, fmt.Errorf("%s: stride: %v", g, err)
	}
	rg, ok := args[4].(bool)
	if !ok {
		return nil, nil, fmt.Errorf("%s: requires_grad is a %s, want a bool", g, typeName(args[4]))
	}
	if _, ok := args[5].(*Dict); !ok {
		return nil, nil, fmt.Errorf("%s: backward_hooks is a %s, want an OrderedDict", g, typeName(args[5]))
	}
	dt := st.dtype
	if g.kind == gRebuildV3 {
		dg, ok := args[6].(*global)
		if !ok || dg.kind != gDtype {
			return nil, nil, fmt.Errorf("%s: dtype is a %s, want a torch dtype", g, typeName(args[6]))
		}
		if st.dtype != tensor.Invalid && st.dtype != dg.dtype {
			return nil, nil, fmt.Errorf("%s: dtype %v differs from the storage's %v", g, dg.dtype, st.dtype)
		}
		dt = dg.dtype
	} else if dt == tensor.Invalid {
		return nil, nil, fmt.Errorf("%s needs a typed storage, got torch.UntypedStorage", g)
	}
	if len(args) == n+1 {
		md, ok := args[n].(*Dict)
		if !ok {
			return nil, nil, fmt.Errorf("%s: metadata is a %s, want a dict", g, typeName(args[n]))
		}
		if len(md.Items) > 0 {
			return nil, nil, fmt.Errorf("%s: tensor metadata %v (conj/neg bits) is not supported", g, md.Items)
		}
	}
	return &Tensor{
		DType:         dt,
		Shape:         shape,
		Stride:        stride,
		StorageOffset: off,
		Storage:       st.key,
		RequiresGrad:  rg,
	}, st, nil
}

func intTuple(v any) ([]int64, error) {
	t, ok := v.(Tuple)
	if !ok {
		return nil, fmt.Errorf("a %s, want a tuple of ints", typeName(v))
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("element %d is a %s, want an int", i, typeName(x))
		}
		out[i] = n
	}
	return out, nil
}
