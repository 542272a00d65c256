package exec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/runtime/pyjson"
	"github.com/rolltpl/rolltpl/runtime/safetensors"
	"github.com/rolltpl/rolltpl/runtime/shard"
	"github.com/rolltpl/rolltpl/runtime/tensor"
	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// File names of the two checkpoint layouts.
const (
	HFConfigName    = "config.json"
	MCAConfigName   = "mca_config.json"
	TrackerName     = "latest_checkpointed_iteration.txt"
	MCACheckpointPT = "model_optim_rng.pt"
)

// IsMCA reports whether dir holds an MCA checkpoint (an mca_config.json),
// which is how ROLL's converter picks the direction (os.path.exists). An
// mca_config.json that is not a regular file (a FIFO, a folder) counts:
// reading it then fails naming it, rather than the checkpoint being taken
// for an HF one without config.json.
func IsMCA(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, MCAConfigName))
	return err == nil
}

// HFCheckpoint is an HF model directory read without its tensor data:
// config.json and the safetensors headers (and index).
type HFCheckpoint struct {
	Dir string
	// ConfigPath and ConfigText are config.json and its bytes; Config is
	// the parsed object.
	ConfigPath string
	ConfigText []byte
	Config     *pyjson.Object
	// ModelType is config.json's model_type ("" if absent).
	ModelType string
	// Index is the parsed model.safetensors.index.json, nil for a single
	// model.safetensors.
	Index *safetensors.Index
	// Files are the safetensors files, in the order their tensors are
	// listed (the index's shards sorted by name).
	Files []string
	// Tensors lists every tensor file by file, by offset within a file.
	Tensors []TensorMeta
}

// Bytes returns the bytes of all tensors.
func (c *HFCheckpoint) Bytes() int64 {
	var n int64
	for _, t := range c.Tensors {
		n += t.Size
	}
	return n
}

// ReadHFConfig reads and parses dir/config.json.
func ReadHFConfig(dir string) (path string, text []byte, obj *pyjson.Object, err error) {
	path = filepath.Join(dir, HFConfigName)
	text, err = ReadConfigFile(path)
	if err != nil {
		return path, nil, nil, err
	}
	obj, err = pyjson.ParseObject(text)
	if err != nil {
		return path, nil, nil, fmt.Errorf("%s: not a JSON object: %v", path, err)
	}
	return path, text, obj, nil
}

// ReadHFCheckpoint reads config.json, the index (if any) and every
// safetensors header of the model in dir, validating them as
// [safetensors.Open] and [safetensors.OpenSharded] do, without reading or
// mapping any tensor data.
func ReadHFCheckpoint(dir string) (*HFCheckpoint, error) {
	c := &HFCheckpoint{Dir: dir}
	var err error
	c.ConfigPath, c.ConfigText, c.Config, err = ReadHFConfig(dir)
	if err != nil {
		return nil, err
	}
	if mt, ok := c.Config.Get("model_type"); ok {
		c.ModelType, _ = mt.(string)
	}
	single := filepath.Join(dir, safetensors.SingleFileName)
	if st, err := os.Stat(single); err == nil && st.Mode().IsRegular() {
		h, err := safetensors.ReadHeader(single)
		if err != nil {
			return nil, err
		}
		c.Files = []string{single}
		c.addTensors(h)
		return c, nil
	}
	indexPath := filepath.Join(dir, safetensors.IndexFileName)
	if _, err := os.Stat(indexPath); errors.Is(err, fs.ErrNotExist) {
		return nil, safetensors.NoCheckpoint(dir)
	}
	ix, err := safetensors.ReadIndex(indexPath)
	if err != nil {
		return nil, err
	}
	c.Index = ix
	for _, shard := range ix.Shards() {
		path := filepath.Join(dir, shard)
		h, err := safetensors.ReadHeader(path)
		if err != nil {
			return nil, err
		}
		for _, t := range h.Tensors {
			if want, ok := ix.WeightMap[t.Name]; !ok {
				return nil, &safetensors.FormatError{Path: path, Tensor: t.Name, Msg: "is not listed in the weight_map of " + indexPath}
			} else if want != shard {
				return nil, &safetensors.FormatError{Path: path, Tensor: t.Name, Msg: fmt.Sprintf("is mapped to shard %q by %s", want, indexPath)}
			}
		}
		c.Files = append(c.Files, path)
		c.addTensors(h)
	}
	have := map[string]bool{}
	for _, t := range c.Tensors {
		have[t.Name] = true
	}
	var names []string
	for name := range ix.WeightMap {
		if !have[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if len(names) > 0 {
		return nil, &safetensors.FormatError{Path: indexPath, Tensor: names[0],
			Msg: fmt.Sprintf("is mapped to shard %q, which does not contain it", ix.WeightMap[names[0]])}
	}
	return c, nil
}

func (c *HFCheckpoint) addTensors(h *safetensors.Header) {
	for _, t := range h.Tensors {
		c.Tensors = append(c.Tensors, TensorMeta{Name: t.Name, DType: t.DType, Shape: t.Shape, Size: t.Size, File: h.Path})
	}
}

// MCACheckpoint is an MCA checkpoint directory: its config and iteration
// directory.
type MCACheckpoint struct {
	Dir        string
	ConfigPath string
	Config     *MCAConfig
	// IterDir is the iteration directory, iter_NNNNNNN or release.
	IterDir string
}

// locateMCACheckpoint reads dir/mca_config.json and finds the iteration
// directory, whatever the layout.
func locateMCACheckpoint(dir string) (*MCACheckpoint, error) {
	return locateMCA(dir, nil)
}

// locateMCA is locateMCACheckpoint with the config of cm (read from dir)
// when cm is not nil.
func locateMCA(dir string, cm *CheckpointModel) (*MCACheckpoint, error) {
	c := &MCACheckpoint{Dir: dir, ConfigPath: filepath.Join(dir, MCAConfigName)}
	if cm != nil && cm.MCA != nil {
		c.ConfigPath, c.Config = cm.Path, cm.MCA
	} else {
		text, err := ReadConfigFile(c.ConfigPath)
		if err != nil {
			return nil, err
		}
		if c.Config, err = ParseMCAConfig(c.ConfigPath, text); err != nil {
			return nil, err
		}
	}
	iter := "iter_0000001"
	if b, err := ReadConfigFile(filepath.Join(dir, TrackerName)); err == nil {
		s := strings.TrimSpace(string(b))
		if s == "release" {
			iter = "release"
		} else if n, ok := canonicalIndex(s); ok {
			iter = fmt.Sprintf("iter_%07d", n)
		} else {
			return nil, fmt.Errorf("%s: %q is neither an iteration number nor \"release\"", filepath.Join(dir, TrackerName), s)
		}
	}
	c.IterDir = filepath.Join(dir, iter)
	return c, nil
}

// checkStateDicts checks the model state dicts of a rank file ("model",
// "model0", ...): every value is a tensor, but for Transformer Engine's
// "._extra_state" entries (tensors or io.BytesIO objects), which are not
// weights and are skipped. Anything else (None, a Python object) under a
// weight's name would otherwise be dropped without a word. Other keys of
// the file (Megatron's args, iteration, rng_state, optimizer) are not
// read.
func checkStateDicts(path string, root *torchsave.Dict) error {
	for _, it := range root.Items {
		k, ok := it.Key.(string)
		if !ok || !strings.HasPrefix(k, "model") {
			continue
		}
		sd, ok := it.Value.(*torchsave.Dict)
		if !ok {
			return fmt.Errorf("%s: %q is a %s, not a state dict", path, k, torchsave.TypeName(it.Value))
		}
		for _, e := range sd.Items {
			name, ok := e.Key.(string)
			if !ok {
				return fmt.Errorf("%s: %q has a key %v that is not a string", path, k, e.Key)
			}
			if _, ok := e.Value.(*torchsave.Tensor); ok || strings.HasSuffix(name, "._extra_state") {
				continue
			}
			return fmt.Errorf("%s: %s/%s is a %s, not a tensor", path, k, name, torchsave.TypeName(e.Value))
		}
	}
	return nil
}

// weightFile reports whether a file name is a weight file of some format
// (not copied along with tokenizer and code files).
func weightFile(name string) bool {
	for _, suf := range []string{".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".safetensors.index.json", ".bin.index.json"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return false
}

// hfSource is an HF checkpoint opened and planned for HF -> MCA: the
// mapped shards (no tensor data is read), the MCA config and the plan.
type hfSource struct {
	sh    *safetensors.Sharded
	mc    *MCAConfig
	plan  *Plan
	files []string
}

// openHFSource opens the HF checkpoint in src and plans its conversion
// to the layout: the one place HF -> MCA conversions and [PlanConversion]
// choose the files, build the MCA config and plan. config.json is cm's
// (read from src) when cm is not nil. The plan may hold errors; the
// caller closes sh.
func openHFSource(m *Model, src string, cm *CheckpointModel, layout Layout, nameOrPath string, deq Dequantize) (*hfSource, error) {
	var cfgPath string
	var cfgText []byte
	if cm != nil && cm.HFConfig != nil {
		cfgPath, cfgText = cm.Path, cm.HFConfig
	} else {
		var err error
		if cfgPath, cfgText, _, err = ReadHFConfig(src); err != nil {
			return nil, err
		}
	}
	sh, err := safetensors.OpenSharded(src)
	if err != nil {
		return nil, err
	}
	all := sh.Tensors()
	metas := make([]TensorMeta, len(all))
	for i, t := range all {
		metas[i] = TensorMeta{Name: t.Name, DType: t.DType, Shape: t.Shape, Size: t.Size, File: t.File.Path()}
	}
	if nameOrPath == "" {
		nameOrPath = src
	}
	fp8Info, metas, cfgText, fp8Problems := fp8Prepass(cfgText, metas, deq, m.scaleNaming())
	mc, err := BuildMCAConfig(m, cfgText, cfgPath, nameOrPath, layout)
	if err != nil {
		sh.Close()
		return nil, err
	}
	s := &hfSource{sh: sh, mc: mc, plan: PlanHFToMCA(m, mc, metas)}
	recordLayerOps(mc, s.plan)
	s.plan.FP8 = fp8Info
	s.plan.Problems = append(append(fp8Problems, s.plan.Problems...), LayoutProblems(mc, mc.Layout())...)
	if s.plan.Err() == nil {
		s.plan.Problems = append(s.plan.Problems, readBackProblems(m, mc, s.plan)...)
	}
	for _, f := range sh.Files {
		s.files = append(s.files, f.Path())
	}
	return s, nil
}

// mcaSource is an MCA checkpoint opened and planned for MCA -> HF: the
// rank files of the recorded layout (one for a 1x1x1 layout) merged group
// by group, and the plan of the global weights.
type mcaSource struct {
	ck       *MCACheckpoint
	hfConfig []byte
	plan     *Plan
	files    []string
	// The rank files and the merged globals.
	rs *rankSet
	mi *mergeInput
}

func (s *mcaSource) close() {
	if s.rs != nil {
		s.rs.close()
	}
}

// openMCASource opens the MCA checkpoint in src (any layout recorded in
// its mca_config.json) and plans its conversion back to HF: the one place
// MCA -> HF conversions and [PlanConversion] choose the rank files and
// plan. The plan may hold errors; the caller closes the source.
func openMCASource(m *Model, src string) (*mcaSource, error) {
	return openMCA(m, src, nil)
}

// openMCA is openMCASource with the mca_config.json of cm (read from src)
// when cm is not nil.
func openMCA(m *Model, src string, cm *CheckpointModel) (*mcaSource, error) {
	ck, err := locateMCA(src, cm)
	if err != nil {
		return nil, err
	}
	if err := checkMCARun(ck); err != nil {
		return nil, err
	}
	s := &mcaSource{ck: ck}
	if s.hfConfig, err = BuildHFConfig(m, ck.Config, ck.ConfigPath); err != nil {
		return nil, err
	}
	if s.rs, err = openRankSet(m, ck.Config, ck.ConfigPath, ck.IterDir); err != nil {
		return nil, err
	}
	s.mi = &mergeInput{rs: s.rs, cache: map[int]map[string]tensor.Tensor{}, left: map[int]int{}}
	s.plan = PlanMCAToHF(m, ck.Config, s.mi.metas(ck.IterDir))
	for _, f := range s.rs.files {
		s.files = append(s.files, f.Path)
	}
	return s, nil
}

// CheckpointPlan is the plan of a conversion as [PlanConversion] makes
// it.
type CheckpointPlan struct {
	// Plan is the plan of the global weights, with every problem
	// found, including those of the parallel layout.
	Plan *Plan
	// Files are the files the conversion reads: the safetensors shards
	// (HF -> MCA) or the rank files of the recorded layout (MCA -> HF).
	Files []string
	// Layout is the layout written (HF -> MCA) or read (MCA -> HF), its
	// unset sizes 1 (ETP: TP).
	Layout Layout
	// RankFiles is the number of rank files written (HF -> MCA): one
	// per tensor, pipeline and expert rank.
	RankFiles int
}

// PlanConversion plans the conversion of the checkpoint in src as
// [ConvertHFToMCA] (to layout) or [ConvertMCAToHF] (an MCA checkpoint:
// the layout recorded in its mca_config.json; layout is ignored) would:
// the same files, the same config, the same problems and the same
// verdict, without reading tensor data or writing anything. Errors that
// stop a conversion before planning (a missing rank file, a malformed
// header) are returned as errors; planning problems are in the plan, and
// a parallel layout the model cannot be split into is an error problem
// of kind layout.
func PlanConversion(m *Model, src string, layout Layout) (*CheckpointPlan, error) {
	return planConversion(m, src, nil, layout)
}

// PlanCheckpoint is [PlanConversion] of the checkpoint cm was read from
// (ReadCheckpointModel), with its config file as cm holds it.
func PlanCheckpoint(m *Model, cm CheckpointModel, layout Layout) (*CheckpointPlan, error) {
	return planConversion(m, cm.Dir, &cm, layout)
}

// planConversion is PlanConversion with the config of cm (read from src)
// when cm is not nil.
func planConversion(m *Model, src string, cm *CheckpointModel, layout Layout) (*CheckpointPlan, error) {
	if cm != nil && cm.MCA != nil || cm == nil && IsMCA(src) {
		s, err := openMCA(m, src, cm)
		if err != nil {
			return nil, err
		}
		defer s.close()
		return &CheckpointPlan{Plan: s.plan, Files: s.files, Layout: s.ck.Config.Layout().Normalized()}, nil
	}
	if err := layout.Check(); err != nil {
		return nil, err
	}
	s, err := openHFSource(m, src, cm, layout, "", "")
	if err != nil {
		return nil, err
	}
	defer s.sh.Close()
	n := s.mc.Layout().Normalized()
	cp := &CheckpointPlan{Plan: s.plan, Files: s.files, Layout: n, RankFiles: n.TP * n.PP * n.EP}
	if s.plan.Err() == nil {
		_, wp, err := rankWritePlan(m, s.mc, s.plan)
		if err != nil {
			s.plan.Problems = append(s.plan.Problems, Problem{Kind: ProblemLayout, Severity: Error, Msg: err.Error()})
		} else {
			cp.RankFiles = len(wp.Files)
		}
	}
	return cp, nil
}

// readBackProblems refuses an HF -> MCA plan whose rank files could not
// be converted back: with transformer_impl local, ROLL's converter (and
// Merge) reads some weights back under another name than the one they
// were written from (shard.Sharder.ReadBackName), and the template's MCA
// -> HF plan of the weights under those names fails where the plan of
// the names written does not. ROLL writes such a checkpoint all the same
// (its mixtral with transformer_impl local), and then cannot read it.
func readBackProblems(m *Model, mc *MCAConfig, plan *Plan) []Problem {
	if mc.Layout().Normalized().TransformerImpl != shard.ImplLocal {
		return nil
	}
	sh, err := newSharder(m, mc)
	if err != nil {
		return nil // the write plan reports it
	}
	outs := plan.Outputs()
	written := make([]TensorMeta, len(outs))
	back := make([]TensorMeta, len(outs))
	// The renames by pure name: how many weights, and the first.
	type rename struct {
		from, to, first string
		n               int
	}
	var renames []*rename
	for i, o := range outs {
		written[i] = TensorMeta{Name: o.Name, DType: o.DType, Shape: o.Shape, Size: o.Size}
		back[i] = written[i]
		rb, err := sh.ReadBackName(o.Name)
		if err != nil || rb == o.Name {
			continue
		}
		back[i].Name = rb
		from, err1 := rollname.ParseMCAName(o.Name)
		to, err2 := rollname.ParseMCAName(rb)
		if err1 != nil || err2 != nil {
			continue
		}
		k := slices.IndexFunc(renames, func(r *rename) bool { return r.from == from.Pure && r.to == to.Pure })
		if k < 0 {
			renames = append(renames, &rename{from: from.Pure, to: to.Pure, first: o.Name})
			k = len(renames) - 1
		}
		renames[k].n++
	}
	if len(renames) == 0 {
		return nil
	}
	was := map[string]bool{}
	for _, p := range PlanMCAToHF(m, mc, written).Problems {
		was[p.Error()] = true
	}
	var why []string
	for _, p := range PlanMCAToHF(m, mc, back).Problems {
		if p.Severity == Error && !was[p.Error()] {
			why = append(why, p.Error())
		}
	}
	if len(why) == 0 {
		return nil
	}
	var what, names []string
	for _, r := range renames {
		what = append(what, fmt.Sprintf("%s back as %s (%s, first %s)", r.from, r.to, plural(r.n, "weight"), r.first))
		names = append(names, r.from)
	}
	return []Problem{{Kind: ProblemLayout, Severity: Error, Msg: fmt.Sprintf(
		"transformer_impl local: with the template's parallel set (its te_to_local map), ROLL's converter reads %s, "+
			"and then %s; the checkpoint could not be converted back to HF (by ROLL either), so it is not written: "+
			"use transformer_impl transformer_engine, or map %s to itself in the template's te_to_local",
		strings.Join(what, "; "), why[0], strings.Join(names, ", "))}}
}
