package torchsave

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/lang/srcfile"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// File is a torch.save file opened for reading.
type File struct {
	// Path is the path the file was opened with.
	Path string
	// ArchiveName is the folder holding the records inside the zip.
	ArchiveName string
	// Root is the unpickled content of data.pkl, usually a *Dict.
	Root any

	data    []byte // the whole file, mapped
	unmap   func() error
	zip     *zipDir
	tensors []*Tensor
}

// Open maps the file at path and reads its structure. Tensor data is not
// read: each [Tensor.Data] is a slice of the mapping, valid until Close.
// Only CRCs of the small records (data.pkl, version, byteorder) are
// checked; use [File.VerifyCRC] to check all.
func Open(path string) (*File, error) {
	f, _, err := srcfile.Open(path)
	if err != nil {
		return nil, &Error{File: path, Offset: -1, Err: err}
	}
	defer f.Close()
	data, unmap, err := mapFile(f)
	if err != nil {
		return nil, &Error{File: path, Offset: -1, Err: err}
	}
	tf, err := parse(path, data)
	if err != nil {
		unmap()
		return nil, err
	}
	tf.unmap = unmap
	return tf, nil
}

// Close releases the mapping. Tensor data must not be used afterwards.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap, f.data = nil, nil
	for _, t := range f.tensors {
		t.Data = nil
	}
	return err
}

// Tensors returns every tensor of the value tree, in pickle order. A tensor
// reachable under several keys (one Python tensor saved as sd["a"] and
// sd["b"]: torch.save memoizes it, so both keys hold the same pickled
// object) is listed once per key, each entry with its own Name and the
// same data. Containers reachable twice are walked once.
func (f *File) Tensors() []*Tensor { return f.tensors }

// Records returns the zip records, in central-directory order.
func (f *File) Records() []Record { return append([]Record(nil), f.zip.records...) }

// VerifyCRC reads every record and checks its CRC-32.
func (f *File) VerifyCRC() error {
	for i := range f.zip.records {
		r := &f.zip.records[i]
		if err := r.checkCRC(f.data); err != nil {
			return &Error{File: f.Path, Record: r.Name, Offset: -1, Err: err}
		}
	}
	return nil
}

// parse reads the structure of a torch.save file held in data.
func parse(path string, data []byte) (_ *File, err error) {
	defer func() {
		// Every input is bounds-checked (FuzzReader runs parseData without
		// this net); a panic here is a bug, reported as an error rather
		// than crashing the caller.
		if r := recover(); r != nil {
			err = &Error{File: path, Offset: -1, Err: fmt.Errorf("internal error: %v", r)}
		}
	}()
	return parseData(path, data)
}

func parseData(path string, data []byte) (*File, error) {
	fail := func(record string, err error) error {
		return &Error{File: path, Record: record, Offset: -1, Err: err}
	}
	z, err := readZip(data, fail)
	if err != nil {
		return nil, err
	}
	f := &File{Path: path, ArchiveName: z.archive, data: data, zip: z}

	small := func(name string) (string, bool, error) {
		r := z.byName[name]
		if r == nil {
			return "", false, nil
		}
		if r.Size > 64 {
			return "", true, fail(name, fmt.Errorf("record of %d bytes, want at most 64", r.Size))
		}
		if err := r.checkCRC(data); err != nil {
			return "", true, fail(name, err)
		}
		return string(r.bytes(data)), true, nil
	}
	version, ok, err := small("version")
	if err == nil && !ok {
		version, ok, err = small(".data/version")
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fail("version", errors.New("record missing; torch.load requires it"))
	}
	if v, err := strconv.Atoi(strings.TrimSpace(version)); err != nil || v < 1 {
		return nil, fail("version", fmt.Errorf("malformed version %q", version))
	}
	if bo, ok, err := small("byteorder"); err != nil {
		return nil, err
	} else if ok && bo != "little" {
		return nil, fail("byteorder", fmt.Errorf("byte order %q is not supported, only little", bo))
	}

	pr := z.byName["data.pkl"]
	if pr == nil {
		return nil, fail("data.pkl", errors.New("record missing"))
	}
	if err := pr.checkCRC(data); err != nil {
		return nil, fail("data.pkl", err)
	}
	storages := map[string]*storageRef{}
	u := &unpickler{data: pr.bytes(data)}
	u.storage = func(pid Tuple) (*storageRef, error) {
		return f.persistentLoad(pid, storages)
	}
	root, err := u.run()
	if err != nil {
		var ea *errAt
		if errors.As(err, &ea) {
			return nil, &Error{File: path, Record: "data.pkl", Offset: int64(ea.off), Err: ea.err}
		}
		return nil, fail("data.pkl", err)
	}
	r := resolver{f: f, storages: u.storages, seen: map[any]bool{}}
	if err := r.walk(root, "", 0); err != nil {
		return nil, err
	}
	f.Root = root
	return f, nil
}

// persistentLoad resolves ('storage', type, key, location, numel).
func (f *File) persistentLoad(pid Tuple, storages map[string]*storageRef) (*storageRef, error) {
	if len(pid) != 5 {
		return nil, fmt.Errorf("persistent id is a %d-tuple, want ('storage', type, key, location, numel)", len(pid))
	}
	if s, ok := pid[0].(string); !ok || s != "storage" {
		kind := typeName(pid[0])
		if ok {
			kind = strconv.Quote(s)
		}
		return nil, fmt.Errorf("persistent id of kind %s, want 'storage'", kind)
	}
	g, ok := pid[1].(*global)
	if !ok || (g.kind != gStorage && g.kind != gUntypedStorage) {
		return nil, fmt.Errorf("persistent id storage type is a %s, want torch.<Type>Storage", typeName(pid[1]))
	}
	key, ok1 := pid[2].(string)
	loc, ok2 := pid[3].(string)
	numel, ok3 := pid[4].(int64)
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("persistent id (%s, %s, %s) wants (str, str, int)", typeName(pid[2]), typeName(pid[3]), typeName(pid[4]))
	}
	ref := &storageRef{key: key, location: loc, numel: numel}
	if g.kind == gStorage {
		ref.dtype = g.dtype
	}
	if prev := storages[key]; prev != nil {
		if prev.dtype != ref.dtype || prev.numel != ref.numel {
			return nil, fmt.Errorf("storage %q is declared twice with different types or sizes", key)
		}
		return prev, nil
	}
	rec := f.zip.byName["data/"+key]
	if rec == nil {
		return nil, fmt.Errorf("storage %q: record data/%s missing", key, key)
	}
	es := int64(1)
	if ref.dtype != tensor.Invalid {
		es = int64(ref.dtype.Size())
	}
	if numel < 0 || numel > rec.Size/es || numel*es != rec.Size {
		return nil, fmt.Errorf("storage %q of %d elements of %d bytes does not match record data/%s of %d bytes", key, numel, es, key, rec.Size)
	}
	storages[key] = ref
	return ref, nil
}

// resolver checks the unpickled tree and attaches tensor data.
type resolver struct {
	f        *File
	storages map[*Tensor]*storageRef
	seen     map[any]bool // containers and tensors already visited
}

func (r *resolver) walk(v any, path string, depth int) error {
	if depth > maxDepth {
		return &Error{File: r.f.Path, Record: "data.pkl", Offset: -1,
			Err: fmt.Errorf("%s: value nested deeper than %d levels (or cyclic)", pathOrRoot(path), maxDepth)}
	}
	switch v := v.(type) {
	case nil, bool, int64, float64, string:
		return nil
	case Tuple:
		// Tuples shared through the memo are walked once, like containers:
		// otherwise a chain of shared tuples takes exponential time.
		if len(v) == 0 || r.seen[&v[0]] {
			return nil
		}
		r.seen[&v[0]] = true
		for i, x := range v {
			if err := r.walk(x, joinPath(path, i), depth+1); err != nil {
				return err
			}
		}
	case *List:
		if r.seen[v] {
			return nil
		}
		r.seen[v] = true
		for i, x := range v.Items {
			if err := r.walk(x, joinPath(path, i), depth+1); err != nil {
				return err
			}
		}
	case *Dict:
		if r.seen[v] {
			return nil
		}
		r.seen[v] = true
		for _, it := range v.Items {
			if err := r.walk(it.Value, joinPath(path, it.Key), depth+1); err != nil {
				return err
			}
		}
		if v.Attrs != nil {
			if err := r.walk(v.Attrs, path+"/(attrs)", depth+1); err != nil {
				return err
			}
		}
	case *Tensor:
		if r.seen[v] {
			// The same tensor under another key: list it under this name
			// too. Each alias costs a memo fetch in the pickle, so their
			// number is bounded by its size.
			alias := *v
			alias.Name = path
			r.f.tensors = append(r.f.tensors, &alias)
			return nil
		}
		r.seen[v] = true
		return r.tensor(v, path)
	case *Object:
		if r.seen[v] {
			return nil
		}
		r.seen[v] = true
		if err := r.walk(v.Args, path+"/("+v.Class+")", depth+1); err != nil {
			return err
		}
		return r.walk(v.State, path+"/("+v.Class+" state)", depth+1)
	case *global:
		if v.kind == gDtype { // a torch dtype as a value, as in training arguments
			return nil
		}
		return &Error{File: r.f.Path, Record: "data.pkl", Offset: -1,
			Err: fmt.Errorf("%s: unexpected %s in the value tree", pathOrRoot(path), typeName(v))}
	default:
		return &Error{File: r.f.Path, Record: "data.pkl", Offset: -1,
			Err: fmt.Errorf("%s: unexpected %s in the value tree", pathOrRoot(path), typeName(v))}
	}
	return nil
}

func (r *resolver) tensor(t *Tensor, path string) error {
	t.Name = path
	st := r.storages[t]
	fail := func(format string, args ...any) error {
		return &Error{File: r.f.Path, Record: "data/" + t.Storage, Tensor: path, Offset: -1, Err: fmt.Errorf(format, args...)}
	}
	if st == nil {
		return fail("tensor without storage")
	}
	numel := t.Shape.NumElements()
	if numel < 0 {
		return fail("invalid shape %v", t.Shape)
	}
	if len(t.Stride) != len(t.Shape) {
		return fail("stride %v does not match shape %v", tensor.Shape(t.Stride), t.Shape)
	}
	if !isContiguous(t.Shape, t.Stride) {
		return fail("non-contiguous tensor (shape %v, stride %v, expected stride %v); only contiguous tensors are supported",
			t.Shape, tensor.Shape(t.Stride), tensor.Shape(contiguousStrides(t.Shape)))
	}
	es := int64(t.DType.Size())
	rec := r.f.zip.byName["data/"+st.key]
	if t.StorageOffset < 0 || numel > rec.Size/es || t.StorageOffset > rec.Size/es-numel {
		return fail("elements [%d, %d+%d) exceed the storage of %d bytes", t.StorageOffset, t.StorageOffset, numel, rec.Size)
	}
	start := rec.Offset + t.StorageOffset*es
	end := start + numel*es
	t.Data = r.f.data[start:end:end]
	r.f.tensors = append(r.f.tensors, t)
	return nil
}
