package parser

import (
	"strings"
	"testing"
)

// BenchmarkLongString parses a declaration holding one 400 KB string
// literal; its time per byte must not grow with the literal's length.
func BenchmarkLongString(b *testing.B) {
	src := []byte("template t {\n    layer_prefix = \"" + strings.Repeat("x", 400<<10) + "\"\n}\n")
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, diags := ParseFile("long.rolltpl", src); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
}
