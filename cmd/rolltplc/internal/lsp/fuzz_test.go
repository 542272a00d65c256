package lsp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"
)

// FuzzGarbageThenRequest feeds arbitrary bytes, then a valid request. The
// server must neither panic nor stop, and when the garbage holds no frame
// header of its own (which could legitimately claim the bytes after it),
// the request must get its answer.
func FuzzGarbageThenRequest(f *testing.F) {
	for _, s := range []string{
		"", "\r\n", "garbage\r\n\r\n", "X: y\r\n", "%%%%", "\x00\xff\xfe", "{\"jsonrpc\":\"2.0\"}",
		"Content-Type: text/plain\r\n\r\n", "Content-Length\r\n", "content-lengt", "a:b\r\nc\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	body := `{"jsonrpc":"2.0","id":99,"method":"initialize","params":{"capabilities":{}}}`
	valid := fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
	f.Fuzz(func(t *testing.T, garbage []byte) {
		var out bytes.Buffer
		in := append(append([]byte(nil), garbage...), valid...)
		New(Options{}).Serve(bytes.NewReader(in), &out)
		if indexFold(garbage, headerMarker) >= 0 {
			return
		}
		fr := newFrameReader(&out)
		var last []byte
		for {
			b, err := fr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("server output is not frames: %v", err)
			}
			last = b
		}
		var m struct {
			ID     json.RawMessage
			Result json.RawMessage
		}
		if err := json.Unmarshal(last, &m); err != nil || string(m.ID) != "99" || len(m.Result) == 0 {
			t.Fatalf("the request after %q was not answered; last message %s", garbage, last)
		}
	})
}
