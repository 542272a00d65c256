package exec

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/rolltpl/rolltpl/runtime/mcaconfig"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
	"github.com/rolltpl/rolltpl/runtime/tempname"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/lang/srcfile"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// This file records which template and which conversion wrote an MCA
// checkpoint, so that later readers can tell a checkpoint's parts apart
// without reading tensor data:
//
//   - mca_config.json gets three keys (ROLL's McaModelConfig drops keys
//     that are not its fields with a warning when it loads the file, so
//     they are safe there; formats.md §MCA config): the template's name
//     (TemplateKey), its digest (TemplateDigestKey) and the run id of the
//     conversion (RunKey); a template with alternative ops adds a fourth,
//     the layers each of them converted (LayerOpsKey, layerops.go).
//   - every rank directory gets a run stamp (RunStampName) written after
//     its rank file: the run id, the layout and the rank.
//
// The run id is derived from what every job of one conversion shares —
// the mca_config.json content (layout, config.json, template digest), the
// build flags and the identity of the source weights — so the jobs of a
// multi-job conversion agree on it without communicating, a requeued job
// or a rerun of the same conversion gets the same id (its files are
// accepted), and a conversion of another source, template or layout gets
// another.

// The keys rolltpl adds to mca_config.json and the run stamp file name.
const (
	// TemplateKey records the name of the template (its HF model type).
	TemplateKey = mcaconfig.TemplateKey
	// TemplateDigestKey records the template's digest
	// ([Model.TemplateDigest]).
	TemplateDigestKey = mcaconfig.TemplateDigestKey
	// RunKey records the run id of the conversion.
	RunKey = "rolltpl_run"
	// RunStampName is the run stamp in each rank directory, beside
	// model_optim_rng.pt.
	RunStampName = "rolltpl_run.json"
)

// TemplateDigest returns the hex SHA-256 of the template the model was
// built from: a canonical encoding of the compiled template (its imports,
// `use` and `extends` expanded; its parallel classification merged without
// build flags) that leaves out source positions, comments and layout, so
// that reformatting a template keeps its digest while any change of what
// a conversion does changes it.
func (m *Model) TemplateDigest() string {
	if m.digest == "" {
		// A Model built without NewModel: its classification as merged.
		return templateDigest(m.Template, m.Parallel)
	}
	return m.digest
}

// digestWriter writes the canonical encoding: every string length
// prefixed, every list count prefixed, so that no two different templates
// encode alike.
type digestWriter struct{ h hash.Hash }

// str writes a length-prefixed string.
func (w digestWriter) str(s string) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
	w.h.Write(n[:])
	w.h.Write([]byte(s))
}

// count writes the length of a list that follows.
func (w digestWriter) count(n int) { w.str(fmt.Sprint(n)) }

// strs writes a counted list of strings.
func (w digestWriter) strs(ss []string) {
	w.count(len(ss))
	for _, s := range ss {
		w.str(s)
	}
}

// value writes a template constant: its kind, then its text or elements.
func (w digestWriter) value(v ir.Value) {
	w.str(fmt.Sprint(int(v.Kind)))
	switch v.Kind {
	case ir.Bool:
		w.str(fmt.Sprint(v.Bool))
	case ir.Int, ir.Float, ir.String:
		w.str(v.Text)
	case ir.List:
		w.count(len(v.Elems))
		for _, e := range v.Elems {
			w.value(e)
		}
	}
}

// name writes a weight name: fixed, or chosen by a build flag or a
// per-layer condition between two names.
func (w digestWriter) name(n *ir.Name) {
	if n == nil {
		w.str("nil")
		return
	}
	w.str("name")
	w.str(n.Value)
	switch {
	case n.Computed != nil:
		w.str("computed " + n.Computed.String())
		w.str("")
	case n.Cond == nil:
		w.str("")
		w.str("")
	default:
		// The encodings of the conditions of earlier releases (a build flag;
		// mca.KEY[layer] == "V") are kept, so recorded digests still match.
		c := n.Cond
		if c.Kind == ir.ExprRef {
			w.str(c.Name)
			w.str("")
		} else if key, val, ok := legacyLayerCond(c); ok {
			w.str("mca." + key + "[layer] == " + strconv.Quote(val))
			w.str("layer")
			w.str(key)
			w.str(val)
		} else {
			w.str(ir.CondKey(c))
			w.str("")
		}
	}
	if n.Cond != nil {
		w.name(n.Then)
		w.name(n.Else)
	}
}

// legacyLayerCond recognizes the one per-layer condition earlier releases
// had, mca.KEY[layer] == "V", for the digest's compatibility only.
func legacyLayerCond(c *ir.Expr) (key, val string, ok bool) {
	if c.Kind != ir.ExprBinary || c.Op != "==" || len(c.Args) != 2 {
		return "", "", false
	}
	ix, lit := c.Args[0], c.Args[1]
	if lit.Kind != ir.ExprLit || lit.Lit.Kind != ir.String || ix.Kind != ir.ExprIndex || len(ix.Args) != 2 {
		return "", "", false
	}
	f, l := ix.Args[0], ix.Args[1]
	if l.Kind != ir.ExprRef || l.Name != "layer" || f.Kind != ir.ExprField || len(f.Args) != 1 ||
		f.Args[0].Kind != ir.ExprRef || f.Args[0].Name != "mca" {
		return "", "", false
	}
	return f.Name, lit.Lit.Text, true
}

// templateDigest computes [Model.TemplateDigest] from the template and
// its parallel classification merged without build flags. Every field of
// ir.Template that affects a conversion is encoded (TestTemplateDigestFields
// fails when ir.Template gains a field this does not know).
func templateDigest(t *ir.Template, par ir.Effective) string {
	w := digestWriter{sha256.New()}
	w.str("rolltpl-template-v1")
	w.str(t.Name)
	w.str(t.LayerPrefix)
	w.str(t.ExpertPrefix)
	w.count(len(t.Config))
	for _, c := range t.Config {
		w.str(c.HF)
		w.str(c.MCA)
	}
	w.count(len(t.KeyPrefixes))
	for _, r := range t.KeyPrefixes {
		w.str(r.Prefix)
		w.strs(r.Unless)
	}
	w.count(len(t.Constants))
	for _, c := range t.Constants {
		w.str(c.Key)
		w.value(c.Value)
	}
	w.count(len(t.Invalid))
	for _, l := range t.Invalid {
		w.str(l.Value)
	}
	// ROLL's renames of FP8 scales are never run (plan.go): left out, so
	// that deepseek_v3's digest is what it was before they were registered.
	ops := slices.DeleteFunc(slices.Clone(t.Ops), t.ScaleOp)
	w.count(len(ops))
	for _, o := range ops {
		w.str(o.Kind)
		for _, names := range [][]ir.Name{o.HF, o.MCA} {
			w.count(len(names))
			for i := range names {
				w.name(&names[i])
			}
		}
		keys := o.ParamNames()
		w.count(len(keys))
		for _, k := range keys {
			w.str(k)
			w.value(o.Params[k])
		}
		if len(o.Inputs) > 0 { // absent before tensor steps: digests of other templates unchanged
			w.str("inputs")
			w.count(len(o.Inputs))
			for _, x := range o.Inputs {
				w.tensorExpr(x, 0)
			}
		}
	}
	for _, c := range ir.ParallelClasses {
		w.str(c)
		w.strs(par.Lists[c])
	}
	for _, c := range ir.ParallelMaps {
		w.str(c)
		w.count(len(par.Maps[c]))
		for _, me := range par.Maps[c] {
			w.str(me.From)
			w.str(me.To)
		}
	}
	// Sets last, and only when there are any, so that the digests of
	// templates without them (every checkpoint recorded before `set`
	// existed) stay what they were.
	if len(t.Sets) > 0 {
		w.str("sets")
		w.count(len(t.Sets))
		for _, s := range t.Sets {
			w.str(s.Side)
			w.str(s.Key)
			w.str(s.Value.String())
			w.str(s.When.String())
		}
	}
	if t.MTP != nil { // absent before MTP layers: earlier digests unchanged
		w.str("mtp")
		w.str(t.MTP.HFPrefix)
		w.str(t.MTP.FirstLayer.String())
	}
	if !t.QuantDefault && len(t.Scales) > 0 { // the default: earlier digests unchanged
		w.str("quant")
		w.count(len(t.Scales))
		for _, r := range t.Scales {
			w.str(r.Weight)
			w.str(r.Scale)
		}
	}
	return hex.EncodeToString(w.h.Sum(nil))
}

// recordTemplate adds the template's name and digest to an MCA config.
func recordTemplate(kw *pyjson.Object, m *Model) {
	kw.Set(TemplateKey, m.Template.Name)
	kw.Set(TemplateDigestKey, m.TemplateDigest())
}

// TemplateMismatchError reports that an MCA checkpoint records another
// template than the one given for converting it back.
type TemplateMismatchError struct {
	// Config is the mca_config.json path.
	Config string
	// Name and Digest are the recorded template; GotName and GotDigest
	// the one given.
	Name, Digest       string
	GotName, GotDigest string
}

func (e *TemplateMismatchError) Error() string {
	if e.Name != e.GotName {
		return fmt.Sprintf("%s records the template %q, but the template given is %q", e.Config, e.Name, e.GotName)
	}
	return fmt.Sprintf("%s records the template %q with sha256 %s, but the template %q given has sha256 %s (it changed since the checkpoint was converted)",
		e.Config, e.Name, short(e.Digest), e.GotName, short(e.GotDigest))
}

// CheckRecordedTemplate compares m with the template recorded in an MCA
// config (path names it in the error): nil when the config records none
// or the same one, else a *TemplateMismatchError.
func CheckRecordedTemplate(m *Model, mc *MCAConfig, path string) error {
	name, digest, ok := mc.RecordedTemplate()
	if !ok {
		return nil
	}
	got := m.TemplateDigest()
	if name == m.Template.Name && digest == got {
		return nil
	}
	return &TemplateMismatchError{Config: path, Name: name, Digest: digest, GotName: m.Template.Name, GotDigest: got}
}

// short abbreviates a hex digest for messages.
func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// sampleBlocks and sampleBlock size the data samples of a source file
// that go into its identity: sampleBlocks blocks of sampleBlock bytes
// spread evenly over the data region (all of it when smaller), so that a
// fine-tuned model with the same headers (different values in nearly
// every weight) gets another identity, for 64 KiB read per file.
const (
	sampleBlocks = 16
	sampleBlock  = 4 << 10
)

// runID derives the run id of an HF → MCA conversion from the MCA config
// it writes (but name_or_path, which differs when jobs read copies of
// the source at different paths), the build flags and the identity of
// the source weights: every file's name, size, header (tensors, dtypes,
// shapes, offsets, metadata) and a sample of its data. File times are
// left out on purpose: copies of the source (staged per node, restored
// from a backup) convert to the same checkpoint.
func runID(m *Model, mc *MCAConfig, src *safetensors.Sharded) (string, error) {
	h := sha256.New()
	w := digestWriter{h}
	w.str("rolltpl-run-v1")
	cfg := mc.Object().Clone()
	cfg.Delete("name_or_path")
	cfg.Delete(RunKey)
	h.Write(pyjson.Encode(cfg, 0, true))
	var flags []string
	for k, v := range m.Flags {
		if v {
			flags = append(flags, k)
		}
	}
	slices.Sort(flags)
	w.strs(flags)
	w.count(len(src.Files))
	for _, f := range src.Files {
		if err := fileIdentity(w, f); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// recordRun sets the run id of the conversion (RunKey) in the MCA config
// it writes.
func recordRun(m *Model, mc *MCAConfig, src *safetensors.Sharded) error {
	id, err := runID(m, mc, src)
	if err != nil {
		return err
	}
	mc.Object().Set(RunKey, id)
	return nil
}

// fileIdentity writes one safetensors file's identity: name, size,
// parsed header and the data sample, read with pread (the mapping is not
// touched).
func fileIdentity(w digestWriter, f *safetensors.File) error {
	hd := f.Header()
	w.str(filepath.Base(hd.Path))
	w.count(int(hd.FileSize))
	keys := make([]string, 0, len(hd.Metadata))
	for k := range hd.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	w.count(len(keys))
	for _, k := range keys {
		w.str(k)
		w.str(hd.Metadata[k])
	}
	w.count(len(hd.Tensors))
	for _, t := range hd.Tensors {
		w.str(t.Name)
		w.str(t.DType.String())
		w.str(fmt.Sprint(t.Shape, t.Offset, t.Size))
	}
	start, end := hd.DataStart(), hd.FileSize
	if end <= start {
		return nil
	}
	fd, err := os.Open(hd.Path)
	if err != nil {
		return err
	}
	defer fd.Close()
	buf := make([]byte, sampleBlock)
	n := end - start
	for i := range int64(sampleBlocks) {
		off := start + i*(n-sampleBlock)/(sampleBlocks-1)
		size := int64(sampleBlock)
		if n <= sampleBlocks*sampleBlock {
			// Small data region: read all of it, block by block.
			off, size = start+i*sampleBlock, min(sampleBlock, end-(start+i*sampleBlock))
			if size <= 0 {
				break
			}
		}
		if _, err := fd.ReadAt(buf[:size], off); err != nil {
			return fmt.Errorf("%s: reading at %d: %w", hd.Path, off, err)
		}
		w.h.Write(buf[:size])
	}
	return nil
}

// runStamp is the content of a rank directory's run stamp.
type runStamp struct {
	// Run is the run id of the conversion that wrote the rank file.
	Run string `json:"run"`
	// Layout describes the layout (for messages; the run id covers it).
	Layout string `json:"layout"`
	// Rank is the rank file's index in shard.Ranks order and Dir its
	// directory name.
	Rank int    `json:"rank"`
	Dir  string `json:"dir"`
}

// layoutString describes a layout for messages and stamps.
func layoutString(l Layout) string {
	n := l.Normalized()
	s := fmt.Sprintf("tp=%d pp=%d vpp=%d ep=%d etp=%d", n.TP, n.PP, n.VPP, n.EP, n.ETP)
	if n.MoEGroupedGEMM {
		s += " moe_grouped_gemm"
	}
	if n.LegacyGroupedGEMM {
		s += " moe_use_legacy_grouped_gemm"
	}
	if n.TransformerImpl != "" && n.TransformerImpl != shard.ImplTransformerEngine {
		s += " transformer_impl=" + n.TransformerImpl
	}
	if n.AccountForEmbedding {
		s += " account_for_embedding_in_pipeline_split"
	}
	if n.AccountForLoss {
		s += " account_for_loss_in_pipeline_split"
	}
	return s
}

// stamper returns the stamps of the rank files of the run recorded in mc,
// the layout read (and its pipeline layout parsed) once for all of them.
func stamper(mc *MCAConfig) func(i int, dir string) runStamp {
	run, _ := mc.String(RunKey)
	layout := layoutString(mc.Layout())
	return func(i int, dir string) runStamp { return runStamp{Run: run, Layout: layout, Rank: i, Dir: dir} }
}

// stampPath returns the run stamp path beside a rank file.
func stampPath(rankFile string) string { return filepath.Join(filepath.Dir(rankFile), RunStampName) }

// writeStamped writes a rank file with write, between removing its
// directory's run stamp (so that a rank file being rewritten is never
// taken for one of the earlier run) and writing the new one.
func writeStamped(rankFile string, st runStamp, sync bool, write func() error) error {
	sp := stampPath(rankFile)
	if err := os.Remove(sp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := write(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeStampFile(sp, append(b, '\n'), sync)
}

// writeStampFile writes a run stamp through a temporary name of its own
// (two copies of one rank job, a requeued one and the first still
// running, may write the same stamp at once), named like the rank files'
// temporaries: path + torchsave.TempSuffix + the writer's host, pid and
// start time (runtime/tempname), so that a rerun removes the leftovers of
// a killed writer (removeStaleWriters).
func writeStampFile(path string, data []byte, sync bool) error {
	tmp := tempname.New(path + torchsave.TempSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// readStamp reads the run stamp beside a rank file; nil without error
// when there is none.
func readStamp(rankFile string) (*runStamp, error) {
	sp := stampPath(rankFile)
	b, err := srcfile.ReadFileMax(sp, 1<<16)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st runStamp
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: not a run stamp: %v", sp, err)
	}
	if st.Run == "" {
		return nil, fmt.Errorf("%s: not a run stamp: no run id", sp)
	}
	return &st, nil
}

// stampProblem describes what is wrong with the stamp of a rank file of
// run want ("" when there is nothing wrong).
func stampProblem(st *runStamp, want runStamp) string {
	switch {
	case st == nil:
		return "has no run stamp " + RunStampName + " (a job writing it is running or crashed, or it was written by another conversion)"
	case st.Run != want.Run && st.Layout != want.Layout:
		return fmt.Sprintf("was written by another conversion (run %s, layout %s; this one is run %s, layout %s)",
			short(st.Run), st.Layout, short(want.Run), want.Layout)
	case st.Run != want.Run:
		return fmt.Sprintf("was written by another conversion (run %s, from another source, template or flags; this one is run %s)",
			short(st.Run), short(want.Run))
	case st.Dir != want.Dir || st.Rank != want.Rank:
		return fmt.Sprintf("has the run stamp of rank %d (%s)", st.Rank, st.Dir)
	}
	return ""
}

// checkMCARun checks the rank directories of an MCA checkpoint against
// its recorded layout and run before anything is converted: a rank
// directory the layout does not have, rank files of different
// conversions, or of another conversion than the one mca_config.json
// records, and a recorded conversion that was never finalized are errors
// naming every rank directory involved. Checkpoints without run stamps
// (written by ROLL, by Megatron in training, or by an older rolltpl) are
// only checked for rank directories.
func checkMCARun(c *MCACheckpoint) error {
	l := c.Config.Layout().Normalized()
	sl := l
	if l.TP > maxRankFiles || l.PP > maxRankFiles || l.EP > maxRankFiles || l.TP*l.PP*l.EP > maxRankFiles {
		return fmt.Errorf("%s: the layout %s has more than %d rank files", c.ConfigPath, layoutString(l), maxRankFiles)
	}
	ranks := shard.Ranks(sl)
	want := map[string]int{}
	for i, r := range ranks {
		want[shard.RankDir(r, sl)] = i
	}
	entries, err := os.ReadDir(c.IterDir)
	if err != nil {
		return err
	}
	var extra []string
	for _, e := range entries {
		if _, ok := want[e.Name()]; !ok && strings.HasPrefix(e.Name(), "mp_rank_") {
			extra = append(extra, e.Name())
		}
	}
	if len(extra) > 0 {
		what := "rank directory " + extra[0] + " is"
		if len(extra) > 1 {
			what = "rank directories " + strings.Join(extra, ", ") + " are"
		}
		return fmt.Errorf("%s: %s not in the layout %s records (%s, %d rank files); remove what is not part of the checkpoint",
			c.IterDir, what, c.ConfigPath, layoutString(l), len(ranks))
	}
	if len(ranks) > 1 {
		// (A missing single rank file is reported when it is opened.)
		var missing []string
		for _, r := range ranks {
			path := filepath.Join(c.IterDir, shard.RankDir(r, sl), MCACheckpointPT)
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				missing = append(missing, fmt.Sprintf("%s (rank %v)", path, r))
			}
		}
		if len(missing) > 0 {
			what := "rank file " + missing[0] + " is missing"
			if len(missing) > 1 {
				what = fmt.Sprintf("%d rank files are missing (%s)", len(missing), strings.Join(missing, ", "))
			}
			return fmt.Errorf("%s: %s records %s (%d rank files)", what, c.ConfigPath, layoutString(l), len(ranks))
		}
	}
	run, hasRun := c.Config.String(RunKey)
	if hasRun {
		if _, err := os.Stat(filepath.Join(c.Dir, TrackerName)); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s has no %s, but %s records a rolltpl conversion (%s): it was never finalized, or its rank files are being rewritten; finish it with convert --finalize",
				c.Dir, TrackerName, c.ConfigPath, RunKey)
		}
	}
	runs := map[string][]string{} // run id → rank directories
	layouts := map[string]string{}
	var unstamped []string
	for i, r := range ranks {
		dir := shard.RankDir(r, sl)
		st, err := readStamp(filepath.Join(c.IterDir, dir, MCACheckpointPT))
		if err != nil {
			return err
		}
		if st == nil {
			unstamped = append(unstamped, dir)
			continue
		}
		if st.Dir != dir || st.Rank != i {
			return fmt.Errorf("%s: the run stamp is of rank %d (%s)", filepath.Join(c.IterDir, dir, RunStampName), st.Rank, st.Dir)
		}
		runs[st.Run] = append(runs[st.Run], dir)
		layouts[st.Run] = st.Layout
	}
	if len(runs) == 0 {
		return nil // no stamps: not written by this rolltpl
	}
	var lines []string
	if len(unstamped) > 0 {
		lines = append(lines, fmt.Sprintf("%s: no run stamp, though the other rank files have one", strings.Join(unstamped, ", ")))
	}
	keys := make([]string, 0, len(runs))
	for k := range runs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if len(runs) > 1 || (hasRun && k != run) {
			what := fmt.Sprintf("run %s (layout %s)", short(k), layouts[k])
			if hasRun && k != run {
				what += fmt.Sprintf(", not the run %s that %s records", short(run), MCAConfigName)
			}
			lines = append(lines, fmt.Sprintf("%s: %s", strings.Join(runs[k], ", "), what))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return fmt.Errorf("%s: the rank files are not of one conversion (mixing them would mix two models):\n  %s", c.IterDir, strings.Join(lines, "\n  "))
}

// maxRankFiles bounds the rank files of a layout read from a config.
const maxRankFiles = 1 << 16

// tensorExpr writes an op's HF operand built from tensor steps: the leaf
// it reads, or the step, its arguments (sorted, as S-expressions) and its
// operands.
func (w digestWriter) tensorExpr(x *ir.TensorExpr, depth int) {
	if x == nil || depth > 1000 {
		w.str("nil")
		return
	}
	if x.Step == "" {
		w.str("leaf")
		w.count(x.HF)
		return
	}
	w.str(x.Step)
	names := x.ArgNames()
	w.count(len(names))
	for _, k := range names {
		w.str(k)
		w.str(x.Args[k].String())
	}
	w.count(len(x.Operands))
	for _, o := range x.Operands {
		w.tensorExpr(o, depth+1)
	}
}
