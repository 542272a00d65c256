package pyjson

import (
	"os/exec"
	"strings"
	"testing"
)

func TestPyFloatRepr(t *testing.T) {
	for f, want := range map[float64]string{1e-05: "1e-05", 0.0001: "0.0001", 500000: "500000.0", 1e16: "1e+16",
		1e15: "1000000000000000.0", 0.1: "0.1", 1.5e-07: "1.5e-07", 123.456: "123.456", 2.5e20: "2.5e+20"} {
		if got := pyFloatRepr(f); got != want {
			t.Errorf("pyFloatRepr(%v) = %q, want %q", f, got, want)
		}
	}
}

func TestPyJSON(t *testing.T) {
	in := `{"b": [1, 2.0, 1e-06, 1E5, -0.0, 0.0001, 1e16, 1e15, 123456789012345678901234567890, 3.14159265358979],
"a": {"z": "tab\tquote\" back\\ nl\n é 😀 \u007f \u0001 / <>&", "y": null, "x": true, "w": {}, "v": []}, "a2": 2}`
	v, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	got := string(Encode(v, 2, true))
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 to compare with")
	}
	cmd := exec.Command(py, "-c", "import json, sys; print(json.dumps(json.loads(sys.stdin.read()), indent=2, sort_keys=True), end='')")
	cmd.Stdin = strings.NewReader(in)
	want, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("Encode differs from json.dumps:\n%s\n---\n%s", got, want)
	}
	// Key order is kept without sorting; repeated keys keep their first
	// place and last value, as json.loads does.
	o, _ := ParseObject([]byte(`{"z": 1, "a": 2, "z": 3}`))
	if got := string(Encode(o, -1, false)); got != `{"z": 3, "a": 2}` {
		t.Errorf("order: %s", got)
	}
	for _, bad := range []string{`{"a": 1`, `{"a": 1} x`, `[1,]`, ``} {
		if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "at byte") {
			t.Errorf("Parse(%q): %v", bad, err)
		}
	}
}
