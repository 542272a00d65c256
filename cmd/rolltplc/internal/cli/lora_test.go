package cli

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// writePEFT writes a rank-r PEFT adapter for the HF checkpoint in hf
// (every q/k/v/o/gate/up/down projection, A shared by q/k/v and gate/up).
func writePEFT(t *testing.T, hf, dir string, r int64) {
	t.Helper()
	ck, err := exec.ReadHFCheckpoint(hf)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^(.*)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$`)
	var specs []safetensors.Spec
	data := map[string][]byte{}
	val := func(key string, n int64) []byte {
		var b []byte
		h := uint32(len(key))
		for i := range len(key) {
			h = h*31 + uint32(key[i])
		}
		for i := range n {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(int64(h>>3)%97+i%13-55)/64))
		}
		return b
	}
	for _, tm := range ck.Tensors {
		m := re.FindStringSubmatch(tm.Name)
		if m == nil {
			continue
		}
		group := map[string]string{"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gu", "up_proj": "gu"}[m[2]]
		if group == "" {
			group = m[2]
		}
		an, bn := exec.PEFTPrefix+m[1]+"."+m[2]+".lora_A.weight", exec.PEFTPrefix+m[1]+"."+m[2]+".lora_B.weight"
		specs = append(specs, safetensors.Spec{Name: an, DType: tensor.F32, Shape: tensor.Shape{r, tm.Shape[1]}},
			safetensors.Spec{Name: bn, DType: tensor.F32, Shape: tensor.Shape{tm.Shape[0], r}})
		data[an], data[bn] = val(m[1]+group, r*tm.Shape[1]), val(bn, r*tm.Shape[0])
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	safetensors.SortSpecs(specs)
	if err := safetensors.WriteFile(filepath.Join(dir, exec.AdapterModelName), specs, map[string]string{"format": "pt"}, func(w *safetensors.Writer) error {
		for _, s := range specs {
			if err := w.WriteTensor(s.Name, data[s.Name]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "bias": "none",
		"target_modules": []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}})
	if err := os.WriteFile(filepath.Join(dir, exec.AdapterConfigName), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConvertLoRA runs the LoRA commands end to end: a PEFT adapter
// imported at PP2 (convert --from PEFT --base HF --pp 2), exported back
// to PEFT (convert --from SAVE) with the same tensors, and merged into the
// base (convert --from SAVE --base HF --merge); and the flag errors.
func TestConvertLoRA(t *testing.T) {
	dir := t.TempDir()
	hf, peft, save := filepath.Join(dir, "hf"), filepath.Join(dir, "peft"), filepath.Join(dir, "save")
	writeLlama(t, hf)
	writePEFT(t, hf, peft, 4)
	os.MkdirAll(save, 0o755)
	if code, _, stderr := run(t, "", "convert", "--from", peft, "--to", filepath.Join(save, "default"), "--base", hf, "--pp", "2"); code != ExitOK {
		t.Fatalf("import: exit %d\n%s", code, stderr)
	}
	out := filepath.Join(dir, "out")
	code, _, stderr := run(t, "", "convert", "--from", save, "--to", out)
	if code != ExitOK || !strings.Contains(stderr, "adapter default") {
		t.Fatalf("export: exit %d\n%s", code, stderr)
	}
	a, err := os.ReadFile(filepath.Join(peft, exec.AdapterModelName))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, exec.AdapterModelName))
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Errorf("PEFT -> MCA -> PEFT changed adapter_model.safetensors")
	}
	merged := filepath.Join(dir, "merged")
	if code, _, stderr := run(t, "", "convert", "--from", save, "--to", merged, "--base", hf, "--merge"); code != ExitOK || !strings.Contains(stderr, "merged into 14 weights") {
		t.Fatalf("merge: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(merged, "config.json")); err != nil {
		t.Fatal(err)
	}
	mergedMCA := filepath.Join(dir, "merged-mca")
	if code, _, stderr := run(t, "", "convert", "--from", save, "--to", mergedMCA, "--base", hf, "--merge", "--pp", "2"); code != ExitOK {
		t.Fatalf("merge to MCA: exit %d\n%s", code, stderr)
	}
	if !exec.IsMCA(mergedMCA) {
		t.Fatalf("merge --pp 2 wrote no MCA checkpoint")
	}
	code, stdout, stderr := run(t, "", "check", "--checkpoint", save)
	if code != ExitOK || !strings.Contains(stdout, "LoRA adapter default") || !strings.Contains(stdout, "rule .self_attention.linear_qkv.weight (qkv at") {
		t.Errorf("check --checkpoint: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = run(t, "", "verify", save)
	if code != ExitOK || !strings.Contains(stdout, "identical after LoRA -> PEFT -> LoRA") {
		t.Errorf("verify: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"convert", "--from", save, "--to", filepath.Join(dir, "x1"), "--merge"}, "--merge and --base"},
		{[]string{"convert", "--from", save, "--to", filepath.Join(dir, "x2"), "--tp", "2"}, "--tp"},
		{[]string{"convert", "--from", save, "--to", filepath.Join(dir, "x6"), "--base", hf, "--merge", "--tp", "2", "--to-hf"}, "--to-hf"},
		{[]string{"convert", "--from", hf, "--to", filepath.Join(dir, "x3"), "--adapter", "default"}, "not a ROLL LoRA checkpoint"},
		{[]string{"convert", "--from", peft, "--to", filepath.Join(dir, "x4")}, "needs --base"},
		{[]string{"convert", "--from", save, "--to", filepath.Join(dir, "x5"), "--adapter", "nope"}, `no adapter "nope"`},
	} {
		code, _, stderr := run(t, "", c.args...)
		if code == ExitOK || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error mentioning %q", c.args, code, stderr, c.want)
		}
	}
}
