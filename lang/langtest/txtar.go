// Package langtest holds test helpers shared by the lang packages: a reader
// and writer for txtar archives, and [Run], a golden-file runner whose
// expected sections are rewritten in place when the environment variable
// ROLLTPL_UPDATE is 1.
//
// A txtar archive is a comment followed by sections, each introduced by a
// marker line `-- NAME --`:
//
//	a comment, ignored
//	-- input --
//	config llm { use a }
//	-- golden --
//	config llm { use a }
//
// A section holds the lines up to the next marker; its data always ends in a
// newline unless it is empty.
package langtest

import (
	"bytes"
	"strings"
)

// Archive is a parsed txtar file.
type Archive struct {
	Comment []byte
	Files   []File
}

// File is one section of an archive.
type File struct {
	Name string
	Data []byte
}

// Parse parses a txtar archive. It never fails: text before the first marker
// is the comment.
func Parse(data []byte) *Archive {
	a := &Archive{}
	var cur *File
	for len(data) > 0 {
		line := data
		rest := []byte(nil)
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, rest = data[:i+1], data[i+1:]
		}
		data = rest
		if name, ok := marker(line); ok {
			a.Files = append(a.Files, File{Name: name})
			cur = &a.Files[len(a.Files)-1]
			continue
		}
		if cur == nil {
			a.Comment = append(a.Comment, line...)
		} else {
			cur.Data = append(cur.Data, line...)
		}
	}
	return a
}

// marker reports whether line is `-- NAME --` and returns NAME.
func marker(line []byte) (string, bool) {
	s := strings.TrimRight(string(line), "\r\n")
	if !strings.HasPrefix(s, "-- ") || !strings.HasSuffix(s, " --") || len(s) < 6 {
		return "", false
	}
	name := strings.TrimSpace(s[3 : len(s)-3])
	return name, name != ""
}

// Format returns the text of a, adding a final newline to the comment and to
// each section that lacks one.
func Format(a *Archive) []byte {
	var b bytes.Buffer
	b.Write(fixNL(a.Comment))
	for _, f := range a.Files {
		b.WriteString("-- " + f.Name + " --\n")
		b.Write(fixNL(f.Data))
	}
	return b.Bytes()
}

func fixNL(data []byte) []byte {
	if len(data) == 0 || data[len(data)-1] == '\n' {
		return data
	}
	return append(append([]byte(nil), data...), '\n')
}

// Get returns the data of section name.
func (a *Archive) Get(name string) ([]byte, bool) {
	for _, f := range a.Files {
		if f.Name == name {
			return f.Data, true
		}
	}
	return nil, false
}

// Set replaces the data of section name, appending the section if a has
// none of that name.
func (a *Archive) Set(name string, data []byte) {
	for i := range a.Files {
		if a.Files[i].Name == name {
			a.Files[i].Data = data
			return
		}
	}
	a.Files = append(a.Files, File{Name: name, Data: data})
}
