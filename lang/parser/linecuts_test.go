package parser

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLineCuts: a cut is the start of the line of a declaration that
// begins with its keyword, with only white space before it on its line,
// on a later line than the end of the previous declaration.
func TestLineCuts(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []int
	}{
		{"empty", "", nil},
		{"first at start", "config a {}\n", nil},
		{"after BOM", "\uFEFFconfig a {}\n", nil},
		{"after a comment", "# c\nconfig a {}\n", []int{4}},
		{"two", "config a {}\nconfig b {}\n", []int{12}},
		{"indented", "config a {}\n  config b {}\n", []int{12}},
		{"same line", "config a {} config b {}\nconfig c {}\n", []int{24}},
		{"trailing comment stays before", "config a {} # x\n\n# y\nconfig b {}\n", []int{21}},
		{"multi-line decl", "config a {\n  x -> y\n}\nconfig b {}\n", []int{22}},
		{"not a keyword", "config a {}\n}\nconfig b {}\n", []int{14}},
		{"stray token", "config a {}\n%\nconfig b {}\n", []int{14}},
		{"BOM mid-file", "config a {}\n\uFEFF\nconfig b {}\n", []int{16}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, LineCuts([]byte(tt.src))); diff != "" {
				t.Errorf("LineCuts(%q) (-want +got):\n%s", tt.src, diff)
			}
		})
	}
}
