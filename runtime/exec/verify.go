package exec

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/blockio"
	"github.com/rolltpl/rolltpl/runtime/outdir"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/tempname"
	"github.com/rolltpl/rolltpl/runtime/tensor"
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
	// Notice, if set, is told about stale temporary folders of killed
	// verify runs that were removed.
	Notice func(msg string)
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

// verifyPrefix starts the names of Verify's temporary folders, followed by
// the owner fields of internal/tempname: a later Verify removes those of
// runs that were killed.
const verifyPrefix = "rolltpl-verify-"

// Verify converts the HF checkpoint in dir to MCA (in opts.Layout) in a
// temporary directory, then converts that back and compares every tensor's
// dtype, shape and bytes with the original as it is produced: the HF
// shards are never written, so the round trip needs temporary space for
// the MCA checkpoint only, and reads the original once. The temporary
// folder (TempDir/rolltpl-verify-OWNER) is removed on return, canceled
// included; those of killed runs are removed by the next Verify.
func Verify(ctx context.Context, m *Model, dir string, opts VerifyOptions) (*VerifyReport, error) {
	tmpDir := opts.TempDir
	if tmpDir == "" {
		tmpDir = os.TempDir()
	}
	outdir.RemoveStale(tmpDir, verifyPrefix, "conversion", opts.Notice)
	var tmp string
	var err error
	if opts.Keep {
		// Named without an owner: a later Verify must not remove it.
		tmp, err = os.MkdirTemp(tmpDir, verifyPrefix+"kept-")
	} else {
		tmp, err = tempname.Mkdir(tmpDir, verifyPrefix, 0o700)
	}
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
	total := 2 * n
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
	skip := map[string]bool{}
	for _, i := range r1.Plan.Ignored {
		skip[r1.Plan.Inputs[i].Name] = true
	}
	for _, i := range r1.Plan.SkippedMTP {
		skip[r1.Plan.Inputs[i].Name] = true
	}
	for _, st := range r1.Plan.Steps {
		if st.Dropped {
			for _, i := range st.Inputs {
				skip[r1.Plan.Inputs[i].Name] = true
			}
		}
	}
	r1.Plan.FP8.skipScales(skip)
	for name := range skip {
		rep.Skipped = append(rep.Skipped, name)
	}
	slices.Sort(rep.Skipped)

	orig, err := safetensors.OpenSharded(dir)
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	c := &comparer{orig: orig, files: map[string]*os.File{}, seen: map[string]bool{}}
	defer c.close()
	back := Options{Progress: progress(n), compare: c}
	if r1.Plan.FP8 != nil && len(r1.Plan.FP8.Pairs) > 0 {
		// FP8: quantize back with the source's scales (byte-exact, §2.5).
		back.Quantize = &QuantizeOptions{Scales: ScalesReuse}
	}
	if _, err := ConvertMCAToHF(ctx, m, mcaDir, hfDir, back); err != nil {
		return nil, fmt.Errorf("MCA → HF: %w", err)
	}
	rep.Diffs, rep.Compared, rep.Bytes = c.diffs, c.compared, c.bytes
	for _, t := range orig.Tensors() {
		if !skip[t.Name] && !c.seen[t.Name] {
			rep.Diffs = append(rep.Diffs, TensorDiff{t.Name, "missing after the round trip"})
		}
	}
	slices.SortStableFunc(rep.Diffs, func(a, b TensorDiff) int { return strings.Compare(a.Name, b.Name) })
	rep.ConfigDiffs = diffConfigs(dir, hfDir)
	return rep, nil
}

// comparer is the sink of Verify's MCA → HF conversion: it compares each
// tensor the conversion produces with the original tensor of that name.
type comparer struct {
	orig     *safetensors.Sharded
	files    map[string]*os.File
	seen     map[string]bool
	diffs    []TensorDiff
	compared int
	bytes    int64
	buf      []byte
	pipe     blockio.Pipe
	// the tensor being compared
	f        *os.File
	off, pos int64
	diffAt   int64
}

func (c *comparer) close() {
	for _, f := range c.files {
		f.Close()
	}
}

// tensor compares t, produced under name, with the original.
func (c *comparer) tensor(ex *executor, name string, t tensor.Tensor) error {
	o, ok := c.orig.Lookup(name)
	if !ok {
		c.diffs = append(c.diffs, TensorDiff{name, "not in the original checkpoint"})
		ex.progress(t.Len())
		return nil
	}
	c.seen[name] = true
	if o.DType != t.DType || !o.Shape.Equal(t.Shape) {
		c.diffs = append(c.diffs, TensorDiff{name, fmt.Sprintf("%v%v became %v%v", o.DType, o.Shape, t.DType, t.Shape)})
		ex.progress(t.Len())
		return nil
	}
	f, ok := c.files[o.File.Path()]
	if !ok {
		var err error
		if f, err = os.Open(o.File.Path()); err != nil {
			return err
		}
		c.files[o.File.Path()] = f
	}
	c.f, c.off, c.pos, c.diffAt = f, o.Offset, 0, -1
	if err := ex.write(c, t); err != nil {
		return err
	}
	if c.diffAt >= 0 {
		c.diffs = append(c.diffs, TensorDiff{name, fmt.Sprintf("bytes differ from byte %d on", c.diffAt)})
	}
	c.compared++
	c.bytes += t.Len()
	return nil
}

// Write compares the next bytes of the current tensor with the original.
func (c *comparer) Write(p []byte) (int, error) {
	if c.buf == nil {
		c.buf = make([]byte, blockio.DefaultBlock)
	}
	n := len(p)
	for len(p) > 0 {
		b := c.buf[:min(len(p), len(c.buf))]
		if c.diffAt < 0 {
			if err := blockio.ReadFull(c.f, c.f.Name(), b, c.off+c.pos); err != nil {
				return n - len(p), err
			}
			if !bytes.Equal(b, p[:len(b)]) {
				for i := range b {
					if b[i] != p[i] {
						c.diffAt = c.pos + int64(i)
						break
					}
				}
			}
		}
		c.pos += int64(len(b))
		p = p[len(b):]
	}
	return n, nil
}

// Copy compares the n bytes fill produces, block by block.
func (c *comparer) Copy(n int64, fill blockio.Fill) error {
	_, err := c.pipe.Copy(c, n, fill, nil)
	return err
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
		} else if !bytes.Equal(pyjson.Encode(xv, -1, true), pyjson.Encode(yv, -1, true)) {
			out = append(out, fmt.Sprintf("%s: %s became %s", k, pyjson.Encode(xv, -1, true), pyjson.Encode(yv, -1, true)))
		}
	}
	for _, k := range y.Keys() {
		if !x.Has(k) {
			yv, _ := y.Get(k)
			out = append(out, fmt.Sprintf("%s: added %s", k, pyjson.Encode(yv, -1, true)))
		}
	}
	slices.Sort(out)
	return out
}
