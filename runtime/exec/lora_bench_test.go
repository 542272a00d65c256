package exec_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// BenchmarkLoRAExportVsCopy is acceptance 5 of issue 13: a ROLL LoRA
// adapter of about ROLLTPL_LORA_BENCH_MIB MiB (default 1024; F32, rank 256,
// a Llama-shaped model with hidden 4096) is exported to PEFT, and the time
// is compared with copying the adapter's rank file (what `cp` does). It
// reports export/copy (target <= 1.3) and the export rate.
func BenchmarkLoRAExportVsCopy(b *testing.B) {
	mib := int64(1024)
	if v := os.Getenv("ROLLTPL_LORA_BENCH_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("ROLLTPL_LORA_BENCH_MIB=%q", v)
		}
		mib = n
	}
	const H, inter, r = 4096, 14336, 256
	// bytes per layer: F32 A and B of q, k, v, o, gate, up, down
	perLayer := int64(4 * r * (3*H + (H + 2*1024) + 2*H + 3*(H+inter) + 3*0))
	layers := max(1, int(mib<<20/perLayer))
	s := synthWith("llama", tensor.BF16, func(d *dims, cfg map[string]any) {
		d.hidden, d.inter, d.layers, d.heads, d.kv = H, inter, int64(layers), 32, 8
	})
	dir := b.TempDir()
	hf, peft, save := filepath.Join(dir, "hf"), filepath.Join(dir, "peft"), filepath.Join(dir, "save")
	os.MkdirAll(hf, 0o755)
	cfg, _ := json.Marshal(s.config)
	writeFile(b, filepath.Join(hf, "config.json"), cfg)
	writePEFTFixture(b, s, peft, r, 2*r, false)
	m := stdlibModel(b, "llama")
	os.MkdirAll(save, 0o755)
	if _, err := exec.ImportPEFT(context.Background(), m, peft, hf, filepath.Join(save, "default"), exec.LoRAImportOptions{}); err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(peft)
	rank := filepath.Join(save, "default", "iter_0000001", "mp_rank_00", exec.MCACheckpointPT)
	st, err := os.Stat(rank)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	b.ResetTimer()
	var exp, cp time.Duration
	var outBytes int64
	for i := range b.N {
		out := filepath.Join(dir, "out"+strconv.Itoa(i))
		t0 := time.Now()
		if _, err := exec.ConvertLoRAToPEFT(context.Background(), m, save, out, exec.LoRAOptions{}); err != nil {
			b.Fatal(err)
		}
		exp += time.Since(t0)
		t0 = time.Now()
		copyFile(b, rank, filepath.Join(dir, "copy"+strconv.Itoa(i)))
		cp += time.Since(t0)
		b.StopTimer()
		if st, err := os.Stat(filepath.Join(out, exec.AdapterModelName)); err == nil {
			outBytes = st.Size()
		}
		os.RemoveAll(out)
		os.Remove(filepath.Join(dir, "copy"+strconv.Itoa(i)))
		b.StartTimer()
	}
	b.ReportMetric(float64(exp)/float64(cp), "export/copy")
	// The PEFT file is larger than the rank file: the shared A tensors are
	// written once per HF name (q/k/v, gate/up).
	b.ReportMetric(float64(exp)/(float64(cp)*float64(outBytes)/float64(st.Size())), "export/copy-of-output-size")
	b.ReportMetric(float64(st.Size())/(1<<20), "MiB")
}

func copyFile(b *testing.B, src, dst string) {
	f, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	g, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(g, f); err != nil {
		b.Fatal(err)
	}
	if err := g.Close(); err != nil {
		b.Fatal(err)
	}
}
