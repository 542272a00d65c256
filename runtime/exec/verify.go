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
	"github.com/rolltpl/rolltpl/runtime/ops"
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
	// Progress, if set, is called with the figures so far over the two
	// conversions and the comparison.
	Progress func(Progress)
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
	// Diffs are the tensors that differ (or are missing, or extra). A
	// tensor of a lossy op (Lossy) is here when it differs from its own
	// round trip.
	Diffs []TensorDiff
	// Lossy are the tensors made by an op that is lossy by nature in
	// their dtype (ops.Lossy: the zero-centred RMSNorm's (w - 1) + 1):
	// they are compared with the original's own round trip through the
	// op, not with the original bytes, and counted in Compared.
	Lossy []LossyTensor
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

// LossyTensor is a tensor of a lossy op that came back as its own round
// trip: how many of its elements it changed, and the largest distance,
// in units in the last place, between the original and the round trip.
type LossyTensor struct {
	Name    string
	Kind    string
	DType   tensor.DType
	Changed int64
	MaxULP  uint64
}

// LossySummary sums up Lossy: the tensors changed by their round trip,
// the largest distance in ulps, and the "kind in DType" pairs seen.
func (r *VerifyReport) LossySummary() (changed int, maxULP uint64, ops []string) {
	for _, l := range r.Lossy {
		if l.Changed > 0 {
			changed++
		}
		maxULP = max(maxULP, l.MaxULP)
		op := fmt.Sprintf("%s in %v", l.Kind, l.DType)
		if !slices.Contains(ops, op) {
			ops = append(ops, op)
		}
	}
	slices.Sort(ops)
	return changed, maxULP, ops
}

// OK reports whether every tensor came back identical.
func (r *VerifyReport) OK() bool { return len(r.Diffs) == 0 }

// verifyPrefix starts the names of Verify's temporary folders, followed by
// the owner fields of internal/tempname: a later Verify removes those of
// runs that were killed.
const verifyPrefix = "rolltpl-verify-"

// workDir creates a temporary working folder in dir named prefix plus the
// owner fields of runtime/tempname (0700), after removing the folders of
// that prefix whose writers were killed (told to notice, naming the
// interrupted run): a temporary of
// an operation killed by SIGKILL or a power cut is removed by the next
// run, one of a canceled operation by the caller's deferred RemoveAll.
// An empty dir is the system's temporary folder; a missing one is
// created, as the output folder beside it would be.
func workDir(dir, prefix, run string, notice func(string)) (string, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	outdir.RemoveStale(dir, prefix, run, notice)
	return tempname.Mkdir(dir, prefix, 0o700)
}

// Verify converts the HF checkpoint in dir to MCA (in opts.Layout) in a
// temporary directory, then converts that back and compares every tensor's
// dtype, shape and bytes with the original as it is produced (a tensor
// of an op that is lossy in its dtype with the original's own round trip
// through that op, see [VerifyReport.Lossy]): the HF
// shards are never written, so the round trip needs temporary space for
// the MCA checkpoint only, and reads the original once. The temporary
// folder (TempDir/rolltpl-verify-OWNER) is removed on return, canceled
// included; those of killed runs are removed by the next Verify.
func Verify(ctx context.Context, m *Model, dir string, opts VerifyOptions) (*VerifyReport, error) {
	tmpDir := opts.TempDir
	if tmpDir == "" {
		tmpDir = os.TempDir()
	}
	var tmp string
	var err error
	if opts.Keep {
		outdir.RemoveStale(tmpDir, verifyPrefix, "conversion", opts.Notice)
		// Named without an owner: a later Verify must not remove it.
		tmp, err = os.MkdirTemp(tmpDir, verifyPrefix+"kept-")
	} else {
		tmp, err = workDir(tmpDir, verifyPrefix, "conversion", opts.Notice)
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
	// Both halves' figures in one: the first half's, plus the second
	// half's totals, estimated from the checkpoint (what the second half
	// compares) until its plan says.
	var first Progress
	progress := func(second bool) func(Progress) {
		if opts.Progress == nil {
			return nil
		}
		return func(p Progress) {
			if !second {
				first = p
				opts.Progress(Progress{Bytes: p.Bytes, TotalBytes: p.TotalBytes + n, Tensors: p.Tensors, TotalTensors: p.TotalTensors + len(hc.Tensors)})
				return
			}
			opts.Progress(Progress{Bytes: first.TotalBytes + p.Bytes, TotalBytes: first.TotalBytes + p.TotalBytes,
				Tensors: first.TotalTensors + p.Tensors, TotalTensors: first.TotalTensors + p.TotalTensors})
		}
	}
	mcaDir, hfDir := filepath.Join(tmp, "mca"), filepath.Join(tmp, "hf")
	r1, err := ConvertHFToMCA(ctx, m, dir, mcaDir, Options{Progress: progress(false), Layout: opts.Layout, pageCache: true})
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
	back := Options{Progress: progress(true), compare: c}
	if r1.Plan.FP8 != nil && len(r1.Plan.FP8.Pairs) > 0 {
		// FP8: quantize back with the source's scales (byte-exact, §2.5).
		back.Quantize = &QuantizeOptions{Scales: ScalesReuse}
	}
	if verifyMCAHook != nil {
		if err := verifyMCAHook(mcaDir); err != nil {
			return nil, err
		}
	}
	if _, err := ConvertMCAToHF(ctx, m, mcaDir, hfDir, back); err != nil {
		return nil, fmt.Errorf("MCA → HF: %w", err)
	}
	rep.Diffs, rep.Compared, rep.Bytes, rep.Lossy = c.diffs, c.compared, c.bytes, c.lossy
	for _, t := range orig.Tensors() {
		if !skip[t.Name] && !c.seen[t.Name] {
			rep.Diffs = append(rep.Diffs, TensorDiff{t.Name, "missing after the round trip"})
		}
	}
	slices.SortStableFunc(rep.Diffs, func(a, b TensorDiff) int { return strings.Compare(a.Name, b.Name) })
	rep.ConfigDiffs = diffConfigs(dir, hfDir)
	return rep, nil
}

// verifyMCAHook, set by tests, is called with the intermediate MCA
// checkpoint before it is converted back (to damage it).
var verifyMCAHook func(mcaDir string) error

// comparer is the sink of Verify's MCA → HF conversion: it compares each
// tensor the conversion produces with the original tensor of that name,
// or, for a tensor of an op that is lossy in its dtype, with the
// original's round trip through that op (ops.RoundTrip, block by block:
// every lossy op is element-wise).
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
	// kinds maps each output name of the conversion to its op kind.
	kinds map[string]string
	lossy []LossyTensor
	// the lossy tensor being compared (cur nil: compare bytes)
	cur      *LossyTensor
	cfg      ops.Config
	size     int64
	win, rt  []byte
	lossyErr error
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
	if c.kinds == nil {
		c.kinds = map[string]string{}
		for _, st := range ex.plan.Steps {
			for _, out := range st.Outputs {
				c.kinds[out.Name] = st.Kind
			}
		}
	}
	c.f, c.off, c.pos, c.diffAt, c.cur = f, o.Offset, 0, -1, nil
	if kind := c.kinds[name]; ops.Lossy(kind, t.DType) {
		c.cur = &LossyTensor{Name: name, Kind: kind, DType: t.DType}
		c.cfg, c.size, c.lossyErr = ex.cfg, t.Len(), nil
		c.cfg.Alloc = nil // the executor's staging area holds t
	}
	if err := ex.write(c, t); err != nil {
		return err
	}
	if c.lossyErr != nil {
		return fmt.Errorf("%s: the round trip of %s: %v", name, c.cur.Kind, c.lossyErr)
	}
	switch {
	case c.diffAt >= 0 && c.cur != nil:
		c.diffs = append(c.diffs, TensorDiff{name, fmt.Sprintf("bytes differ from its own round trip through %s (lossy in %v) from byte %d on", c.cur.Kind, t.DType, c.diffAt)})
	case c.diffAt >= 0:
		c.diffs = append(c.diffs, TensorDiff{name, fmt.Sprintf("bytes differ from byte %d on", c.diffAt)})
	case c.cur != nil:
		c.lossy = append(c.lossy, *c.cur)
	}
	c.cur = nil
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
		if c.cur != nil {
			if c.diffAt < 0 && c.lossyErr == nil {
				c.lossyErr = c.compareRoundTrip(p[:len(b)])
			}
		} else if c.diffAt < 0 {
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

// compareRoundTrip compares p, the next bytes of a lossy tensor, with the
// original's round trip: it reads the whole elements of the original that
// p overlaps, runs them through the op and back, and adds the elements
// that start within p to the tensor's ulp count.
func (c *comparer) compareRoundTrip(p []byte) error {
	es := int64(c.cur.DType.Size())
	lo := c.pos / es * es
	hi := min((c.pos+int64(len(p))+es-1)/es*es, c.size)
	if cap(c.win) < int(hi-lo) {
		c.win = make([]byte, hi-lo)
	}
	win := c.win[:hi-lo]
	if err := blockio.ReadFull(c.f, c.f.Name(), win, c.off+lo); err != nil {
		return err
	}
	in, err := tensor.New(c.cur.DType, tensor.Shape{(hi - lo) / es}, win)
	if err != nil {
		return err
	}
	rt, err := ops.RoundTrip(c.cur.Kind, in, c.cfg)
	if err != nil {
		return err
	}
	c.rt = append(c.rt[:0], rt.Bytes()...)
	want := c.rt[c.pos-lo : c.pos-lo+int64(len(p))]
	if !bytes.Equal(want, p) {
		for i := range want {
			if want[i] != p[i] {
				c.diffAt = c.pos + int64(i)
				break
			}
		}
	}
	first := (c.pos+es-1)/es*es - lo
	changed, ulp := ops.ULPDiff(c.cur.DType, win[first:], c.rt[first:])
	c.cur.Changed += changed
	c.cur.MaxULP = max(c.cur.MaxULP, ulp)
	return nil
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
