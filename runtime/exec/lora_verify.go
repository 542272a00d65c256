package exec

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// LoRAVerifyReport is the result of [VerifyLoRA].
type LoRAVerifyReport struct {
	// Adapters are the adapters verified.
	Adapters []string
	// Compared is the number of rank-file tensors compared.
	Compared int
	// Diffs describe the tensors (or rank files) that differ.
	Diffs []string
}

// OK reports whether every tensor came back identical.
func (r *LoRAVerifyReport) OK() bool { return len(r.Diffs) == 0 }

// VerifyLoRA round-trips the adapters of the ROLL LoRA checkpoint in
// save (or only the one named adapter) through PEFT: each is exported
// (ConvertLoRAToPEFT, dtypes kept) and imported back (ImportPEFT, exact
// fuse, the layout its mca_config.json records) in a temporary folder
// under tmpDir ("" for the system's), and every tensor of every rank file
// is compared with the original (name, dtype, shape, bytes; the
// `._extra_state` entries are not weights and are skipped).
func VerifyLoRA(ctx context.Context, base *Model, save, adapter, tmpDir string) (*LoRAVerifyReport, error) {
	ads, err := FindLoRAAdapters(save, adapter)
	if err != nil {
		return nil, err
	}
	tmp, err := workDir(tmpDir, "rolltpl-lora-verify-", "LoRA verify", nil)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	rep := &LoRAVerifyReport{}
	for _, ad := range ads {
		rep.Adapters = append(rep.Adapters, ad.Name)
		w := filepath.Join(tmp, ad.Name)
		if err := os.Mkdir(w, 0o755); err != nil {
			return nil, err
		}
		peft := filepath.Join(w, "peft")
		if _, err := ConvertLoRAToPEFT(ctx, base, ad.Dir, peft, LoRAOptions{DType: "keep"}); err != nil {
			return rep, fmt.Errorf("adapter %s: export: %w", ad.Name, err)
		}
		ck, err := locateMCACheckpoint(ad.Dir)
		if err != nil {
			return rep, err
		}
		hfc, err := BuildHFConfig(base, ck.Config, ck.ConfigPath)
		if err != nil {
			return rep, err
		}
		hf := filepath.Join(w, "hf")
		if err := os.Mkdir(hf, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(hf, HFConfigName), hfc, 0o644); err != nil {
			return rep, err
		}
		back := filepath.Join(w, "mca")
		if _, err := ImportPEFT(ctx, base, peft, hf, back, LoRAImportOptions{Options: Options{Layout: ck.Config.Layout()}}); err != nil {
			return rep, fmt.Errorf("adapter %s: import: %w", ad.Name, err)
		}
		nk, err := locateMCACheckpoint(back)
		if err != nil {
			return rep, err
		}
		if err := compareRankFiles(ad.Name, ck.IterDir, nk.IterDir, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// compareRankFiles compares the model tensors of every rank file under
// the iteration folders a (original) and b (round-tripped).
func compareRankFiles(adapter, a, b string, rep *LoRAVerifyReport) error {
	list := func(dir string) ([]string, error) {
		es, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, e := range es {
			if e.IsDir() && strings.HasPrefix(e.Name(), "mp_rank_") {
				out = append(out, e.Name())
			}
		}
		return out, nil
	}
	ra, err := list(a)
	if err != nil {
		return err
	}
	rb, err := list(b)
	if err != nil {
		return err
	}
	if !slices.Equal(ra, rb) {
		rep.Diffs = append(rep.Diffs, fmt.Sprintf("adapter %s: rank folders %v came back as %v", adapter, ra, rb))
		return nil
	}
	for _, rd := range ra {
		ta, err := rankTensors(filepath.Join(a, rd, MCACheckpointPT))
		if err != nil {
			return err
		}
		tb, err := rankTensors(filepath.Join(b, rd, MCACheckpointPT))
		if err != nil {
			ta.f.Close()
			return err
		}
		for name, x := range ta.ts {
			y, ok := tb.ts[name]
			switch {
			case !ok:
				rep.Diffs = append(rep.Diffs, fmt.Sprintf("%s/%s: %s is missing after the round trip", adapter, rd, name))
			case x.DType != y.DType || !x.Shape.Equal(y.Shape):
				rep.Diffs = append(rep.Diffs, fmt.Sprintf("%s/%s: %s is %v %v, came back %v %v", adapter, rd, name, x.DType, x.Shape, y.DType, y.Shape))
			case !bytes.Equal(x.Data, y.Data):
				rep.Diffs = append(rep.Diffs, fmt.Sprintf("%s/%s: %s: the bytes differ", adapter, rd, name))
			}
			rep.Compared++
		}
		for name := range tb.ts {
			if _, ok := ta.ts[name]; !ok {
				rep.Diffs = append(rep.Diffs, fmt.Sprintf("%s/%s: %s appeared in the round trip", adapter, rd, name))
			}
		}
		ta.f.Close()
		tb.f.Close()
	}
	return nil
}

// rankTensorSet is the open rank file f and its model tensors by name
// (without `._extra_state` entries).
type rankTensorSet struct {
	f  *torchsave.File
	ts map[string]*torchsave.Tensor
}

// rankTensors opens the rank file at path and lists its model tensors.
func rankTensors(path string) (*rankTensorSet, error) {
	f, err := torchsave.Open(path)
	if err != nil {
		return nil, err
	}
	s := &rankTensorSet{f: f, ts: map[string]*torchsave.Tensor{}}
	for _, t := range f.Tensors() {
		if strings.HasSuffix(t.Name, "._extra_state") || !strings.HasPrefix(t.Name, "model") {
			continue
		}
		s.ts[t.Name] = t
	}
	return s, nil
}

// LoRAAdapterPlan is the header-only plan of one adapter's export.
type LoRAAdapterPlan struct {
	Adapter *LoRAAdapter
	// Plan is the plan of its tensors; Files its rank files.
	Plan  *Plan
	Files []string
	// Rules describe each target module's LoRA rule: the base op, the A
	// and B ops, the classes.
	Rules []string
}

// PlanLoRA plans the export of the adapters of the ROLL LoRA checkpoint in
// save (or only adapter) from the headers alone, as ConvertLoRAToPEFT
// would: the same files, problems and verdict.
func PlanLoRA(base *Model, save, adapter string) ([]LoRAAdapterPlan, error) {
	ads, err := FindLoRAAdapters(save, adapter)
	if err != nil {
		return nil, err
	}
	var out []LoRAAdapterPlan
	for _, ad := range ads {
		lm, err := LoRAModel(base, ad)
		if err != nil {
			return out, err
		}
		ms, err := openMCASource(lm, ad.Dir)
		if err != nil {
			return out, fmt.Errorf("adapter %s: %w", ad.Name, err)
		}
		checkLoRARanks(ms.plan)
		ap := LoRAAdapterPlan{Adapter: ad, Plan: ms.plan, Files: ms.files}
		ms.close()
		for _, lo := range DeriveLoRAOps(base, func(mod string) int64 { r, _ := ad.ModuleRank(mod); return r }) {
			if !ad.targets(lo.Module) || lo.Err != nil {
				continue
			}
			r, _ := ad.ModuleRank(lo.Module)
			ap.Rules = append(ap.Rules, fmt.Sprintf("%s (%s at %s): A %s, B %s; r %d, scale %g",
				lo.MCAName(base), lo.Base.Kind, lo.Base.Span.Start, lo.A.Kind, lo.B.Kind, r, ad.Scale(lo.Module)))
		}
		out = append(out, ap)
	}
	return out, nil
}

// MCAName returns the base op's MCA weight name.
func (lo LoRAOp) MCAName(m *Model) string { return lo.Base.MCA[0].Resolve(m.Flags) }
