package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rolltpl/rolltpl/cmd/rolltplc/internal/cli"
	"github.com/rolltpl/rolltpl/cmd/rolltplc/internal/clitest"
)

// TestMain lets the test binary stand in for rolltplc (clitest.Main): the
// Slurm jobs of TestSlurmREADMERecipe call it through a wrapper script.
func TestMain(m *testing.M) {
	clitest.Main(m, func(args []string) int { return cli.Run(args, os.Stdin, os.Stdout, os.Stderr) })
}

// README recipe placeholders the test replaces by its own folders.
const (
	readmeHF  = "/shared/hf/qwen2-moe"
	readmeMCA = "/shared/mca/qwen2-moe"
)

// TestSlurmREADMERecipe runs README's Slurm recipe as written on a real
// single-node Slurm (slurmctld and slurmd on loopback, started here as
// root): the batch script and the submission block, with array task 3
// failing on its first attempt, so that the finalize step (afterany) fails
// naming the missing rank file; then README's recovery block (requeue the
// task, finalize again). The result must be byte-identical to a one-job
// conversion. Only the checkpoint paths are replaced. It skips where Slurm
// is not installed or cannot be started, unless $CI is set or
// ROLLTPL_REQUIRE_SLURM=1 (.ci/run installs slurm-wlm and sets it).
func TestSlurmREADMERecipe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Slurm cluster")
	}
	script, submit, recover := readmeSlurmBlocks(t)
	cl := startSlurm(t)
	dir := t.TempDir()
	hf, mca, ref := filepath.Join(dir, "hf"), filepath.Join(dir, "mca"), filepath.Join(dir, "ref")
	writeQwen2MoE(t, hf)

	// rolltplc on PATH: this test binary, behind a wrapper that makes
	// array task 3 fail on its first attempt, before writing anything.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	failed := filepath.Join(dir, "task3-failed-once")
	wrapper := fmt.Sprintf(`#!/bin/sh
if [ "${SLURM_ARRAY_TASK_ID:-}" = 3 ] && mkdir %[1]q 2>/dev/null; then
    echo "rolltplc: test: task 3 fails on its first attempt" >&2
    exit 1
fi
%[3]s=1 exec %[2]q "$@"
`, failed, self, clitest.StandInEnv)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "rolltplc"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(cl.env(), "PATH="+bin+":"+os.Getenv("PATH"))

	// The reference: one job.
	one := exec.Command(filepath.Join(bin, "rolltplc"), "convert", "--quiet", "--from", hf, "--to", ref, "--tp", "2", "--pp", "2", "--ep", "2")
	one.Env = env
	if out, err := one.CombinedOutput(); err != nil {
		t.Fatalf("one-job conversion: %v\n%s", err, out)
	}

	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	paths := strings.NewReplacer(readmeHF, hf, readmeMCA, mca)
	if err := os.WriteFile(filepath.Join(work, "convert.sbatch"), []byte(paths.Replace(script)), 0o644); err != nil {
		t.Fatal(err)
	}
	bash := func(code string) string {
		t.Helper()
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", code)
		cmd.Dir, cmd.Env = work, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s\n%s", err, code, out)
		}
		return string(out)
	}
	submitted := regexp.MustCompile(`Submitted batch job (\d+)`)
	start := time.Now()

	// Submit: 8 tasks, task 3 fails, the finalize step runs and fails.
	out := bash(paths.Replace(submit) + "\ndeclare -p jid finalize > state.sh\n")
	m := submitted.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no finalize job id in:\n%s", out)
	}
	fin1 := m[1]
	cl.waitIdle(t, 3*time.Minute)
	jid := strings.TrimSpace(strings.Split(bash(`. ./state.sh; echo "$jid"`), ";")[0])
	for task := range 8 {
		want := "COMPLETED"
		if task == 3 {
			want = "FAILED"
		}
		if got := cl.state(t, fmt.Sprintf("%s_%d", jid, task)); got != want {
			t.Errorf("task %d: %s, want %s\n%s", task, got, want, readLog(work, fmt.Sprintf("convert-%s_%d.log", jid, task)))
		}
	}
	finLog := readLog(work, "finalize-"+fin1+".log")
	if got := cl.state(t, fin1); got != "FAILED" || !strings.Contains(finLog, "mp_rank_00_001_001") {
		t.Errorf("first finalize: %s, want FAILED naming the missing rank file mp_rank_00_001_001:\n%s", got, finLog)
	}
	if _, err := os.Stat(filepath.Join(mca, "latest_checkpointed_iteration.txt")); err == nil {
		t.Fatal("the failed finalize wrote latest_checkpointed_iteration.txt")
	}

	// Recover as README says: requeue task 3, finalize again.
	out = bash(". ./state.sh\n" + paths.Replace(recover))
	m = submitted.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no finalize job id in:\n%s", out)
	}
	fin2 := m[1]
	cl.waitIdle(t, 3*time.Minute)
	if got := cl.state(t, jid+"_3"); got != "COMPLETED" {
		t.Errorf("requeued task 3: %s\n%s", got, readLog(work, fmt.Sprintf("convert-%s_3.log", jid)))
	}
	if got := cl.state(t, fin2); got != "COMPLETED" {
		t.Fatalf("second finalize: %s\n%s", got, readLog(work, "finalize-"+fin2+".log"))
	}
	t.Logf("Slurm recipe: %d tasks, a failure, a requeue and two finalize steps in %v", 8, time.Since(start).Round(100*time.Millisecond))
	t.Logf("the first finalize step said: %s", strings.TrimSpace(finLog))
	compareTrees(t, ref, mca)
}

// readmeSlurmBlocks returns README's Slurm batch script (the sh block with
// "#SBATCH --array"), its submission block (with "sbatch --parsable") and
// its recovery block (with "scontrol requeue").
func readmeSlurmBlocks(t *testing.T) (script, submit, recover string) {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?ms)^```sh\n(.*?)^```").FindAllStringSubmatch(string(readme), -1)
	find := func(marker string) string {
		t.Helper()
		var found []string
		for _, b := range blocks {
			if strings.Contains(b[1], marker) {
				found = append(found, b[1])
			}
		}
		if len(found) != 1 {
			t.Fatalf("README.md: %d sh blocks contain %q, want 1", len(found), marker)
		}
		return found[0]
	}
	script, submit, recover = find("#SBATCH --array"), find("sbatch --parsable"), find("scontrol requeue")
	if !strings.HasPrefix(script, "#!") {
		t.Errorf("README's batch script does not start with a #! line (sbatch refuses it):\n%s", script)
	}
	for _, b := range []string{script, submit} {
		if !strings.Contains(b, readmeHF) || !strings.Contains(b, readmeMCA) {
			t.Fatalf("README block does not use %s and %s:\n%s", readmeHF, readmeMCA, b)
		}
	}
	return script, submit, recover
}

// slurmCluster is a single-node Slurm started by a test.
type slurmCluster struct {
	dir, conf string
}

func (c *slurmCluster) env() []string {
	return append(os.Environ(), "SLURM_CONF="+c.conf)
}

// run runs a Slurm client command against the cluster.
func (c *slurmCluster) run(args ...string) (string, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = c.env()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// state returns a job's JobState.
func (c *slurmCluster) state(t *testing.T, job string) string {
	t.Helper()
	out, err := c.run("scontrol", "show", "job", job)
	if err != nil {
		t.Fatalf("scontrol show job %s: %v\n%s", job, err, out)
	}
	m := regexp.MustCompile(`JobState=(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("scontrol show job %s: no JobState:\n%s", job, out)
	}
	return m[1]
}

// waitIdle waits until no job is pending or running.
func (c *slurmCluster) waitIdle(t *testing.T, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		out, err := c.run("squeue", "-h", "-o", "%i %T %r")
		if err != nil {
			t.Fatalf("squeue: %v\n%s", err, out)
		}
		if strings.TrimSpace(out) == "" {
			return
		}
		if strings.Contains(out, "DependencyNeverSatisfied") {
			t.Fatalf("a job waits for a dependency that can never be satisfied (afterok on a failed job?):\n%s", out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs still queued after %v:\n%s\n%s", limit, out, c.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logs returns the tails of the daemons' logs.
func (c *slurmCluster) logs() string {
	var b strings.Builder
	for _, name := range []string{"slurmctld.log", "slurmd.log"} {
		text := readLog(c.dir, name)
		if len(text) > 4000 {
			text = text[len(text)-4000:]
		}
		fmt.Fprintf(&b, "== %s\n%s\n", name, text)
	}
	return b.String()
}

func readLog(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// startSlurm starts slurmctld and slurmd for one node (this host, declared
// with 8 CPUs whatever it has, so that the 8 array tasks start in one
// scheduling pass rather than one pass per second for each pair) on
// loopback ports of their own, with state, spool and logs in a
// temporary folder, no authentication (auth/none: the daemons and the
// clients are this test's) and short scheduling and requeue delays. They
// are stopped when the test ends. It skips the test when Slurm is missing
// or does not start, or fails it when $CI or ROLLTPL_REQUIRE_SLURM=1 is set.
func startSlurm(t *testing.T) *slurmCluster {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" || os.Getenv("ROLLTPL_REQUIRE_SLURM") == "1" {
			t.Fatalf("Slurm is required ($CI or ROLLTPL_REQUIRE_SLURM=1 is set): "+format, args...)
		}
		t.Skipf("Slurm unavailable: "+format, args...)
	}
	daemons := map[string]string{}
	for _, name := range []string{"slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel", "bash"} {
		p, err := exec.LookPath(name)
		if err != nil {
			if _, serr := os.Stat("/usr/sbin/" + name); serr != nil {
				unavailable("%s is not installed (apt-get install slurm-wlm)", name)
			}
			p = "/usr/sbin/" + name
		}
		daemons[name] = p
	}
	if os.Geteuid() != 0 {
		unavailable("slurmd must run as root to start jobs")
	}
	host, err := os.Hostname()
	if err != nil {
		unavailable("no host name: %v", err)
	}
	node, _, _ := strings.Cut(host, ".")
	ports := freePorts(t, 2)
	c := &slurmCluster{dir: t.TempDir()}
	c.conf = filepath.Join(c.dir, "slurm.conf")
	for _, d := range []string{"state", "spool"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`ClusterName=rolltpltest
SlurmctldHost=%[1]s(127.0.0.1)
SlurmctldPort=%[2]d
SlurmdPort=%[3]d
AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=5
SlurmUser=root
SlurmdUser=root
StateSaveLocation=%[4]s/state
SlurmdSpoolDir=%[4]s/spool
SlurmctldPidFile=%[4]s/slurmctld.pid
SlurmdPidFile=%[4]s/slurmd.pid
SlurmctldLogFile=%[4]s/slurmctld.log
SlurmdLogFile=%[4]s/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
MessageTimeout=10
KillWait=2
SlurmctldDebug=info
SlurmdDebug=info
NodeName=%[1]s NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
PartitionName=test Nodes=%[1]s Default=YES MaxTime=INFINITE State=UP
`, node, ports[0], ports[1], c.dir)
	if err := os.WriteFile(c.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func(name string, args ...string) {
		cmd := exec.Command(daemons[name], args...)
		cmd.Env = c.env()
		cmd.Stdout, cmd.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			unavailable("%s: %v", name, err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}
	// Cleanups run last-registered first: cancel the jobs left (after a
	// failure), then stop slurmd, then slurmctld.
	start("slurmctld", "-D", "-i", "-f", c.conf)
	start("slurmd", "-D", "-f", c.conf, "-N", node)
	t.Cleanup(func() { _, _ = c.run("scancel", "--full", "--user=root") })
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.run("sinfo", "-h", "-N", "-o", "%T")
		if err == nil && strings.TrimSpace(out) == "idle" {
			return c
		}
		if time.Now().After(deadline) {
			unavailable("the node is not idle 30 s after starting the daemons (sinfo: %q, %v)\n%s", out, err, c.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// freePorts returns n TCP ports free on loopback just now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// compareTrees fails unless folders a and b hold the same files with the
// same bytes.
func compareTrees(t *testing.T, a, b string) {
	t.Helper()
	files := func(root string) map[string][]byte {
		m := map[string][]byte{}
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			data, err := os.ReadFile(path)
			m[rel] = data
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	fa, fb := files(a), files(b)
	for name, data := range fa {
		other, ok := fb[name]
		switch {
		case !ok:
			t.Errorf("%s: missing from the Slurm conversion", name)
		case !bytes.Equal(data, other):
			t.Errorf("%s: differs from the one-job conversion (%d bytes, %d)", name, len(data), len(other))
		}
	}
	for name := range fb {
		if _, ok := fa[name]; !ok {
			t.Errorf("%s: only in the Slurm conversion", name)
		}
	}
	if len(fa) < 10 {
		t.Errorf("the one-job conversion has only %d files", len(fa))
	}
}

// writeQwen2MoE writes a small Qwen1.5-MoE-shaped HF checkpoint (4
// experts and a gated shared expert in each of 2 layers, q/k/v biases,
// untied) that splits at --tp 2 --pp 2 --ep 2: two shards and an index,
// bf16 weights drawn from a seeded normal distribution.
func writeQwen2MoE(t *testing.T, dir string) {
	t.Helper()
	const V, H, I, L, nh, kv, E, moeI, sharedI = 256, 64, 128, 2, 8, 8, 4, 48, 96
	hd := int64(H / nh)
	c := &clitest.Checkpoint{Config: map[string]any{
		"architectures": []string{"Qwen2MoeForCausalLM"}, "model_type": "qwen2_moe",
		"vocab_size": V, "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L,
		"num_attention_heads": nh, "num_key_value_heads": kv, "max_position_embeddings": 4096,
		"rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "attention_dropout": 0.0, "hidden_act": "silu",
		"initializer_range": 0.02, "use_cache": true, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
		"moe_intermediate_size": moeI, "shared_expert_intermediate_size": sharedI, "num_experts": E,
		"num_experts_per_tok": 2, "decoder_sparse_step": 1, "router_aux_loss_coef": 0.001,
	}, Files: map[string]string{"tokenizer_config.json": `{"model_max_length": 4096}`}, Seed: [2]uint64{14, 4}}
	c.Add("model.embed_tokens.weight", V, H)
	for l := range L {
		p := fmt.Sprintf("model.layers.%d.", l)
		c.Add(p+"input_layernorm.weight", H)
		c.Add(p+"post_attention_layernorm.weight", H)
		c.Add(p+"self_attn.q_proj.weight", nh*hd, H)
		c.Add(p+"self_attn.k_proj.weight", kv*hd, H)
		c.Add(p+"self_attn.v_proj.weight", kv*hd, H)
		c.Add(p+"self_attn.o_proj.weight", H, nh*hd)
		c.Add(p+"self_attn.q_proj.bias", nh*hd)
		c.Add(p+"self_attn.k_proj.bias", kv*hd)
		c.Add(p+"self_attn.v_proj.bias", kv*hd)
		c.Add(p+"mlp.gate.weight", E, H)
		for e := range E {
			q := fmt.Sprintf("%smlp.experts.%d.", p, e)
			c.Add(q+"gate_proj.weight", moeI, H)
			c.Add(q+"up_proj.weight", moeI, H)
			c.Add(q+"down_proj.weight", H, moeI)
		}
		c.Add(p+"mlp.shared_expert.gate_proj.weight", sharedI, H)
		c.Add(p+"mlp.shared_expert.up_proj.weight", sharedI, H)
		c.Add(p+"mlp.shared_expert.down_proj.weight", H, sharedI)
		c.Add(p+"mlp.shared_expert_gate.weight", 1, H)
	}
	c.Add("model.norm.weight", H)
	c.Add("lm_head.weight", V, H)
	c.Write(t, dir)
}
