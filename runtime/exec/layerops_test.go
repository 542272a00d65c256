package exec_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// readMCAConfig parses dir's mca_config.json.
func readMCAConfig(t *testing.T, dir string) *pyjson.Object {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, exec.MCAConfigName))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := pyjson.ParseObject(data)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// layerOpsRecord returns the LayerOpsKey record of dir's mca_config.json
// as op index → layers (nil when absent).
func layerOpsRecord(t *testing.T, dir string) map[string]string {
	t.Helper()
	v, ok := readMCAConfig(t, dir).Get(exec.LayerOpsKey)
	if !ok {
		return nil
	}
	rec, ok := v.(*pyjson.Object)
	if !ok {
		t.Fatalf("%s is %s, not an object", exec.LayerOpsKey, pyjson.Kind(v))
	}
	out := map[string]string{}
	for _, k := range rec.Keys() {
		s, _ := rec.Get(k)
		out[k], _ = s.(string)
	}
	return out
}

// TestLayerOpsRecord: HF -> MCA records, for the ops that convert the
// same MCA weights from two HF layouts, which layers each converted —
// a single job and the jobs of a --ranks conversion alike — and MCA -> HF
// converts each layer back with its recorded op, so a Qwen3.5-35B-A3B
// checkpoint (fused decoder experts, MTP experts one by one) comes back
// with exactly its names and bytes. Without the record (a checkpoint of
// ROLL or an older rolltplc) every layer's experts come back fused, as
// before; a malformed record is a config error naming the key.
func TestLayerOpsRecord(t *testing.T) {
	v := qwen35Variants[2]
	if v.id != "35b-a3b" {
		t.Fatalf("qwen35Variants[2] is %s", v.id)
	}
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	synthQwen35(t, v, tensor.BF16).write(t, hf, 2, 7)
	m := stdlibModel(t, v.modelType)
	layout := exec.Layout{TP: 2, PP: 2, EP: 2}
	mca := filepath.Join(dir, "mca")
	r, err := exec.ConvertHFToMCA(context.Background(), m, hf, mca, exec.Options{Layout: layout})
	if err != nil {
		t.Fatal(err)
	}
	nl, _ := readMCAConfig(t, mca).Get("num_layers")
	layers, _ := nl.(pyjson.Number).Int()
	// The decoder layers by the split ops, the MTP layer (canonical layer
	// num_layers) by the per-expert ops.
	last := strconv.FormatInt(layers-1, 10)
	got := layerOpsRecord(t, mca)
	want := map[string]string{}
	for k := range got {
		if strings.HasPrefix(m.Template.Ops[must(strconv.Atoi(k))].Kind, "split") {
			want[k] = "0-" + last
		} else {
			want[k] = strconv.FormatInt(layers, 10)
		}
	}
	split := ""
	for k, l := range want {
		if strings.HasPrefix(l, "0-") {
			split = k
		}
	}
	if diff := cmp.Diff(want, got); diff != "" || split == "" || len(got) < 2 {
		t.Fatalf("%s: the split ops should convert the decoder layers, the per-expert ops the MTP layer (-want +got):\n%s", exec.LayerOpsKey, diff)
	}

	// A --ranks job records the same.
	job := filepath.Join(dir, "job")
	for _, o := range []exec.Options{{Ranks: []int{0}}, {Finalize: true}} {
		if _, err := exec.ConvertHFToMCA(context.Background(), m, hf, job, o); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(got, layerOpsRecord(t, job)); diff != "" {
		t.Errorf("--ranks job record differs (-single +job):\n%s", diff)
	}

	back := filepath.Join(dir, "back")
	if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, back, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	compareCheckpoints(t, hf, back, r.Plan)

	// Without the record: today's choice, every expert group fused.
	cfg := readMCAConfig(t, mca)
	cfg.Delete(exec.LayerOpsKey)
	writeConfig := func(obj *pyjson.Object) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(mca, exec.MCAConfigName), append(pyjson.Encode(obj, 2, true), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(cfg)
	fused := filepath.Join(dir, "fused")
	if _, err := exec.ConvertMCAToHF(context.Background(), m, mca, fused, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	compareFusedBack(t, hf, fused)

	// A malformed record.
	for _, tc := range []struct {
		name string
		rec  any
		want string
	}{
		{"not an object", "x", "not an object"},
		{"not an alternative op", map[string]string{"0": "0"}, `"0" is not the index of an op`},
		{"beyond the layers", map[string]string{split: "0-100000"}, "beyond"},
		{"bad range", map[string]string{split: "3-1"}, "bad layer range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg.Clone()
			if m, ok := tc.rec.(map[string]string); ok {
				o := pyjson.NewObject()
				for k, v := range m {
					o.Set(k, v)
				}
				c.Set(exec.LayerOpsKey, o)
			} else {
				c.Set(exec.LayerOpsKey, tc.rec)
			}
			writeConfig(c)
			_, err := exec.ConvertMCAToHF(context.Background(), m, mca, filepath.Join(dir, "bad"), exec.Options{})
			if err == nil || !strings.Contains(err.Error(), exec.LayerOpsKey) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s: %s", err, exec.LayerOpsKey, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "bad")); !os.IsNotExist(err) {
				t.Errorf("output written for a malformed record")
			}
		})
	}
}

// TestLayerOpsRecordOnlyAlternatives: a template without alternative ops
// writes no record.
func TestLayerOpsRecordOnlyAlternatives(t *testing.T) {
	v := qwen35Variants[0]
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	synthQwen35(t, v, tensor.BF16).write(t, hf, 1, 3)
	mca := filepath.Join(dir, "mca")
	if _, err := exec.ConvertHFToMCA(context.Background(), stdlibModel(t, v.modelType), hf, mca, exec.Options{}); err != nil {
		t.Fatal(err)
	}
	if rec := layerOpsRecord(t, mca); rec != nil {
		t.Errorf("%s written for %s: %v", exec.LayerOpsKey, v.modelType, rec)
	}
}

// must returns v, ignoring err (the test checked the text).
func must(v int, _ error) int { return v }
