package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/rolltpl/rolltpl/runtime/pyjson"
)

// errDuplicate is the error of eachMember for a repeated key.
type errDuplicate struct{ key string }

func (e *errDuplicate) Error() string { return fmt.Sprintf("duplicate key %q", e.key) }

// eachMember calls fn for every member of the JSON object raw, in document
// order. raw must already be known to be syntactically valid JSON (see
// checkJSON). It fails with *errDuplicate on a repeated key, and with a
// plain error if raw is not an object.
func eachMember(raw []byte, fn func(key string, val json.RawMessage) error) error {
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
			return &errDuplicate{key}
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

// checkJSON reports whether raw is one syntactically valid JSON value, and
// if not, the byte offset in raw where parsing failed.
func checkJSON(raw []byte) (offset int64, err error) {
	if json.Valid(raw) {
		return 0, nil
	}
	err = json.Unmarshal(raw, new(json.RawMessage))
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return syn.Offset, syn
	}
	if err == nil {
		err = errors.New("invalid JSON")
	}
	return 0, err
}

// jsonKind names the kind of the JSON value raw, for error messages.
func jsonKind(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// jsonString decodes raw, which must be a JSON string.
func jsonString(raw []byte) (string, error) {
	if k := jsonKind(raw); k != "string" {
		return "", fmt.Errorf("is %s, want a string", article(k))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	return s, nil
}

// jsonInts decodes raw, which must be a JSON array of non-negative
// integers that fit in an int64.
func jsonInts(raw []byte) ([]int64, error) {
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

// describe renders a short JSON value for an error message.
func describe(raw []byte) string {
	switch jsonKind(raw) {
	case "number", "boolean", "null":
		if len(raw) > 40 {
			return string(raw[:40]) + "..."
		}
		return string(raw)
	}
	return article(jsonKind(raw))
}

func article(kind string) string {
	switch kind {
	case "object", "array":
		return "an " + kind
	case "empty", "null":
		return kind
	}
	return "a " + kind
}

// appendQuoted appends s as a JSON string (see [pyjson.AppendString], the
// project's one JSON string quoter): with asciiOnly as Python's json.dumps
// writes it, otherwise as serde_json does. s must be valid UTF-8.
func appendQuoted(b []byte, s string, asciiOnly bool) []byte {
	return pyjson.AppendString(b, s, asciiOnly)
}
