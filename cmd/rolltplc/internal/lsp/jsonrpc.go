package lsp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// JSON-RPC 2.0 and LSP error codes.
const (
	codeParseError           = -32700
	codeInvalidRequest       = -32600
	codeMethodNotFound       = -32601
	codeInvalidParams        = -32602
	codeInternalError        = -32603
	codeServerNotInitialized = -32002
	codeRequestFailed        = -32803
)

// rpcError is the error object of a response; handlers return it to choose
// the code, any other error becomes codeInternalError.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *rpcError) Error() string { return fmt.Sprintf("%s (%d)", e.Message, e.Code) }

func errorf(code int, format string, args ...any) *rpcError {
	return &rpcError{Code: code, Message: fmt.Sprintf(format, args...)}
}

const (
	// maxContentLength bounds one message body.
	maxContentLength = 64 << 20
	// maxHeaderLine bounds one header line; longer lines are garbage.
	maxHeaderLine = 8 << 10
	// headerMarker starts every frame; after garbage, reading resumes at the
	// next occurrence of it.
	headerMarker = "content-length:"
)

// frameError is malformed input that was skipped: the stream goes on.
type frameError struct{ msg string }

func (e *frameError) Error() string { return e.msg }

// frameReader reads Content-Length framed messages. It never trusts its
// input: a malformed header block, a bad length or bytes between frames are
// reported as a *frameError and reading resynchronises at the next
// "Content-Length:" header.
type frameReader struct {
	r   io.Reader
	buf []byte // read but not consumed
	err error  // sticky error of r
	tmp []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: r, tmp: make([]byte, 32<<10)}
}

func (fr *frameReader) fill() {
	if fr.err != nil {
		return
	}
	n, err := fr.r.Read(fr.tmp)
	fr.buf = append(fr.buf, fr.tmp[:n]...)
	if err != nil {
		fr.err = err
	}
}

// unread puts b back in front of the unread input.
func (fr *frameReader) unread(b []byte) {
	fr.buf = append(append([]byte(nil), b...), fr.buf...)
}

// readLine returns the next line without its "\n" or "\r\n". An overlong
// line is returned cut short with long set; if a frame header starts inside
// it, the line ends there so that the header is read next.
func (fr *frameReader) readLine() (line []byte, long bool, err error) {
	for {
		i := bytes.IndexByte(fr.buf, '\n')
		if i >= 0 && i <= maxHeaderLine {
			line = bytes.TrimSuffix(fr.buf[:i], []byte("\r"))
			line = append([]byte(nil), line...)
			fr.buf = fr.buf[i+1:]
			return line, false, nil
		}
		if i > maxHeaderLine || len(fr.buf) > maxHeaderLine {
			// Garbage without line breaks: skip to the next header, or
			// drop what we have but keep a tail in case a header
			// straddles the boundary.
			if j := indexFold(fr.buf[1:], headerMarker); j >= 0 {
				line = append([]byte(nil), fr.buf[:min(j+1, 80)]...)
				fr.buf = fr.buf[j+1:]
				return line, true, nil
			}
			keep := len(headerMarker) - 1
			line = append([]byte(nil), fr.buf[:80]...)
			fr.buf = append([]byte(nil), fr.buf[len(fr.buf)-keep:]...)
			for {
				k := bytes.IndexByte(fr.buf, '\n')
				scope := fr.buf
				if k >= 0 {
					scope = fr.buf[:k]
				}
				if j := indexFold(scope, headerMarker); j >= 0 {
					fr.buf = fr.buf[j:]
					return line, true, nil
				}
				if k >= 0 {
					fr.buf = fr.buf[k+1:]
					return line, true, nil
				}
				if len(fr.buf) > keep {
					fr.buf = append([]byte(nil), fr.buf[len(fr.buf)-keep:]...)
				}
				if fr.err != nil {
					return line, true, fr.err
				}
				fr.fill()
			}
		}
		if fr.err != nil {
			if len(fr.buf) > 0 {
				line, fr.buf = append([]byte(nil), fr.buf...), nil
				return line, false, io.ErrUnexpectedEOF
			}
			return nil, false, fr.err
		}
		fr.fill()
	}
}

// readN returns the next n bytes.
func (fr *frameReader) readN(n int) ([]byte, error) {
	for len(fr.buf) < n {
		if fr.err != nil {
			if fr.err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, fr.err
		}
		fr.fill()
	}
	body := append([]byte(nil), fr.buf[:n]...)
	fr.buf = fr.buf[n:]
	return body, nil
}

// next returns the body of the next frame. Malformed input is consumed and
// reported as a *frameError; any other error (io.EOF when the input ends
// between frames) is final.
func (fr *frameReader) next() ([]byte, error) {
	length := -1
	problem := ""
	started := false
	for {
		line, long, err := fr.readLine()
		if err != nil {
			if err == io.EOF && !started {
				return nil, io.EOF
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(line) == 0 && !long {
			if !started {
				continue // tolerate blank lines between frames
			}
			if problem != "" {
				return nil, &frameError{problem}
			}
			if length < 0 {
				return nil, &frameError{"frame header without Content-Length"}
			}
			body, err := fr.readN(length)
			if err == nil && !json.Valid(body) {
				// A wrong Content-Length can swallow the next frame: if a
				// header appears in the invalid body, resume there.
				if i := indexFold(body, headerMarker); i > 0 {
					fr.unread(body[i:])
					body = body[:i]
				}
			}
			return body, err
		}
		if i := indexFold(line, headerMarker); i > 0 && !long {
			// A header glued to garbage: it starts the next frame.
			fr.unread(append(line[i:], '\r', '\n'))
			if problem == "" {
				problem = fmt.Sprintf("malformed frame header %q", clip(line[:i]))
			}
			return nil, &frameError{problem}
		}
		name, value, ok := splitHeader(line)
		if long || !ok {
			if problem == "" {
				problem = fmt.Sprintf("malformed frame header %q", clip(line))
			}
			started = true
			continue
		}
		if strings.EqualFold(name, "Content-Length") && (problem != "" || length >= 0) {
			// A new frame starts before this one ended properly.
			fr.unread(append(line, '\r', '\n'))
			if problem == "" {
				problem = "frame header without body"
			}
			return nil, &frameError{problem}
		}
		started = true
		switch {
		case strings.EqualFold(name, "Content-Length"):
			n, err := strconv.Atoi(strings.TrimSpace(value))
			switch {
			case err != nil || n < 0:
				problem = fmt.Sprintf("invalid Content-Length %q", clip([]byte(value)))
			case n > maxContentLength:
				problem = fmt.Sprintf("Content-Length %d exceeds the limit of %d bytes", n, maxContentLength)
			default:
				length = n
			}
		default:
			// Content-Type and unknown headers are accepted and ignored.
		}
	}
}

// splitHeader splits "Name: value"; the name must be an HTTP token.
func splitHeader(line []byte) (name, value string, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", "", false
	}
	for _, c := range line[:i] {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return "", "", false
		}
	}
	return string(line[:i]), string(line[i+1:]), true
}

// indexFold returns the index of the ASCII pattern pat (lower case) in b,
// ignoring case, or -1.
func indexFold(b []byte, pat string) int {
	for i := 0; i+len(pat) <= len(b); i++ {
		j := 0
		for j < len(pat) {
			c := b[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != pat[j] {
				break
			}
			j++
		}
		if j == len(pat) {
			return i
		}
	}
	return -1
}

func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// incoming is a validated message from the client.
type incoming struct {
	// ID is the raw request id; nil for a notification.
	ID     json.RawMessage
	Method string
	Params json.RawMessage
	// Response is set for responses to requests of ours (we send none).
	Response bool
}

var nullID = json.RawMessage("null")

// decodeMessage validates a message body. On failure it returns the error
// to answer with and the id to answer to (null when unknown); answer is
// false when the message is a notification, which is never answered.
func decodeMessage(body []byte) (msg *incoming, rerr *rpcError, id json.RawMessage, answer bool) {
	if !json.Valid(body) {
		return nil, errorf(codeParseError, "parse error: the message is not valid JSON"), nullID, true
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, errorf(codeInvalidRequest, "invalid request: a message must be a JSON object (batches are not supported)"), nullID, true
	}
	rawID, hasID := fields["id"]
	id = nullID
	idOK := false
	if hasID {
		switch t := bytes.TrimSpace(rawID); {
		case len(t) > 0 && t[0] == '"':
			var s string
			idOK = json.Unmarshal(t, &s) == nil
		case len(t) > 0 && (t[0] == '-' || ('0' <= t[0] && t[0] <= '9')):
			var n json.Number
			idOK = json.Unmarshal(t, &n) == nil
		}
		if idOK {
			id = append(json.RawMessage(nil), bytes.TrimSpace(rawID)...)
		}
	}
	var method string
	rawMethod, hasMethod := fields["method"]
	methodOK := hasMethod && json.Unmarshal(rawMethod, &method) == nil && method != ""
	_, hasResult := fields["result"]
	_, hasError := fields["error"]
	if !hasMethod && hasID && (hasResult || hasError) {
		return &incoming{ID: id, Response: true}, nil, nil, false
	}
	notification := !hasID && methodOK
	var version string
	if raw, ok := fields["jsonrpc"]; !ok || json.Unmarshal(raw, &version) != nil || version != "2.0" {
		return nil, errorf(codeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`), id, !notification
	}
	if !methodOK {
		return nil, errorf(codeInvalidRequest, `invalid request: "method" must be a non-empty string`), id, true
	}
	if hasID && !idOK {
		return nil, errorf(codeInvalidRequest, `invalid request: "id" must be a number or a string`), nullID, true
	}
	params := fields["params"]
	if t := bytes.TrimSpace(params); len(t) > 0 && t[0] != '{' && t[0] != '[' && !bytes.Equal(t, []byte("null")) {
		return nil, errorf(codeInvalidRequest, `invalid request: "params" must be an object or an array`), id, !notification
	}
	m := &incoming{Method: method, Params: params}
	if hasID {
		m.ID = id
	}
	return m, nil, nil, false
}

// frameWriter writes framed messages; header and body go out in one Write
// under a mutex.
type frameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

type responseOK struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	// Result is always present, "null" included: a success response
	// without "result" is invalid.
	Result json.RawMessage `json:"result"`
}

type responseErr struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   *rpcError       `json:"error"`
}

type notification struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func (fw *frameWriter) write(v any) error {
	body, err := marshal(v)
	if err != nil {
		return err
	}
	frame := make([]byte, 0, len(body)+32)
	frame = fmt.Appendf(frame, "Content-Length: %d\r\n\r\n", len(body))
	frame = append(frame, body...)
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.err != nil {
		return fw.err
	}
	if _, err := fw.w.Write(frame); err != nil {
		fw.err = err
	}
	return fw.err
}

func (fw *frameWriter) reply(id json.RawMessage, result any) error {
	raw, err := marshal(result)
	if err != nil {
		return fw.replyErr(id, errorf(codeInternalError, "cannot encode the result: %v", err))
	}
	return fw.write(responseOK{JSONRPC: "2.0", ID: id, Result: raw})
}

func (fw *frameWriter) replyErr(id json.RawMessage, e *rpcError) error {
	if id == nil {
		id = nullID
	}
	return fw.write(responseErr{JSONRPC: "2.0", ID: id, Error: e})
}

func (fw *frameWriter) notify(method string, params any) error {
	return fw.write(notification{JSONRPC: "2.0", Method: method, Params: params})
}
