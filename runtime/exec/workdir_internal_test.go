package exec

import (
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tempname"
)

// TestWorkDir: the working folders of LoRA merge and import and of the
// verify commands are named after their writer, so the next run removes
// one left by a killed run (told), keeps another prefix's and a live
// writer's, and creates a missing parent folder.
func TestWorkDir(t *testing.T) {
	cmd := osexec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	self := tempname.Self()
	dead := fmt.Sprintf("%s-%d-%d-1", self.Host, cmd.Process.Pid, self.Start)
	dir := t.TempDir()
	stale := filepath.Join(dir, ".rolltpl-lora-merge-"+dead)
	other := filepath.Join(dir, ".rolltpl-lora-import-"+dead)
	for _, d := range []string{stale, other} {
		if err := os.MkdirAll(filepath.Join(d, "base-hf"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var notes []string
	tmp, err := workDir(dir, ".rolltpl-lora-merge-", "LoRA merge", func(s string) { notes = append(notes, s) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the killed run's folder is still there: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another prefix's folder was removed: %v", err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "left by an interrupted LoRA merge") {
		t.Errorf("notices %q", notes)
	}
	if o, ok := tempname.Parse(filepath.Base(tmp), ".rolltpl-lora-merge-"); !ok || o.PID != os.Getpid() {
		t.Errorf("working folder %s is not named after this process", tmp)
	}
	// A second run while this one lives keeps its folder.
	if _, err := workDir(dir, ".rolltpl-lora-merge-", "LoRA merge", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("a live writer's folder was removed: %v", err)
	}
	nested := filepath.Join(dir, "a", "b")
	if _, err := workDir(nested, "rolltpl-lora-verify-", "LoRA verify", nil); err != nil {
		t.Errorf("missing parent: %v", err)
	}
}
