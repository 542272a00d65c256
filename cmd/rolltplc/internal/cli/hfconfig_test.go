package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// The diagnostics of check --hf-config on broken configs are tested by
// testdata/script/hfconfig.txtar.

// TestCheckRealConfigs checks each real config.json against the stdlib
// template of its model type: no errors.
func TestCheckRealConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../../../stdlib/testdata/hf-configs/*.json")
	if len(files) < 3 {
		t.Fatalf("found %d configs", len(files))
	}
	for _, f := range files {
		code, _, stderr := run(t, "", "check", "--hf-config", f)
		if code != ExitOK || strings.Contains(stderr, "error:") {
			t.Errorf("check --hf-config %s = %d:\n%s", f, code, stderr)
		}
	}
}
