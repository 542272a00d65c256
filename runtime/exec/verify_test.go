package exec_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestVerifyKeep: Verify compares every tensor, and the intermediate
// directory it keeps holds the MCA checkpoint and the rebuilt config.json
// but no HF shards (the comparison never writes them).
func TestVerifyKeep(t *testing.T) {
	m := stdlibModel(t, "qwen3")
	dir := t.TempDir()
	src := filepath.Join(dir, "hf")
	synthFor("qwen3", tensor.BF16).write(t, src, 2, 7)
	hc, err := exec.ReadHFCheckpoint(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []exec.Layout{{}, {TP: 2, PP: 2}} {
		rep, err := exec.Verify(context.Background(), m, src, exec.VerifyOptions{TempDir: dir, Keep: true, Layout: l})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.Bytes != hc.Bytes() || rep.Compared == 0 {
			t.Errorf("%+v: ok=%v compared %d tensors, %d of %d bytes; diffs %v", l, rep.OK(), rep.Compared, rep.Bytes, hc.Bytes(), rep.Diffs)
		}
		if !exec.IsMCA(filepath.Join(rep.Dir, "mca")) {
			t.Errorf("no MCA checkpoint kept in %s", rep.Dir)
		}
		if _, err := os.Stat(filepath.Join(rep.Dir, "hf", exec.HFConfigName)); err != nil {
			t.Errorf("config.json not kept: %v", err)
		}
		if shards, _ := filepath.Glob(filepath.Join(rep.Dir, "hf", "*.safetensors")); len(shards) != 0 {
			t.Errorf("HF shards written: %v", shards)
		}
	}
}
