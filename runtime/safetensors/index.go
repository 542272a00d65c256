package safetensors

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/rolltpl/rolltpl/lang/srcfile"
)

// File names of a Hugging Face model directory.
const (
	SingleFileName = "model.safetensors"
	IndexFileName  = "model.safetensors.index.json"
)

// maxIndexSize bounds the index file read into memory, like
// MaxHeaderSize bounds a header: an index lists each tensor name once.
const maxIndexSize = MaxHeaderSize

// Index is a parsed model.safetensors.index.json:
//
//	{"metadata": {"total_size": N}, "weight_map": {"tensor name": "shard file name", ...}}
type Index struct {
	Path string // the index file as it was passed to ReadIndex
	// TotalSize is metadata.total_size, the sum of the tensors' byte sizes
	// as recorded by the writer (0 if absent). It is not checked against
	// the shards: some writers count tied weights differently.
	TotalSize int64
	// WeightMap maps each tensor name to the file name of its shard,
	// relative to the directory of the index.
	WeightMap map[string]string
}

// Shards returns the distinct shard file names of the index, sorted.
func (ix *Index) Shards() []string {
	seen := make(map[string]bool)
	var shards []string
	for _, s := range ix.WeightMap {
		if !seen[s] {
			seen[s] = true
			shards = append(shards, s)
		}
	}
	slices.Sort(shards)
	return shards
}

// ReadIndex reads and validates the sharded-checkpoint index at path. The
// index must be a JSON object with a non-empty "weight_map" object of
// strings; "metadata" is optional and its "total_size", if present, must be
// a non-negative integer; other keys are ignored. Every shard name must be
// a local relative path (no "..", not absolute) to an existing regular
// file in the directory of the index; a missing shard is reported together
// with a tensor that it should hold.
func ReadIndex(path string) (*Index, error) {
	raw, err := srcfile.ReadFileMax(path, maxIndexSize)
	if err != nil {
		return nil, err
	}
	ix, err := parseIndex(path, raw)
	if err != nil {
		return nil, err
	}

	// One tensor per shard for error messages: the first by name.
	first := make(map[string]string) // shard -> its first tensor
	for name, shard := range ix.WeightMap {
		if f, ok := first[shard]; !ok || name < f {
			first[shard] = name
		}
	}
	names := make([]string, 0, len(first))
	for _, name := range first {
		names = append(names, name)
	}
	slices.Sort(names)
	dir := filepath.Dir(path)
	for _, name := range names {
		shard := ix.WeightMap[name]
		if !filepath.IsLocal(shard) {
			return nil, tensorErr(path, name, "shard %q is not a relative path inside the model directory", shard)
		}
		st, err := os.Stat(filepath.Join(dir, shard))
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, tensorErr(path, name, "shard %q does not exist", shard)
		case err != nil:
			return nil, tensorErr(path, name, "shard %q: %v", shard, err)
		case !st.Mode().IsRegular():
			return nil, tensorErr(path, name, "shard %q is not a regular file", shard)
		}
	}
	return ix, nil
}

// parseIndex decodes the index file contents raw in one pass (see
// [decoder]) and checks everything ReadIndex checks but the shard files.
// A syntax error anywhere wins over the first other problem in document
// order, as when the whole index was checked before it was decoded.
func parseIndex(path string, raw []byte) (*Index, error) {
	if !utf8.Valid(raw) {
		return nil, fileErr(path, "index is not valid UTF-8")
	}
	ix := &Index{Path: path}
	haveMap, err := ix.decode(raw)
	if err != nil {
		if off, serr := checkJSON(raw); serr != nil {
			return nil, fileErr(path, "index is not valid JSON: %v (at offset %d)", serr, off)
		}
		if err == errSyntax { // the decoder and encoding/json disagree: a bug
			return nil, fileErr(path, "index is not valid JSON")
		}
		return nil, err
	}
	if !haveMap {
		return nil, fileErr(path, `index has no "weight_map"`)
	}
	if len(ix.WeightMap) == 0 {
		return nil, fileErr(path, `"weight_map" is empty`)
	}
	return ix, nil
}

// decode decodes the members of the index raw and reports whether it has
// a "weight_map".
func (ix *Index) decode(raw []byte) (haveMap bool, err error) {
	d := &decoder{b: raw}
	d.ws()
	if d.peek() != '{' {
		if d.i == len(raw) {
			return false, errSyntax
		}
		return false, fileErr(ix.Path, "index is %s, want an object", article(d.kind()))
	}
	var keys keySet
	err = d.object(func(key []byte) error {
		if keys.add(key) {
			return fileErr(ix.Path, "key %q appears more than once", key)
		}
		switch string(key) {
		case "metadata":
			return ix.decodeMetadata(d)
		case "weight_map":
			haveMap = true
			return ix.decodeWeightMap(d)
		}
		return d.skip()
	})
	if err != nil {
		return haveMap, err
	}
	return haveMap, d.end()
}

// decodeMetadata decodes the value of "metadata": an object whose
// "total_size", if present, is a non-negative integer (an integral float
// such as 1.5e10 or 123.0 is accepted); other keys are ignored.
func (ix *Index) decodeMetadata(d *decoder) error {
	if d.peek() != '{' {
		return fileErr(ix.Path, "metadata is %s, want an object", article(d.kind()))
	}
	var keys keySet
	return d.object(func(key []byte) error {
		if keys.add(key) {
			return fileErr(ix.Path, "metadata: key %q appears more than once", key)
		}
		if string(key) != "total_size" {
			return d.skip()
		}
		if !d.isNumber() {
			return fileErr(ix.Path, "metadata.total_size is %s, want a number", article(d.kind()))
		}
		tok, err := d.number()
		if err != nil {
			return err
		}
		ix.TotalSize, err = totalSize(ix.Path, string(tok))
		return err
	})
}

// totalSize parses v, the JSON number of metadata.total_size: a
// non-negative integer, or an integral float such as 1.5e10 or 123.0.
func totalSize(path, v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || f != math.Trunc(f) || f > 1<<53 {
			return 0, fileErr(path, "metadata.total_size is %s, want a non-negative integer", v)
		}
		n = int64(f)
	}
	if n < 0 {
		return 0, fileErr(path, "metadata.total_size is %s, want a non-negative integer", v)
	}
	return n, nil
}

// decodeWeightMap decodes the value of "weight_map", an object of
// strings. The few distinct shard names are stored once each.
func (ix *Index) decodeWeightMap(d *decoder) error {
	if d.peek() != '{' {
		return fileErr(ix.Path, "weight_map is %s, want an object", article(d.kind()))
	}
	// Entries of real indexes take 80 to 200 bytes; the map grows if they
	// are shorter.
	ix.WeightMap = make(map[string]string, len(d.b)/128)
	shards := make(map[string]string)
	return d.object(func(key []byte) error {
		name := string(key)
		if _, dup := ix.WeightMap[name]; dup {
			return tensorErr(ix.Path, name, "appears more than once in weight_map")
		}
		if d.peek() != '"' {
			return tensorErr(ix.Path, name, "weight_map entry is %s, want a string", article(d.kind()))
		}
		v, err := d.str()
		if err != nil {
			return err
		}
		shard, ok := shards[string(v)]
		if !ok {
			shard = string(v)
			shards[shard] = shard
		}
		ix.WeightMap[name] = shard
		return nil
	})
}

// WriteIndex writes a model.safetensors.index.json at path (through
// path+".tmp" and a rename) byte for byte as Hugging Face writes it:
// json.dumps(index, indent=2, sort_keys=True) plus a newline, with
// non-ASCII characters escaped as \uXXXX.
func WriteIndex(path string, weightMap map[string]string, totalSize int64) error {
	names := make([]string, 0, len(weightMap))
	for name, shard := range weightMap {
		if !utf8.ValidString(name) || !utf8.ValidString(shard) {
			return fmt.Errorf("safetensors: weight map entry %q: %q is not valid UTF-8", name, shard)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	b := []byte("{\n  \"metadata\": {\n    \"total_size\": ")
	b = strconv.AppendInt(b, totalSize, 10)
	b = append(b, "\n  },\n  \"weight_map\": {"...)
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n    "...)
		b = appendQuoted(b, name, true)
		b = append(b, ": "...)
		b = appendQuoted(b, weightMap[name], true)
	}
	if len(names) > 0 {
		b = append(b, "\n  "...)
	}
	b = append(b, "}\n}\n"...)

	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
