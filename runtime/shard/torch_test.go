package shard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/internal/torchtest"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// The torch cross-check: for every layout case, testdata/reference.py —
// an independent implementation of roll-converter-spec.md §5 in torch —
// computes the tensor every rank file must hold, and Split's pieces,
// assembled per rank file, must be byte-identical; Merge must then turn
// torch's rank files back into the original weights. Skipped when torch
// cannot be imported, unless the environment variable CI is set.
// ROLLTPL_PYTHON names the interpreter (default /usr/bin/python3).

type refTensor struct {
	Name       string      `json:"name"`
	DType      string      `json:"dtype"`
	Shape      []int64     `json:"shape"`
	Offset     int64       `json:"offset"`
	NBytes     int64       `json:"nbytes"`
	Components []refTensor `json:"components,omitempty"`
}

type refCase struct {
	ID             string         `json:"id"`
	Model          string         `json:"model"`
	Layout         Layout         `json:"layout"`
	Classification Classification `json:"classification"`
}

type refResults struct {
	TorchVersion string `json:"torch_version"`
	Cases        map[string]struct {
		Error string                            `json:"error"`
		Files map[string]map[string][]refTensor `json:"files"`
	} `json:"cases"`
}

func TestTorchReference(t *testing.T) { torchtest.Run(t, testTorchReference) }

func testTorchReference(t *testing.T, python string) {
	dir := t.TempDir()

	// Inputs: one model per case (the seeds of TestRoundTrip).
	var inputs bytes.Buffer
	appendTensor := func(x tensor.Tensor) (int64, int64) {
		off := int64(inputs.Len())
		if _, err := x.WriteTo(&inputs); err != nil {
			t.Fatal(err)
		}
		return off, x.Len()
	}
	models := map[string][]refTensor{}
	globals := map[string][]gw{}
	var cases []refCase
	for i, c := range layoutCases {
		mid := fmt.Sprintf("m%d", i)
		model := makeModel(c.O, uint64(i+1))
		globals[mid] = model
		for _, w := range model {
			full := w.full()
			rt := refTensor{Name: w.name, DType: full.DType.String(), Shape: full.Shape}
			if w.st != nil {
				for _, comp := range w.st.Components {
					off, n := appendTensor(comp)
					rt.Components = append(rt.Components, refTensor{Shape: comp.Shape, Offset: off, NBytes: n})
				}
			} else {
				rt.Offset, rt.NBytes = appendTensor(w.t)
			}
			models[mid] = append(models[mid], rt)
		}
		cases = append(cases, refCase{ID: c.ID, Model: mid, Layout: layoutFor(c.L, c.O), Classification: c.Cls()})
	}
	manifest, err := json.Marshal(map[string]any{"models": models, "cases": cases})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "inputs.bin"), inputs.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := torchtest.CommandContext(ctx, python, filepath.Join("testdata", "reference.py"), dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reference.py: %v\n%s", err, out)
	}
	var res refResults
	raw, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	blob, err := os.ReadFile(filepath.Join(dir, "results.bin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("torch %s", res.TorchVersion)

	for i, c := range layoutCases {
		t.Run(c.ID, func(t *testing.T) {
			got, ok := res.Cases[c.ID]
			if !ok {
				t.Fatal("no result from reference.py")
			}
			if got.Error != "" {
				t.Fatalf("reference.py: %s", got.Error)
			}
			l := layoutFor(c.L, c.O)
			s, err := New(l, c.Cls(), c.Opts)
			if err != nil {
				t.Fatal(err)
			}
			model := globals[fmt.Sprintf("m%d", i)]
			ours := map[string]*rankTensor{}
			for _, rt := range splitAll(t, s, model) {
				ours[fmt.Sprintf("%s/%s/%s", RankDir(rt.Rank, l), StageKey(rt.Stage, l), rt.Name)] = rt
			}
			theirs := map[string]refTensor{}
			for d, keys := range got.Files {
				for k, ts := range keys {
					for _, x := range ts {
						theirs[d+"/"+k+"/"+x.Name] = x
					}
				}
			}
			var oursK, theirsK []string
			for k, rt := range ours {
				oursK = append(oursK, k+" "+rt.dtype.String()+rt.shape.String())
			}
			for k, x := range theirs {
				theirsK = append(theirsK, k+" "+x.DType+tensor.Shape(x.Shape).String())
			}
			sort.Strings(oursK)
			sort.Strings(theirsK)
			if diff := cmp.Diff(theirsK, oursK); diff != "" {
				t.Fatalf("rank tensors differ from torch's (-torch +ours):\n%s", diff)
			}
			bad := 0
			for k, rt := range ours {
				x := theirs[k]
				if !bytes.Equal(rt.data, blob[x.Offset:x.Offset+x.NBytes]) {
					if bad++; bad <= 5 {
						t.Errorf("%s: bytes differ from torch's", k)
					}
				}
			}
			if bad > 0 {
				t.Fatalf("%d of %d rank tensors differ from torch's", bad, len(ours))
			}

			// Merge torch's rank files back.
			var files []RankFile
			locals := map[LocalRef]tensor.Tensor{}
			for _, r := range Ranks(l) {
				f := RankFile{Rank: r}
				keys := got.Files[RankDir(r, l)]
				for k := range keys {
					f.Keys = append(f.Keys, k)
				}
				sort.Strings(f.Keys)
				for _, k := range f.Keys {
					vp, err := ParseStageKey(k, l)
					if err != nil {
						t.Fatal(err)
					}
					for _, x := range keys[k] {
						dt, err := tensor.ParseDType(x.DType)
						if err != nil {
							t.Fatal(err)
						}
						tt, err := tensor.New(dt, x.Shape, blob[x.Offset:x.Offset+x.NBytes])
						if err != nil {
							t.Fatal(err)
						}
						f.Tensors = append(f.Tensors, LocalTensor{Stage: vp, Name: x.Name, DType: dt, Shape: tt.Shape})
						locals[LocalRef{r, vp, x.Name}] = tt
					}
				}
				files = append(files, f)
			}
			rp, err := s.PlanRead(files)
			if err != nil {
				t.Fatal(err)
			}
			merged := map[string]tensor.Tensor{}
			for _, g := range rp.Groups {
				ls := make([]Local, len(g.Members))
				for j, m := range g.Members {
					ls[j] = Local{Rank: m.Rank, Stage: m.Stage, Name: m.Name, Tensor: locals[m]}
				}
				gs, err := s.Merge(ls)
				if err != nil {
					t.Fatal(err)
				}
				for _, gl := range gs {
					merged[gl.Name] = gl.Tensor
				}
			}
			if len(merged) != len(model) {
				t.Errorf("merged %d weights from torch's rank files, the model has %d", len(merged), len(model))
			}
			for _, w := range model {
				if m, ok := merged[w.name]; !ok || !m.Equal(w.full()) {
					t.Errorf("%s: not merged back bit-exactly from torch's rank files", w.name)
				}
			}
		})
	}
}
