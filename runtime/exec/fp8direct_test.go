package exec_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/blockio"
	"github.com/rolltpl/rolltpl/runtime/exec"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// directSynth is an FP8-ready qwen3 checkpoint whose projections are large
// enough (128-320 KiB dequantized) for blockio's direct writes.
func directSynth() synth {
	return synthWith("qwen3", tensor.BF16, func(d *dims, cfg map[string]any) { d.kv, d.hidden, d.inter = 2, 256, 640 })
}

// directOK reports whether blockio writes files in dir with direct I/O
// under DirectAuto (a local file system taking O_DIRECT).
func directOK(dir string) bool { return blockio.DirectSupported(dir) }

// tensorFiles returns the bytes of the .safetensors and .pt files under
// dir by relative path.
func tensorFiles(t *testing.T, dir string) map[string][]byte {
	return readFiles(t, dir, func(name string) bool {
		ext := filepath.Ext(name)
		return ext == ".safetensors" || ext == ".pt"
	})
}

// TestDirectWritesSameBytes: the FP8 conversions (dequantize, HF -> MCA at
// TP1 and TP2) and a plain MCA -> HF write the same bytes with blockio's
// direct writes on as with every byte through the page cache, the
// dequantized ones equal the oracle's, and with direct writes on most of
// the bytes went direct (where the file system takes O_DIRECT).
func TestDirectWritesSameBytes(t *testing.T) {
	defer blockio.SetDirect(blockio.SetDirect(blockio.DirectOn))
	tmp := t.TempDir()
	fx := writeFP8(t, directSynth(), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.F32, [2]int64{128, 128}, 2, 21)
	m := stdlibModel(t, "qwen3")
	ctx := context.Background()
	runs := []struct {
		name string
		run  func(dst string) error
	}{
		{"dequantize", func(dst string) error {
			_, err := exec.DequantizeHF(ctx, fx.dir, dst, exec.DequantizeOptions{Scales: stdlibScales(t)})
			return err
		}},
		{"mca1", func(dst string) error {
			_, err := exec.ConvertHFToMCA(ctx, m, fx.dir, dst, exec.Options{})
			return err
		}},
		{"mca2", func(dst string) error {
			_, err := exec.ConvertHFToMCA(ctx, m, fx.dir, dst, exec.Options{Layout: exec.Layout{TP: 2}})
			return err
		}},
		{"hf", func(dst string) error { // plain MCA -> HF, merging TP2
			_, err := exec.ConvertMCAToHF(ctx, m, filepath.Join(filepath.Dir(dst), "mca2"), dst, exec.Options{})
			return err
		}},
	}
	var outs [2]string
	for i, on := range []bool{false, true} {
		blockio.SetDirect(map[bool]blockio.Direct{false: blockio.DirectOff, true: blockio.DirectOn}[on])
		outs[i] = filepath.Join(tmp, map[bool]string{false: "cached", true: "direct"}[on])
		before := blockio.DirectWritten()
		var total int64
		for _, r := range runs {
			dst := filepath.Join(outs[i], r.name)
			if err := r.run(dst); err != nil {
				t.Fatalf("direct %v: %s: %v", on, r.name, err)
			}
			for _, b := range tensorFiles(t, dst) {
				total += int64(len(b))
			}
		}
		direct := blockio.DirectWritten() - before
		switch {
		case !on && direct != 0:
			t.Errorf("direct writes off: %d bytes written direct", direct)
		case on && directOK(tmp) && direct < total/2:
			t.Errorf("direct writes on: %d of %d bytes written direct", direct, total)
		}
	}
	sameTensors(t, fx.ref, filepath.Join(outs[1], "dequantize"))
	for _, r := range runs {
		a, b := tensorFiles(t, filepath.Join(outs[0], r.name)), tensorFiles(t, filepath.Join(outs[1], r.name))
		if len(a) == 0 || len(a) != len(b) {
			t.Fatalf("%s: %d tensor files through the page cache, %d direct", r.name, len(a), len(b))
		}
		for k, v := range a {
			if !bytes.Equal(v, b[k]) {
				t.Errorf("%s: %s differs between direct and page-cache writes", r.name, k)
			}
		}
	}
}

// TestDirectWritesFailure: a NaN code late in a large FP8 weight, found
// while the output is being written with direct writes, aborts dequantize
// and HF -> MCA with the tensor named and nothing left behind.
func TestDirectWritesFailure(t *testing.T) {
	defer blockio.SetDirect(blockio.SetDirect(blockio.DirectOn))
	tmp := t.TempDir()
	var w string
	fx := writeFP8Mut(t, directSynth(), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.F32, [2]int64{128, 128}, 1, 22,
		func(specs []safetensors.Spec, d map[string][]byte, c map[string]any) []safetensors.Spec {
			w = "model.layers.1.mlp.down_proj.weight" // the last layer's, late in the file
			d[w][len(d[w])-1000] = 0x7F
			return specs
		})
	m := stdlibModel(t, "qwen3")
	ctx := context.Background()
	for _, c := range []struct {
		name string
		run  func(dst string) error
	}{
		{"dequantize", func(dst string) error {
			_, err := exec.DequantizeHF(ctx, fx.dir, dst, exec.DequantizeOptions{Scales: stdlibScales(t)})
			return err
		}},
		{"convert", func(dst string) error {
			_, err := exec.ConvertHFToMCA(ctx, m, fx.dir, dst, exec.Options{})
			return err
		}},
	} {
		dst := filepath.Join(tmp, c.name)
		before := blockio.DirectWritten()
		err := c.run(dst)
		if err == nil || !strings.Contains(err.Error(), w) || !strings.Contains(err.Error(), "NaN code 0x7F") {
			t.Errorf("%s: %v, want the NaN code of %s", c.name, err, w)
		}
		if directOK(tmp) && blockio.DirectWritten() == before {
			t.Errorf("%s: nothing was written direct before the failure", c.name)
		}
		if _, serr := os.Stat(dst); serr == nil {
			t.Errorf("%s: %s was written", c.name, dst)
		}
		if left, _ := filepath.Glob(filepath.Join(tmp, ".*")); len(left) > 0 {
			t.Errorf("%s: temporaries left: %v", c.name, left)
		}
	}
}

// TestVerifyWritesThroughPageCache: verify's intermediate MCA checkpoint,
// read back right away, is written through the page cache even with
// direct writes on, where a conversion of the same checkpoint writes
// direct.
func TestVerifyWritesThroughPageCache(t *testing.T) {
	defer blockio.SetDirect(blockio.SetDirect(blockio.DirectOn))
	tmp := t.TempDir()
	if !directOK(tmp) {
		t.Skip("no direct I/O here")
	}
	fx := writeFP8(t, directSynth(), filepath.Join(tmp, "fp8"), filepath.Join(tmp, "ref"), tensor.F32, [2]int64{128, 128}, 1, 23)
	m := stdlibModel(t, "qwen3")
	for _, src := range []string{fx.ref, fx.dir} {
		before := blockio.DirectWritten()
		rep, err := exec.Verify(context.Background(), m, src, exec.VerifyOptions{TempDir: tmp})
		if err != nil || len(rep.Diffs) > 0 {
			t.Fatalf("verify %s: %v, %v", src, err, rep)
		}
		if d := blockio.DirectWritten() - before; d != 0 {
			t.Errorf("verify %s: %d bytes written direct", src, d)
		}
		before = blockio.DirectWritten()
		if _, err := exec.ConvertHFToMCA(context.Background(), m, src, filepath.Join(tmp, "mca-"+filepath.Base(src)), exec.Options{}); err != nil {
			t.Fatal(err)
		}
		if blockio.DirectWritten() == before {
			t.Errorf("convert %s: nothing written direct", src)
		}
	}
}
