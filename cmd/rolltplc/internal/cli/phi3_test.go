package cli

import (
	"strings"
	"testing"
)

// TestCheckPhi3Example: `rolltplc check --hf-config` of the Phi-3 example
// (fused qkv_proj and gate_up_proj split by tensor steps) against the real
// Phi-3-mini and phi-4 config.json files exits 0 with no error and no warning but the
// schema hint its user schema answers once user schemas count for check.
func TestCheckPhi3Example(t *testing.T) {
	const dir = "../../../../examples/phi3/"
	for _, args := range [][]string{
		{"check", dir + "phi3.rolltpl"},
		{"check", "--hf-config", dir + "testdata/config.json", dir + "phi3.rolltpl"},
		{"check", "--hf-config", dir + "testdata/phi-4-config.json", dir + "phi3.rolltpl"},
	} {
		code, stdout, stderr := run(t, "", args...)
		if code != ExitOK || strings.Contains(stderr, "error") {
			t.Errorf("%v = %d:\n%s%s", args, code, stdout, stderr)
		}
		for _, line := range strings.Split(stdout+stderr, "\n") {
			if strings.Contains(line, "warning") && !strings.Contains(line, "no-schema") {
				t.Errorf("%v: %s", args, line)
			}
		}
	}
}
