package safetensors

import (
	"fmt"
	"strconv"
)

// A FormatError reports a malformed safetensors file or index. Its message
// names the file and, when the problem concerns one tensor, the tensor:
//
//	model-00001.safetensors: tensor "w": data_offsets [0, 10] do not match shape [2, 3] BF16 (12 bytes)
type FormatError struct {
	Path   string // the file as it was passed in
	Tensor string // the tensor concerned, or "" for a file-level problem
	Msg    string // what is wrong, including offsets where they matter
}

func (e *FormatError) Error() string {
	if e.Tensor == "" {
		return e.Path + ": " + e.Msg
	}
	return e.Path + ": tensor " + strconv.Quote(e.Tensor) + ": " + e.Msg
}

func fileErr(path, format string, args ...any) error {
	return &FormatError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

func tensorErr(path, name, format string, args ...any) error {
	return &FormatError{Path: path, Tensor: name, Msg: fmt.Sprintf(format, args...)}
}
