package exec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLayerRanges: layer sets are written as ranges and read back; bad
// text and layers beyond the config are refused.
func TestLayerRanges(t *testing.T) {
	for _, c := range []struct {
		layers []int
		text   string
	}{
		{[]int{0}, "0"},
		{[]int{0, 1, 2, 3}, "0-3"},
		{[]int{0, 1, 3, 5, 6, 9}, "0-1,3,5-6,9"},
	} {
		if got := formatRanges(c.layers); got != c.text {
			t.Errorf("formatRanges(%v) = %q, want %q", c.layers, got, c.text)
		}
		back, err := parseRanges(c.text, 10)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c.layers, back); diff != "" {
			t.Errorf("parseRanges(%q) (-want +got):\n%s", c.text, diff)
		}
	}
	for _, c := range []struct{ text, want string }{
		{"", "bad layer"},
		{"x", "bad layer"},
		{"-1", "bad layer"},
		{"3-1", "bad layer range"},
		{"2-x", "bad layer range"},
		{"0-10", "beyond the 10 layers"},
		{"0-99999999999", "beyond the 10 layers"},
		{"0-9,0-9", "more layers than the 10"},
	} {
		if _, err := parseRanges(c.text, 10); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseRanges(%q) = %v, want an error with %q", c.text, err, c.want)
		}
	}
}

// TestAltGroups: ops sharing an MCA name form a group (named by its lowest
// op index), transitively; a per-layer variant side shares its op's index
// and makes no group by itself; ops without shared names are in none.
func TestAltGroups(t *testing.T) {
	mk := func(i int, mca ...string) *side { return &side{info: &opInfo{index: i, mca: mca}} }
	got := altGroups([]*side{
		mk(0, ".a"),
		mk(1, ".fc1"), mk(1, ".fc1"), // a variant of op 1
		mk(2, ".fc2"),
		mk(3, ".fc1"),
		mk(4, ".fc2", ".x"),
		mk(5, ".x"),
		mk(6, ".b"),
	})
	want := map[int]int{1: 1, 3: 1, 2: 2, 4: 2, 5: 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("altGroups (-want +got):\n%s", diff)
	}
}
