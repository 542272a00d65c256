package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/rolltpl/rolltpl/runtime/pyjson"
)

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
