package langtest

import (
	"bytes"
	"fmt"
	"io/fs"
	"regexp"
)

// declName matches a declaration header's name (`template llama {`,
// `config llama_core {`) and a `use NAME` reference.
var declName = regexp.MustCompile(`(?m)^((?:template|config|mca|weights|parallel) +)([A-Za-z_][A-Za-z0-9_]*)( *\{)|(\buse +)([A-Za-z_][A-Za-z0-9_]*)`)

// BigFile returns a .rolltpl file of at least size bytes made of copies of
// the stdlib template file name (read from lib), each copy's own
// declarations renamed NAME_i so that they do not clash; the imports of the
// original come once at the top, and the copies are separated by one
// blank line, so that a formatted original gives a formatted file. It is
// the input of the front end's size benchmarks.
func BigFile(lib fs.FS, name string, size int) ([]byte, error) {
	src, err := fs.ReadFile(lib, name)
	if err != nil {
		return nil, err
	}
	var head, body bytes.Buffer
	for _, line := range bytes.SplitAfter(src, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("import ")) {
			head.Write(line)
		} else if head.Len() > 0 || !bytes.HasPrefix(line, []byte("#")) {
			body.Write(line)
		}
	}
	trimmed := bytes.TrimLeft(body.Bytes(), "\n")
	body.Reset()
	body.Write(trimmed)
	own := map[string]bool{}
	for _, m := range declName.FindAllSubmatch(body.Bytes(), -1) {
		if len(m[2]) > 0 {
			own[string(m[2])] = true
		}
	}
	out := bytes.NewBuffer(make([]byte, 0, size+body.Len()))
	out.Write(head.Bytes())
	for i := 0; out.Len() < size; i++ {
		out.WriteString("\n")
		out.Write(declName.ReplaceAllFunc(body.Bytes(), func(m []byte) []byte {
			s := declName.FindSubmatch(m)
			if len(s[2]) > 0 {
				return fmt.Appendf(nil, "%s%s_%d%s", s[1], s[2], i, s[3])
			}
			if own[string(s[5])] {
				return fmt.Appendf(nil, "%s%s_%d", s[4], s[5], i)
			}
			return m
		}))
	}
	return out.Bytes(), nil
}
