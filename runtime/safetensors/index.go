package safetensors

import (
	"encoding/json"
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
	var shards []string
	for _, s := range ix.WeightMap {
		shards = append(shards, s)
	}
	slices.Sort(shards)
	return slices.Compact(shards)
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
	if !utf8.Valid(raw) {
		return nil, fileErr(path, "index is not valid UTF-8")
	}
	if off, err := checkJSON(raw); err != nil {
		return nil, fileErr(path, "index is not valid JSON: %v (at offset %d)", err, off)
	}
	ix := &Index{Path: path}
	haveMap := false
	err = eachMember(raw, func(key string, val json.RawMessage) error {
		switch key {
		case "metadata":
			return ix.parseMetadata(val)
		case "weight_map":
			haveMap = true
			return ix.parseWeightMap(val)
		}
		return nil
	})
	if err != nil {
		var fe *FormatError
		var dup *errDuplicate
		switch {
		case errors.As(err, &fe):
			return nil, err
		case errors.As(err, &dup):
			return nil, fileErr(path, "key %q appears more than once", dup.key)
		}
		return nil, fileErr(path, "index %v", err)
	}
	if !haveMap {
		return nil, fileErr(path, `index has no "weight_map"`)
	}
	if len(ix.WeightMap) == 0 {
		return nil, fileErr(path, `"weight_map" is empty`)
	}

	// One tensor per shard for error messages: the first by name.
	names := make([]string, 0, len(ix.WeightMap))
	for name := range ix.WeightMap {
		names = append(names, name)
	}
	slices.Sort(names)
	checked := make(map[string]bool)
	dir := filepath.Dir(path)
	for _, name := range names {
		shard := ix.WeightMap[name]
		if checked[shard] {
			continue
		}
		checked[shard] = true
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

func (ix *Index) parseMetadata(val json.RawMessage) error {
	err := eachMember(val, func(key string, v json.RawMessage) error {
		if key != "total_size" {
			return nil
		}
		if jsonKind(v) != "number" {
			return fileErr(ix.Path, "metadata.total_size is %s, want a number", article(jsonKind(v)))
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			// Accept an integral float such as 1.5e10 or 123.0.
			f, ferr := strconv.ParseFloat(string(v), 64)
			if ferr != nil || f != math.Trunc(f) || f > 1<<53 {
				return fileErr(ix.Path, "metadata.total_size is %s, want a non-negative integer", v)
			}
			n = int64(f)
		}
		if n < 0 {
			return fileErr(ix.Path, "metadata.total_size is %s, want a non-negative integer", v)
		}
		ix.TotalSize = n
		return nil
	})
	var dup *errDuplicate
	if errors.As(err, &dup) {
		return fileErr(ix.Path, "metadata: key %q appears more than once", dup.key)
	}
	var fe *FormatError
	if err != nil && !errors.As(err, &fe) {
		return fileErr(ix.Path, "metadata %v", err)
	}
	return err
}

func (ix *Index) parseWeightMap(val json.RawMessage) error {
	ix.WeightMap = make(map[string]string)
	err := eachMember(val, func(name string, v json.RawMessage) error {
		s, err := jsonString(v)
		if err != nil {
			return tensorErr(ix.Path, name, "weight_map entry %v", err)
		}
		ix.WeightMap[name] = s
		return nil
	})
	var dup *errDuplicate
	if errors.As(err, &dup) {
		return tensorErr(ix.Path, dup.key, "appears more than once in weight_map")
	}
	var fe *FormatError
	if err != nil && !errors.As(err, &fe) {
		return fileErr(ix.Path, "weight_map %v", err)
	}
	return err
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
