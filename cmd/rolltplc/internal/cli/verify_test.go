package cli

import (
	"regexp"
	"strings"
	"testing"
)

// TestVerifyHelp: verify's help describes verify, not convert: its layout
// flags choose the intermediate MCA checkpoint (verify reads no
// mca_config.json), and nothing speaks of --to, --from or a destination.
func TestVerifyHelp(t *testing.T) {
	code, stdout, _ := run(t, "", "help", "verify")
	if code != ExitOK {
		t.Fatalf("help verify: exit %d", code)
	}
	for _, name := range []string{"tp", "pp", "vpp", "ep", "etp"} {
		line := regexp.MustCompile(`(?m)^\s+--` + name + ` N\s+(.*)$`).FindStringSubmatch(stdout)
		if line == nil {
			t.Errorf("no --%s in:\n%s", name, stdout)
			continue
		}
		if !strings.Contains(line[1], "intermediate MCA checkpoint") {
			t.Errorf("--%s: %q does not say it is the layout of the intermediate MCA checkpoint", name, line[1])
		}
	}
	for _, convertOnly := range []string{"mca_config.json", "--to", "--from", "destination", "MCA -> HF reads"} {
		if strings.Contains(stdout, convertOnly) {
			t.Errorf("help verify mentions %q, which is convert's:\n%s", convertOnly, stdout)
		}
	}
	if !strings.HasPrefix(stdout, "verify: ") || !strings.Contains(strings.SplitN(stdout, "\n", 2)[0], "compare") {
		t.Errorf("summary: %q", strings.SplitN(stdout, "\n", 2)[0])
	}
}
