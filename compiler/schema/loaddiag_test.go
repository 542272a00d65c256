package schema

import (
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/parser"
)

// TestUnknownType: in schemas loaded on their own (Load), a field of a
// type that is neither a basic type nor a schema, also as the element of a
// list, is an unknown-type error on its line naming the type; the known
// types are not.
func TestUnknownType(t *testing.T) {
	const src = "schema widget {\n    size: integer\n    parts: list[gear]\n    name: str\n    sub: widget?\n}\n"
	f, pd := parser.ParseFile("a.rolltpl", []byte(src))
	if len(pd) != 0 {
		t.Fatal(pd)
	}
	_, diags := Load([]Source{{File: f, Src: []byte(src)}})
	want := map[int]string{2: `"integer"`, 3: `"gear"`}
	for _, d := range diags {
		line := d.Subject.Start.Line
		if d.Code != diag.UnknownType || d.Severity != diag.Error || !strings.Contains(d.Detail, want[line]) || want[line] == "" {
			t.Errorf("unexpected %v", d)
			continue
		}
		delete(want, line)
	}
	for line, typ := range want {
		t.Errorf("line %d: no %s for type %s", line, diag.UnknownType, typ)
	}
}
