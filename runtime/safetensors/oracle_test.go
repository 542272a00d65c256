package safetensors

// The header and index decoding of encoding/json that the single-pass
// decoder (jsondec.go) replaced, kept verbatim as the oracle of the
// differential fuzz targets in jsondec_test.go.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// oracleParseHeader is parseHeader before the single-pass decoder:
// encoding/json checks the whole header, then decodes it member by member.
func oracleParseHeader(path string, raw []byte, fileSize int64) (*Header, error) {
	h, err := oracleDecodeHeader(path, raw, fileSize)
	if err != nil {
		return nil, err
	}
	if err := h.validate(); err != nil {
		return nil, err
	}
	h.byName = make(map[string]int, len(h.Tensors))
	for i, t := range h.Tensors {
		h.byName[t.Name] = i
	}
	return h, nil
}

// oracleDecodeHeader is oracleParseHeader up to validation: the tensors
// in document order with their offsets still [begin, end) in Offset and
// Size, and no byName.
func oracleDecodeHeader(path string, raw []byte, fileSize int64) (*Header, error) {
	n := int64(len(raw))
	if err := checkHeaderStart(path, raw); err != nil {
		return nil, err
	}
	if off, err := checkJSON(raw); err != nil {
		return nil, fileErr(path, "header is not valid JSON: %v (at offset %d)", err, 8+off)
	}

	h := &Header{Path: path, HeaderLen: n, FileSize: fileSize}
	err := oracleEachMember(raw, func(key string, val json.RawMessage) error {
		if key == metadataKey {
			m, err := oracleParseMetadata(path, val)
			h.Metadata = m
			return err
		}
		t, err := oracleParseEntry(path, key, val)
		if err != nil {
			return err
		}
		h.Tensors = append(h.Tensors, t)
		return nil
	})
	if err != nil {
		var dup *oracleErrDuplicate
		var fe *FormatError
		switch {
		case errors.As(err, &fe):
			return nil, err
		case errors.As(err, &dup):
			if dup.key == metadataKey {
				return nil, fileErr(path, "%q appears more than once in the header", metadataKey)
			}
			return nil, tensorErr(path, dup.key, "appears more than once in the header")
		default:
			return nil, fileErr(path, "header %v", err)
		}
	}
	return h, nil
}

// oracleParseMetadata parses the value of "__metadata__": null or an object of
// strings.
func oracleParseMetadata(path string, val json.RawMessage) (map[string]string, error) {
	if jsonKind(val) == "null" {
		return nil, nil // serde reads null as an absent Option
	}
	m := make(map[string]string)
	err := oracleEachMember(val, func(k string, v json.RawMessage) error {
		s, err := oracleJSONString(v)
		if err != nil {
			return fileErr(path, "%s: value of key %q %v", metadataKey, k, err)
		}
		m[k] = s
		return nil
	})
	var dup *oracleErrDuplicate
	var fe *FormatError
	switch {
	case err == nil:
		return m, nil
	case errors.As(err, &fe):
		return nil, err
	case errors.As(err, &dup):
		return nil, fileErr(path, "%s: key %q appears more than once", metadataKey, dup.key)
	}
	return nil, fileErr(path, "%s %v", metadataKey, err)
}

// oracleParseEntry parses the header entry of tensor name. The offsets of the
// result are still relative to the data region.
func oracleParseEntry(path, name string, val json.RawMessage) (TensorInfo, error) {
	t := TensorInfo{Name: name}
	var haveDType, haveShape, haveOffsets bool
	var offsets []int64
	err := oracleEachMember(val, func(k string, v json.RawMessage) error {
		switch k {
		case "dtype":
			s, err := oracleJSONString(v)
			if err != nil {
				return tensorErr(path, name, "dtype %v", err)
			}
			if t.DType, err = tensor.ParseDType(s); err != nil {
				return tensorErr(path, name, "unknown dtype %q", s)
			}
			haveDType = true
		case "shape":
			dims, err := oracleJSONInts(v)
			if err != nil {
				return tensorErr(path, name, "shape %v", err)
			}
			t.Shape = tensor.Shape(dims)
			haveShape = true
		case "data_offsets":
			var err error
			if offsets, err = oracleJSONInts(v); err != nil {
				return tensorErr(path, name, "data_offsets %v", err)
			}
			if len(offsets) != 2 {
				return tensorErr(path, name, "data_offsets has %d elements, want [begin, end]", len(offsets))
			}
			haveOffsets = true
		}
		return nil // other keys are ignored, as in the reference
	})
	if err != nil {
		var dup *oracleErrDuplicate
		var fe *FormatError
		switch {
		case errors.As(err, &fe):
			return t, err
		case errors.As(err, &dup):
			return t, tensorErr(path, name, "key %q appears more than once in the entry", dup.key)
		default:
			return t, tensorErr(path, name, "entry %v", err)
		}
	}
	switch {
	case !haveDType:
		return t, tensorErr(path, name, `entry has no "dtype"`)
	case !haveShape:
		return t, tensorErr(path, name, `entry has no "shape"`)
	case !haveOffsets:
		return t, tensorErr(path, name, `entry has no "data_offsets"`)
	}
	t.Offset, t.Size = offsets[0], offsets[1] // fixed up by validate
	return t, nil
}

// oracleErrDuplicate is the error of oracleEachMember for a repeated key.
type oracleErrDuplicate struct{ key string }

func (e *oracleErrDuplicate) Error() string { return fmt.Sprintf("duplicate key %q", e.key) }

// oracleEachMember calls fn for every member of the JSON object raw, in document
// order. raw must already be known to be syntactically valid JSON (see
// checkJSON). It fails with *oracleErrDuplicate on a repeated key, and with a
// plain error if raw is not an object.
func oracleEachMember(raw []byte, fn func(key string, val json.RawMessage) error) error {
	if kind := jsonKind(raw); kind != "object" {
		return fmt.Errorf("is %s, want an object", article(kind))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // '{'
		return err
	}
	seen := make(map[string]struct{})
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("object key is %v, want a string", tok)
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return err
		}
		if _, dup := seen[key]; dup {
			return &oracleErrDuplicate{key}
		}
		seen[key] = struct{}{}
		if err := fn(key, val); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the object")
	}
	return nil
}

// oracleJSONString decodes raw, which must be a JSON string.
func oracleJSONString(raw []byte) (string, error) {
	if k := jsonKind(raw); k != "string" {
		return "", fmt.Errorf("is %s, want a string", article(k))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	return s, nil
}

// oracleJSONInts decodes raw, which must be a JSON array of non-negative
// integers that fit in an int64.
func oracleJSONInts(raw []byte) ([]int64, error) {
	if k := jsonKind(raw); k != "array" {
		return nil, fmt.Errorf("is %s, want an array of integers", article(k))
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, err
	}
	out := make([]int64, len(elems))
	for i, e := range elems {
		e = bytes.TrimSpace(e)
		n, err := strconv.ParseInt(string(e), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("element %d is %s, want a non-negative integer below 2^63", i, describe(e))
		}
		out[i] = n
	}
	return out, nil
}

// oracleParseIndex is ReadIndex before the single-pass decoder, without
// reading the file and checking the shards.
func oracleParseIndex(path string, raw []byte) (*Index, error) {
	if !utf8.Valid(raw) {
		return nil, fileErr(path, "index is not valid UTF-8")
	}
	if off, err := checkJSON(raw); err != nil {
		return nil, fileErr(path, "index is not valid JSON: %v (at offset %d)", err, off)
	}
	ix := &Index{Path: path}
	haveMap := false
	err := oracleEachMember(raw, func(key string, val json.RawMessage) error {
		switch key {
		case "metadata":
			return oracleIndexMetadata(ix, val)
		case "weight_map":
			haveMap = true
			return oracleIndexWeightMap(ix, val)
		}
		return nil
	})
	if err != nil {
		var fe *FormatError
		var dup *oracleErrDuplicate
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

	return ix, nil
}

func oracleIndexMetadata(ix *Index, val json.RawMessage) error {
	err := oracleEachMember(val, func(key string, v json.RawMessage) error {
		if key != "total_size" {
			return nil
		}
		if jsonKind(v) != "number" {
			return fileErr(ix.Path, "metadata.total_size is %s, want a number", article(jsonKind(v)))
		}
		var err error
		ix.TotalSize, err = totalSize(ix.Path, string(v))
		return err
	})
	var dup *oracleErrDuplicate
	if errors.As(err, &dup) {
		return fileErr(ix.Path, "metadata: key %q appears more than once", dup.key)
	}
	var fe *FormatError
	if err != nil && !errors.As(err, &fe) {
		return fileErr(ix.Path, "metadata %v", err)
	}
	return err
}

func oracleIndexWeightMap(ix *Index, val json.RawMessage) error {
	ix.WeightMap = make(map[string]string)
	err := oracleEachMember(val, func(name string, v json.RawMessage) error {
		s, err := oracleJSONString(v)
		if err != nil {
			return tensorErr(ix.Path, name, "weight_map entry %v", err)
		}
		ix.WeightMap[name] = s
		return nil
	})
	var dup *oracleErrDuplicate
	if errors.As(err, &dup) {
		return tensorErr(ix.Path, dup.key, "appears more than once in weight_map")
	}
	var fe *FormatError
	if err != nil && !errors.As(err, &fe) {
		return fileErr(ix.Path, "weight_map %v", err)
	}
	return err
}
