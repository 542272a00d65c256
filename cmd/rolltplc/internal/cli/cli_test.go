package cli

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

// The CLI's behaviour (usage, help, version, exit codes, fmt, check and
// build output) is tested by the scripts in testdata/script (TestScripts);
// the Go tests here cover what a script cannot reach.

func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// TestVersionText: version prints the module version and the VCS stamp of
// the build information (a test binary has none, so the script only sees
// the fallback).
func TestVersionText(t *testing.T) {
	plat := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name    string
		info    *debug.BuildInfo
		version string
		want    string
	}{
		{"stamped", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Path: "github.com/rolltpl/rolltpl", Version: "v0.2.0"},
			Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef"},
				{Key: "vcs.time", Value: "2026-12-02T18:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}, "",
			"rolltplc v0.2.0\nmodule   github.com/rolltpl/rolltpl\nrevision 0123456789abcdef 2026-12-02T18:00:00Z (modified)\ngo       go1.26.1 " + plat + "\n"},
		{"clean tree", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Path: "github.com/rolltpl/rolltpl", Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "fedcba"}, {Key: "vcs.modified", Value: "false"}}}, "",
			"rolltplc (devel)\nmodule   github.com/rolltpl/rolltpl\nrevision fedcba\ngo       go1.26.1 " + plat + "\n"},
		{"ldflags", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Path: "github.com/rolltpl/rolltpl", Version: "(devel)"}}, "v1.0.0",
			"rolltplc v1.0.0\nmodule   github.com/rolltpl/rolltpl\nrevision unknown\ngo       go1.26.1 " + plat + "\n"},
		{"no build info", nil, "",
			"rolltplc (devel)\nmodule   github.com/rolltpl/rolltpl\nrevision unknown\ngo       " + runtime.Version() + " " + plat + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(v string) { Version = v }(Version)
			Version = tc.version
			if diff := cmp.Diff(tc.want, versionText(tc.info)); diff != "" {
				t.Errorf("version (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFlagUsages: booleans print bare, values with their name from the
// usage line (else N for numbers), non-zero defaults at the end, a
// true-by-default boolean with how to turn it off.
func TestFlagUsages(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.BoolP("write", "w", false, "write files")
	fs.Bool("on", true, "on by default")
	fs.Int("tp", 1, "tensor parallel size")
	fs.Int("ep", 0, "expert parallel size")
	fs.StringP("output", "o", "out", "output folder")
	fs.String("diags", "text", "format")
	fs.String("free", "", "a string")
	got := flagUsages(fs, "rolltplc x [-o DIR] [--diags=text|json]")
	want := `      --diags text|json   format (default "text")
      --ep N              expert parallel size
      --free string       a string
      --on                on by default (default true; --on=false turns it off)
  -o, --output DIR        output folder (default "out")
      --tp N              tensor parallel size (default 1)
  -w, --write             write files
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("flag usages (-want +got):\n%s", diff)
	}
}

// TestHelpListsEveryFlag: help CMD shows every flag each command defines,
// and none as pflag's `[=true|false]`.
func TestHelpListsEveryFlag(t *testing.T) {
	for _, c := range commands {
		if c.name == "help" || c.name == "version" {
			continue
		}
		fe := &env{flagsOnly: true}
		c.run(fe, nil)
		if fe.flags == nil {
			t.Errorf("%s: no flag set recorded", c.name)
			continue
		}
		code, stdout, stderr := run(t, "", "help", c.name)
		if code != ExitOK || stderr != "" {
			t.Errorf("help %s: exit %d, stderr %q", c.name, code, stderr)
		}
		fe.flags.VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && !strings.Contains(stdout, "--"+f.Name+" ") {
				t.Errorf("help %s lacks --%s:\n%s", c.name, f.Name, stdout)
			}
		})
		if strings.Contains(stdout, "[=") {
			t.Errorf("help %s shows an optional value:\n%s", c.name, stdout)
		}
	}
}
