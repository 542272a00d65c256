package fnmatch

import "testing"

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		pat, name string
		want      bool
	}{
		{"vision_model.*", "vision_model.blocks.0.attn.qkv.weight", true},
		{"vision_model.*", "xvision_model.a", false},
		{".mlp.linear_fc1.weight", ".mlp.linear_fc1.weight", true},
		{".mlp.linear_fc1.weight", ".mlp.linear_fc1.weight2", false},
		{"a?c", "abc", true},
		{"[!x]b", "ab", true},
		{"[!x]b", "xb", false},
		{"a*", "a.b/c\nd", true},
		{"a**b", "a.x.b", true},
		{"a[[]b", "a[b", true},
		{"[a", "[a", true},
		{"a[]]", "a]", true},
		{"x.+", "x.+", true},
		{"x.+", "x.y", false},
	} {
		p, err := Compile(c.pat)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Match(c.name); got != c.want {
			t.Errorf("glob %q %q = %v", c.pat, c.name, got)
		}
	}
}
