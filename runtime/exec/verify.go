package exec

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/rolltpl/rolltpl/runtime/safetensors"
)

// VerifyOptions configure [Verify].
type VerifyOptions struct {
	// TempDir is where the intermediate checkpoints go; empty means the
	// system's temporary directory.
	TempDir string
	// Progress, if set, is called with the bytes done and the total over
	// the two conversions and the comparison.
	Progress func(done, total int64)
	// Keep keeps the intermediate checkpoints and reports their directory.
	Keep bool
	// Layout is the parallel layout of the intermediate MCA checkpoint:
	// the round trip then goes through its rank files (split, then merged
	// back). The zero value is TP=PP=EP=1.
	Layout Layout
}

// VerifyReport is the outcome of a round trip.
type VerifyReport struct {
	// Compared is the number of tensors compared, Bytes their size.
	Compared int
	Bytes    int64
	// Skipped are tensors the template ignores or drops on purpose; they
	// do not come back.
	Skipped []string
	// Diffs are the tensors that differ (or are missing, or extra).
	Diffs []TensorDiff
	// ConfigDiffs describe config.json keys that differ after the round
	// trip (informational: the reverse map writes back derived values).
	ConfigDiffs []string
	// Dir is the kept intermediate directory (with Keep).
	Dir string
}

// TensorDiff is one tensor that did not survive the round trip.
type TensorDiff struct {
	Name   string
	Reason string
}

// OK reports whether every tensor came back identical.
func (r *VerifyReport) OK() bool { return len(r.Diffs) == 0 }

// Verify converts the HF checkpoint in dir to MCA (in opts.Layout) and
// back in temporary directories and compares every tensor's dtype, shape
// and bytes with the original.
func Verify(ctx context.Context, m *Model, dir string, opts VerifyOptions) (*VerifyReport, error) {
	tmp, err := os.MkdirTemp(opts.TempDir, "rolltpl-verify-")
	if err != nil {
		return nil, err
	}
	rep := &VerifyReport{}
	if opts.Keep {
		rep.Dir = tmp
	} else {
		defer os.RemoveAll(tmp)
	}
	hc, err := ReadHFCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	n := hc.Bytes()
	total := 3 * n
	progress := func(base int64) func(done, _ int64) {
		if opts.Progress == nil {
			return nil
		}
		return func(done, _ int64) { opts.Progress(base+done, total) }
	}
	mcaDir, hfDir := filepath.Join(tmp, "mca"), filepath.Join(tmp, "hf")
	r1, err := ConvertHFToMCA(ctx, m, dir, mcaDir, Options{Progress: progress(0), Layout: opts.Layout})
	if err != nil {
		return nil, fmt.Errorf("HF → MCA: %w", err)
	}
	if _, err := ConvertMCAToHF(ctx, m, mcaDir, hfDir, Options{Progress: progress(n)}); err != nil {
		return nil, fmt.Errorf("MCA → HF: %w", err)
	}
	skip := map[string]bool{}
	for _, i := range r1.Plan.Ignored {
		skip[r1.Plan.Inputs[i].Name] = true
	}
	for _, st := range r1.Plan.Steps {
		if st.Dropped {
			for _, i := range st.Inputs {
				skip[r1.Plan.Inputs[i].Name] = true
			}
		}
	}
	for name := range skip {
		rep.Skipped = append(rep.Skipped, name)
	}
	slices.Sort(rep.Skipped)

	orig, err := safetensors.OpenSharded(dir)
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	back, err := safetensors.OpenSharded(hfDir)
	if err != nil {
		return nil, err
	}
	defer back.Close()
	var done int64
	for _, t := range orig.Tensors() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if skip[t.Name] {
			continue
		}
		b, ok := back.Lookup(t.Name)
		switch {
		case !ok:
			rep.Diffs = append(rep.Diffs, TensorDiff{t.Name, "missing after the round trip"})
		case b.DType != t.DType || !b.Shape.Equal(t.Shape):
			rep.Diffs = append(rep.Diffs, TensorDiff{t.Name, fmt.Sprintf("%v%v became %v%v", t.DType, t.Shape, b.DType, b.Shape)})
		default:
			x, y := t.File.Data(t.TensorInfo), b.File.Data(b.TensorInfo)
			if off := firstDiff(x, y); off >= 0 {
				rep.Diffs = append(rep.Diffs, TensorDiff{t.Name, fmt.Sprintf("bytes differ from byte %d on", off)})
			}
			rep.Compared++
			rep.Bytes += t.Size
		}
		done += t.Size
		if opts.Progress != nil {
			opts.Progress(2*n+done, total)
		}
	}
	for _, b := range back.Tensors() {
		if _, ok := orig.Lookup(b.Name); !ok {
			rep.Diffs = append(rep.Diffs, TensorDiff{b.Name, "not in the original checkpoint"})
		}
	}
	rep.ConfigDiffs = diffConfigs(dir, hfDir)
	return rep, nil
}

// diffConfigs compares two config.json files key by key (top level).
func diffConfigs(a, b string) []string {
	_, _, x, err := ReadHFConfig(a)
	if err != nil {
		return []string{err.Error()}
	}
	_, _, y, err := ReadHFConfig(b)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, k := range x.Keys() {
		xv, _ := x.Get(k)
		yv, ok := y.Get(k)
		if !ok {
			out = append(out, fmt.Sprintf("%s: removed", k))
		} else if !bytes.Equal(PyJSON(xv, -1, true), PyJSON(yv, -1, true)) {
			out = append(out, fmt.Sprintf("%s: %s became %s", k, PyJSON(xv, -1, true), PyJSON(yv, -1, true)))
		}
	}
	for _, k := range y.Keys() {
		if !x.Has(k) {
			yv, _ := y.Get(k)
			out = append(out, fmt.Sprintf("%s: added %s", k, PyJSON(yv, -1, true)))
		}
	}
	slices.Sort(out)
	return out
}

// firstDiff returns the offset of the first byte where two equally long
// mapped slices differ, or -1. It compares in chunks and drops the pages
// of each compared chunk, so memory stays bounded for any tensor size.
func firstDiff(x, y []byte) int64 {
	const chunk = 16 << 20
	for off := 0; off < len(x); off += chunk {
		end := min(off+chunk, len(x))
		a, b := x[off:end], y[off:end]
		eq := bytes.Equal(a, b)
		if !eq {
			for i := range a {
				if a[i] != b[i] {
					return int64(off + i)
				}
			}
		}
		dropPages(a)
		dropPages(b)
	}
	return -1
}
