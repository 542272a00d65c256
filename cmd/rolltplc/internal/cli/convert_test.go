package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/cmd/rolltplc/internal/clitest"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
)

// writeLlama writes a small Llama-shaped HF checkpoint (GQA 4:1, untied)
// into dir, as two shards with an index. skip names tensors to leave out.
func writeLlama(t *testing.T, dir string, skip ...string) {
	t.Helper()
	writeLlamaLayers(t, dir, 2, skip...)
}

// writeLlamaLayers is writeLlama with L decoder layers.
func writeLlamaLayers(t *testing.T, dir string, L int, skip ...string) {
	t.Helper()
	c := clitest.Llama(clitest.LlamaShape{Vocab: 128, Hidden: 32, Inter: 64, Heads: 4, KVHeads: 1, Layers: int64(L)}, skip...)
	c.Seed = [2]uint64{1, 2}
	c.Write(t, dir)
}

func TestConvertRoundTrip(t *testing.T) {
	dir := t.TempDir()
	hf, mca, back := filepath.Join(dir, "hf"), filepath.Join(dir, "mca"), filepath.Join(dir, "back")
	writeLlama(t, hf)
	code, _, stderr := run(t, "", "convert", "--from", hf, "--to", mca)
	if code != ExitOK {
		t.Fatalf("HF -> MCA: exit %d\n%s", code, stderr)
	}
	if !regexp.MustCompile(`HF -> MCA \(llama\): 15 tensors, .* -> `).MatchString(stderr) {
		t.Errorf("summary: %q", stderr)
	}
	for _, f := range []string{"mca_config.json", "latest_checkpointed_iteration.txt", "iter_0000001/mp_rank_00/model_optim_rng.pt", "tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(mca, f)); err != nil {
			t.Error(err)
		}
	}
	code, _, stderr = run(t, "", "convert", "--quiet", "--to-hf", "--from", mca, "--to", back, "--max-shard-size", "20KB")
	if code != ExitOK || stderr != "" {
		t.Fatalf("MCA -> HF: exit %d\n%s", code, stderr)
	}
	ix, err := safetensors.ReadIndex(filepath.Join(back, safetensors.IndexFileName))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ix.Shards()); n < 2 {
		t.Errorf("%d shards with a 20KB limit", n)
	}
	// Refusals.
	code, _, stderr = run(t, "", "convert", "--from", hf, "--to", mca)
	if code != ExitError || !strings.Contains(stderr, "; pass --force") {
		t.Errorf("non-empty destination: exit %d %q", code, stderr)
	}
	code, _, stderr = run(t, "", "convert", "--from", hf, "--to", filepath.Join(dir, "x"), "--tp", "2")
	if code != ExitError || !strings.Contains(stderr, "num_query_groups 1 is not divisible by tp 2") {
		t.Errorf("--tp 2: exit %d %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Errorf("--tp 2 refused but wrote its destination")
	}
	code, _, stderr = run(t, "", "convert", "--from", hf, "--to", filepath.Join(dir, "x"), "--to-hf")
	if code != ExitError || !strings.Contains(stderr, "not an MCA checkpoint") {
		t.Errorf("--to-hf on HF: exit %d %q", code, stderr)
	}
	code, _, _ = run(t, "", "convert", "--from", hf)
	if code != ExitUsage {
		t.Errorf("missing --to: exit %d", code)
	}
	code, _, stderr = run(t, "", "convert", "--from", hf, "--to", filepath.Join(dir, "x"), "--model-type", "gpt9")
	if code != ExitError || !strings.Contains(stderr, `--model-type "gpt9" conflicts with`) {
		t.Errorf("another model type: exit %d %q", code, stderr)
	}
	code, _, stderr = run(t, "", "convert", "--force", "--quiet", "--from", hf, "--to", mca)
	if code != ExitOK {
		t.Errorf("--force: exit %d %q", code, stderr)
	}
}

func TestConvertParallelRoundTrip(t *testing.T) {
	dir := t.TempDir()
	hf, mca, back := filepath.Join(dir, "hf"), filepath.Join(dir, "mca"), filepath.Join(dir, "back")
	writeLlama(t, hf)
	code, _, stderr := run(t, "", "convert", "--quiet", "--from", hf, "--to", mca, "--pp", "2")
	if code != ExitOK {
		t.Fatalf("HF -> MCA --pp 2: exit %d\n%s", code, stderr)
	}
	for _, f := range []string{"iter_0000001/mp_rank_00_000/model_optim_rng.pt", "iter_0000001/mp_rank_00_001/model_optim_rng.pt"} {
		if _, err := os.Stat(filepath.Join(mca, f)); err != nil {
			t.Error(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(mca, "mca_config.json"))
	if err != nil || !strings.Contains(string(b), `"pipeline_model_parallel_size": 2`) {
		t.Errorf("mca_config.json: %v\n%s", err, b)
	}
	code, _, stderr = run(t, "", "convert", "--quiet", "--from", mca, "--to", back)
	if code != ExitOK || stderr != "" {
		t.Fatalf("MCA -> HF: exit %d\n%s", code, stderr)
	}
	x, err := safetensors.OpenSharded(hf)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	y, err := safetensors.OpenSharded(back)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	if len(x.Tensors()) != len(y.Tensors()) {
		t.Errorf("%d tensors back, want %d", len(y.Tensors()), len(x.Tensors()))
	}
	for _, tx := range x.Tensors() {
		ty, ok := y.Lookup(tx.Name)
		if !ok || !bytes.Equal(tx.File.Data(tx.TensorInfo), ty.File.Data(ty.TensorInfo)) {
			t.Errorf("%s: missing or different after the round trip", tx.Name)
		}
	}
	code, _, stderr = run(t, "", "convert", "--from", hf, "--to", filepath.Join(dir, "y"), "--transformer-impl", "fast")
	if code != ExitError || !strings.Contains(stderr, "transformer_impl") {
		t.Errorf("--transformer-impl fast: exit %d %q", code, stderr)
	}
}

// sameCheckpoints fails unless the HF checkpoints in a and b hold the
// same tensors, bit for bit.
func sameCheckpoints(t *testing.T, a, b string) {
	t.Helper()
	x, err := safetensors.OpenSharded(a)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	y, err := safetensors.OpenSharded(b)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	if len(x.Tensors()) != len(y.Tensors()) {
		t.Errorf("%d tensors back, want %d", len(y.Tensors()), len(x.Tensors()))
	}
	for _, tx := range x.Tensors() {
		ty, ok := y.Lookup(tx.Name)
		if !ok || !bytes.Equal(tx.File.Data(tx.TensorInfo), ty.File.Data(ty.TensorInfo)) {
			t.Errorf("%s: missing or different after the round trip", tx.Name)
		}
	}
}

// TestConvertPipelineAccounting converts with --pp 3 and the embedding
// and the loss counted in the pipeline split: (4 layers + 2) / 3 stages
// gives 1, 2 and 1 decoder layers.
func TestConvertPipelineAccounting(t *testing.T) {
	dir := t.TempDir()
	hf, mca, back := filepath.Join(dir, "hf"), filepath.Join(dir, "mca"), filepath.Join(dir, "back")
	writeLlamaLayers(t, hf, 4)
	code, _, stderr := run(t, "", "convert", "--quiet", "--from", hf, "--to", filepath.Join(dir, "bad"), "--pp", "3")
	if code != ExitError || !strings.Contains(stderr, "num_layers") {
		t.Errorf("--pp 3 without accounting (4 layers): exit %d %q", code, stderr)
	}
	code, _, stderr = run(t, "", "convert", "--quiet", "--from", hf, "--to", mca, "--pp", "3", "--account-for-embedding", "--account-for-loss")
	if code != ExitOK {
		t.Fatalf("HF -> MCA --pp 3: exit %d\n%s", code, stderr)
	}
	b, err := os.ReadFile(filepath.Join(mca, "mca_config.json"))
	for _, want := range []string{`"pipeline_model_parallel_size": 3`, `"account_for_embedding_in_pipeline_split": true`, `"account_for_loss_in_pipeline_split": true`} {
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("mca_config.json lacks %s: %v", want, err)
		}
	}
	layers := regexp.MustCompile(`decoder\.layers\.(\d+)\.self_attention\.linear_proj\.weight`)
	for pp, want := range []int{1, 2, 1} {
		raw, err := os.ReadFile(filepath.Join(mca, "iter_0000001", fmt.Sprintf("mp_rank_00_%03d", pp), "model_optim_rng.pt"))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, m := range layers.FindAllStringSubmatch(string(raw), -1) {
			seen[m[1]] = true
		}
		if len(seen) != want {
			t.Errorf("pipeline stage %d holds layers %v, want %d layers", pp, seen, want)
		}
	}
	code, _, stderr = run(t, "", "convert", "--quiet", "--from", mca, "--to", back)
	if code != ExitOK {
		t.Fatalf("MCA -> HF: exit %d\n%s", code, stderr)
	}
	sameCheckpoints(t, hf, back)
}

// TestConvertRanksJobs converts in two --ranks jobs and a --finalize job
// into one directory and compares with a one-job conversion, byte for
// byte.
func TestConvertRanksJobs(t *testing.T) {
	dir := t.TempDir()
	hf, one, shared := filepath.Join(dir, "hf"), filepath.Join(dir, "one"), filepath.Join(dir, "shared")
	writeLlamaLayers(t, hf, 4)
	layout := []string{"--pp", "2", "--vpp", "2"}
	if code, _, stderr := run(t, "", append([]string{"convert", "--quiet", "--from", hf, "--to", one}, layout...)...); code != ExitOK {
		t.Fatalf("one job: exit %d\n%s", code, stderr)
	}
	for _, job := range [][]string{{"--ranks", "1"}, {"--ranks", "0-0"}, {"--finalize"}} {
		args := append(append([]string{"convert", "--quiet", "--from", hf, "--to", shared}, layout...), job...)
		if code, _, stderr := run(t, "", args...); code != ExitOK {
			t.Fatalf("%v: exit %d\n%s", job, code, stderr)
		}
	}
	files := func(root string) map[string][]byte {
		out := map[string][]byte{}
		filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				b, _ := os.ReadFile(p)
				rel, _ := filepath.Rel(root, p)
				out[rel] = b
			}
			return err
		})
		return out
	}
	a, b := files(one), files(shared)
	if len(a) != len(b) || len(a) < 5 {
		t.Errorf("one job wrote %d files, the jobs %d", len(a), len(b))
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			t.Errorf("%s differs from the one-job conversion", k)
		}
	}
	// --ranks shared is --finalize; a missing rank file is named.
	os.Remove(filepath.Join(shared, "iter_0000001", "mp_rank_00_001", "model_optim_rng.pt"))
	code, _, stderr := run(t, "", append([]string{"convert", "--quiet", "--from", hf, "--to", shared, "--ranks", "shared"}, layout...)...)
	if code != ExitError || !strings.Contains(stderr, "mp_rank_00_001") || !strings.Contains(stderr, "missing") {
		t.Errorf("finalize with a rank file missing: exit %d %q", code, stderr)
	}
	// The output was finalized: redoing a rank needs --force, which
	// removes the tracker first; finalize then restores the checkpoint.
	redo := append([]string{"convert", "--quiet", "--from", hf, "--to", shared, "--ranks", "1"}, layout...)
	if code, _, stderr := run(t, "", redo...); code != ExitError || !strings.Contains(stderr, "finalized checkpoint") || !strings.Contains(stderr, "--force") {
		t.Errorf("rank job into a finalized output: exit %d %q", code, stderr)
	}
	if code, _, stderr := run(t, "", append(redo, "--force")...); code != ExitOK {
		t.Fatalf("rank job --force: exit %d %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(shared, "latest_checkpointed_iteration.txt")); err == nil {
		t.Error("a rank job with --force left the tracker")
	}
	if code, _, stderr := run(t, "", append([]string{"convert", "--quiet", "--from", hf, "--to", shared, "--finalize"}, layout...)...); code != ExitOK {
		t.Fatalf("finalize after the redo: exit %d %q", code, stderr)
	}
	for k, v := range files(one) {
		if !bytes.Equal(v, files(shared)[k]) {
			t.Errorf("after the redo, %s differs from the one-job conversion", k)
		}
	}
	for _, bad := range []string{"x", "3-1", "-1", "1,,2"} {
		if code, _, stderr := run(t, "", "convert", "--from", hf, "--to", shared, "--ranks", bad); code != ExitUsage {
			t.Errorf("--ranks %q: exit %d %q", bad, code, stderr)
		}
	}
	if code, _, stderr := run(t, "", "convert", "--from", hf, "--to", shared, "--pp", "2", "--ranks", "2"); code != ExitError || !strings.Contains(stderr, "out of range") {
		t.Errorf("--ranks 2 of 2: exit %d %q", code, stderr)
	}
	if code, _, stderr := run(t, "", "convert", "--from", one, "--to", filepath.Join(dir, "x"), "--ranks", "0"); code != ExitUsage {
		t.Errorf("--ranks with an MCA source: exit %d %q", code, stderr)
	}
}

func TestParseRanks(t *testing.T) {
	got, err := parseRanks("0-3,7, 9")
	if err != nil || fmt.Sprint(got) != "[0 1 2 3 7 9]" {
		t.Errorf("parseRanks: %v %v", got, err)
	}
}

func TestConvertRefusesIncompleteCheckpoint(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	writeLlama(t, hf, "model.layers.1.self_attn.v_proj.weight")
	out := filepath.Join(dir, "out")
	code, _, stderr := run(t, "", "convert", "--from", hf, "--to", out)
	if code != ExitError {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"1 problem; nothing was written",
		`error [incomplete]: layer 1 (model.layers.1): incomplete op group, 2 of 3 source tensors present; missing "model.layers.1.self_attn.v_proj.weight"`,
		"op: qkv op #9 (stdlib/templates/common.rolltpl:",
		`"model.layers.1.self_attn.q_proj.weight" in ` + filepath.Join(hf, "model-0000"),
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("missing %q in\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output created: %v", err)
	}
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	writeLlama(t, hf)
	code, stdout, stderr := run(t, "", "verify", "--tmp", dir, hf)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if !regexp.MustCompile(`\(llama\): 21 tensors, .* identical after HF -> MCA -> HF`).MatchString(stdout) {
		t.Errorf("stdout: %q", stdout)
	}
	// Through the rank files of a parallel layout.
	code, stdout, stderr = run(t, "", "verify", "--tmp", dir, "--pp", "2", hf)
	if code != ExitOK {
		t.Fatalf("pp=2: exit %d\n%s%s", code, stdout, stderr)
	}
	if !regexp.MustCompile(`\(llama\): 21 tensors, .* identical after HF -> MCA \(pp=2\) -> HF`).MatchString(stdout) {
		t.Errorf("pp=2: stdout: %q", stdout)
	}
	code, stdout, stderr = run(t, "", "verify", "--quiet", "--tmp", dir, "--tp", "2", hf)
	if code != ExitError || !strings.Contains(stderr, "HF → MCA: 1 problem: num_query_groups 1 is not divisible by tp 2") {
		t.Errorf("tp=2 with one query group: exit %d\n%s%s", code, stdout, stderr)
	}
	// A template whose op is not its own inverse on these values: the
	// zero-centred norm computes (w - 1) + 1 in bf16, which rounds. The
	// norms are compared with their own round trip and reported so.
	tpl := filepath.Join(dir, "lossy.rolltpl")
	os.WriteFile(tpl, []byte(`import "common"
import "parallel"

template llama {
    layer_prefix = "model.layers."
    config { use llm  intermediate_size -> ffn_hidden_size }
    mca { use rope }
    weights {
        use embeddings
        zero_centered_rmsnorm ".input_layernorm.weight" -> ".self_attention.linear_qkv.layer_norm_weight"
        use attention_out
        use te_mlp
        use final_norm
        use qkv
    }
    parallel { use default }
}
`), 0o644)
	code, stdout, stderr = run(t, "", "verify", "--tmp", dir, "--template", tpl, hf)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if !regexp.MustCompile(`\(llama\): 21 tensors, .* identical after HF -> MCA -> HF \(.*\), 2 of them as their own round trip through a lossy op\nnote: lossy by nature: zero_centered_rmsnorm in BF16; 2 of the 2 tensors compared with their own round trip changed by it, at most [1-9][0-9]* ulp from the original\n`).MatchString(stdout) {
		t.Errorf("stdout: %q", stdout)
	}
	// check --checkpoint names the lossy op with the dtype it sees.
	code, stdout, stderr = run(t, "", "check", "--checkpoint", hf, tpl)
	if code != ExitOK || !strings.Contains(stdout, "note: zero_centered_rmsnorm is lossy in BF16 (2 tensors)") {
		t.Errorf("check --checkpoint: exit %d\n%s%s", code, stdout, stderr)
	}
}

func TestCheckCheckpoint(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	writeLlama(t, hf)
	e, out, errb := testEnv()
	if code := checkCheckpoint(e, hf, nil, exec.Layout{}, false, "text"); code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
	for _, want := range []string{"2 files", "llama HF -> MCA: 21 tensors", "rename", "stack", "qkv", "no problems"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	// Problems and a layout that does not divide, as JSON.
	bad := filepath.Join(dir, "bad")
	writeLlama(t, bad, "model.layers.0.mlp.up_proj.weight")
	e, out, _ = testEnv()
	if code := checkCheckpoint(e, bad, nil, exec.Layout{TP: 3}, false, "json"); code != ExitError {
		t.Fatalf("exit %d\n%s", code, out)
	}
	var rep struct {
		Files    int
		Errors   int
		Note     string
		Problems []struct {
			Severity, Kind, Message, Op string
			Tensors                     []struct{ Name, File string }
		}
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	kinds := map[string]bool{}
	for _, p := range rep.Problems {
		kinds[p.Kind] = true
		if p.Kind == "incomplete" && (len(p.Tensors) != 1 || p.Tensors[0].Name != "model.layers.0.mlp.gate_proj.weight" || !strings.HasSuffix(p.Tensors[0].File, ".safetensors") || !strings.Contains(p.Op, "stack op")) {
			t.Errorf("incomplete problem: %+v", p)
		}
	}
	if !kinds["incomplete"] || !kinds["layout"] || rep.Note == "" || rep.Files != 2 {
		t.Errorf("report: %+v", rep)
	}
	// An MCA checkpoint is planned back to HF.
	mca := filepath.Join(dir, "mca")
	if code, _, stderr := run(t, "", "convert", "-q", "--from", hf, "--to", mca); code != ExitOK {
		t.Fatal(stderr)
	}
	e, out, _ = testEnv()
	if code := checkCheckpoint(e, mca, nil, exec.Layout{}, false, "text"); code != ExitOK || !strings.Contains(out.String(), "llama MCA -> HF: 15 tensors") {
		t.Errorf("MCA: exit %d\n%s", code, out)
	}
}

func testEnv() (*env, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}, &out, &errb
}

// TestCheckCheckpointFlag runs the check --checkpoint command line.
func TestCheckCheckpointFlag(t *testing.T) {
	hf := filepath.Join(t.TempDir(), "hf")
	writeLlama(t, hf)
	code, stdout, stderr := run(t, "", "check", "--checkpoint", hf)
	if code != ExitOK || !strings.Contains(stdout+stderr, "llama HF -> MCA") {
		t.Errorf("check --checkpoint: exit %d\n%s%s", code, stdout, stderr)
	}
	// The test model has one query group: TP2 cannot split it.
	code, stdout, stderr = run(t, "", "check", "--checkpoint", hf, "--tp", "2")
	if code != ExitError || !strings.Contains(stdout+stderr, "num_query_groups 1 is not divisible by tp 2") {
		t.Errorf("check --checkpoint --tp 2: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestCheckCheckpointParity: check --checkpoint plans every layout
// convert handles, from the files convert opens, with its verdict, and
// takes the layout flags convert takes.
func TestCheckCheckpointParity(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	writeLlamaLayers(t, hf, 4)
	for _, c := range []struct {
		name   string
		layout []string
	}{
		{"pp2", []string{"--pp", "2"}},
		{"pp2 vpp2", []string{"--pp", "2", "--vpp", "2"}},
		{"ep1 etp1 local", []string{"--pp", "2", "--etp", "1", "--transformer-impl", "local"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			mca := filepath.Join(t.TempDir(), "mca")
			// HF -> MCA in the layout: check plans it with the flags
			// convert takes, and says how many rank files.
			code, stdout, stderr := run(t, "", append([]string{"check", "--checkpoint", hf}, c.layout...)...)
			if code != ExitOK || !strings.Contains(stdout, "no problems") || !strings.Contains(stdout, "2 rank files") {
				t.Errorf("check HF: exit %d\n%s%s", code, stdout, stderr)
			}
			if code, _, stderr := run(t, "", append([]string{"convert", "-q", "--from", hf, "--to", mca}, c.layout...)...); code != ExitOK {
				t.Fatal(stderr)
			}
			// MCA -> HF from the rank files: planned as convert plans it.
			code, stdout, stderr = run(t, "", "check", "--checkpoint", mca)
			if code != ExitOK || !strings.Contains(stdout, "llama MCA -> HF") || !strings.Contains(stdout, "2 rank files merged") || !strings.Contains(stdout, "no problems") {
				t.Errorf("check MCA: exit %d\n%s%s", code, stdout, stderr)
			}
			// A missing rank file: both refuse, naming it.
			ranks, _ := filepath.Glob(filepath.Join(mca, "iter_0000001", "*", "model_optim_rng.pt"))
			if len(ranks) != 2 {
				t.Fatalf("rank files %v", ranks)
			}
			rank := ranks[1]
			if err := os.Remove(rank); err != nil {
				t.Fatal(err)
			}
			code, _, checkErr := run(t, "", "check", "--checkpoint", mca)
			code2, _, convErr := run(t, "", "convert", "-q", "--from", mca, "--to", filepath.Join(t.TempDir(), "back"))
			if code != ExitError || code2 != ExitError || !strings.Contains(checkErr, rank) || !strings.Contains(convErr, rank) {
				t.Errorf("missing rank file: check exit %d %q, convert exit %d %q", code, checkErr, code2, convErr)
			}
		})
	}
	// The files convert opens: a model.safetensors that is not a file
	// stops convert, and so check, whatever the index says.
	odd := filepath.Join(dir, "odd")
	writeLlama(t, odd)
	if err := os.Mkdir(filepath.Join(odd, "model.safetensors"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, checkErr := run(t, "", "check", "--checkpoint", odd)
	code2, _, convErr := run(t, "", "convert", "-q", "--from", odd, "--to", filepath.Join(dir, "odd_out"))
	if code != ExitError || code2 != ExitError || !strings.Contains(checkErr, "model.safetensors") {
		t.Errorf("model.safetensors folder: check exit %d %q, convert exit %d %q", code, checkErr, code2, convErr)
	}
}

// TestConvertLegacyGroupedFlag: the flag reaches mca_config.json, and needs
// --moe-grouped-gemm.
func TestConvertLegacyGroupedFlag(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	writeLlama(t, hf)
	mca := filepath.Join(dir, "mca")
	code, _, stderr := run(t, "", "convert", "--quiet", "--from", hf, "--to", mca, "--moe-grouped-gemm", "--moe-legacy-grouped-gemm")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	b, _ := os.ReadFile(filepath.Join(mca, "mca_config.json"))
	if !strings.Contains(string(b), `"moe_use_legacy_grouped_gemm": true`) {
		t.Errorf("mca_config.json lacks the legacy grouped flag:\n%s", b)
	}
	code, _, _ = run(t, "", "convert", "--quiet", "--from", hf, "--to", filepath.Join(dir, "x"), "--moe-legacy-grouped-gemm")
	if code == ExitOK {
		t.Error("--moe-legacy-grouped-gemm without --moe-grouped-gemm was accepted")
	}
}

// TestCheckCheckpointCapped: check --checkpoint lists 20 problems of a
// kind and counts the rest, as text and as JSON.
func TestCheckCheckpointCapped(t *testing.T) {
	hf := filepath.Join(t.TempDir(), "hf")
	writeLlamaLayers(t, hf, 30)
	cfgPath := filepath.Join(hf, "config.json")
	b, _ := os.ReadFile(cfgPath)
	var cfg map[string]any
	json.Unmarshal(b, &cfg)
	cfg["num_hidden_layers"] = 2 // 28 layers beyond
	b, _ = json.Marshal(cfg)
	os.WriteFile(cfgPath, b, 0o644)
	code, stdout, stderr := run(t, "", "check", "--checkpoint", hf)
	if code != ExitError || strings.Count(stdout, "error [layers]") != exec.MaxProblemsPerKind ||
		!strings.Contains(stdout, "28 errors") || !strings.Contains(stdout, "... and 8 more [layers] problems (20 listed)") {
		t.Errorf("exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = run(t, "", "check", "--diags", "json", "--checkpoint", hf)
	var rep struct {
		Errors   int
		Problems []json.RawMessage
		Omitted  []exec.KindCount
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != ExitError {
		t.Fatalf("exit %d, %v\n%s", code, err, stdout)
	}
	if rep.Errors != 28 || len(rep.Problems) != 20 || len(rep.Omitted) != 1 || rep.Omitted[0] != (exec.KindCount{Kind: exec.ProblemLayers, Count: 8}) {
		t.Errorf("report: %d errors, %d problems, omitted %v", rep.Errors, len(rep.Problems), rep.Omitted)
	}
}
