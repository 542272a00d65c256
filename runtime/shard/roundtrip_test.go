package shard

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// layoutCase is a layout and the test model it is exercised with.
type layoutCase struct {
	ID   string
	L    Layout
	O    modelOpts
	Cls  func() Classification
	Opts *Options
}

var (
	moeModel   = modelOpts{layers: 4, experts: 4, mtp: true, gdn: true}
	tiedModel  = modelOpts{layers: 4, experts: 4, mtp: true, gdn: true, tied: true}
	denseModel = modelOpts{layers: 4, mtp: true, gdn: true}
	llamaModel = modelOpts{layers: 4, experts: 4, megatronLlama: true, noShared: true}
)

// layoutCases are the layouts of issue 5's acceptance list, plus the
// variants that change names.
var layoutCases = []layoutCase{
	{ID: "TP2", L: Layout{TP: 2}, O: moeModel, Cls: testClassification},
	{ID: "TP4", L: Layout{TP: 4}, O: moeModel, Cls: testClassification},
	{ID: "PP2", L: Layout{PP: 2}, O: moeModel, Cls: testClassification},
	{ID: "PP2_tied", L: Layout{PP: 2}, O: tiedModel, Cls: testClassification},
	{ID: "PP2_VPP2", L: Layout{PP: 2, VPP: 2}, O: tiedModel, Cls: testClassification},
	{ID: "PP3_emb_loss", L: Layout{PP: 3, AccountForEmbedding: true, AccountForLoss: true}, O: moeModel, Cls: testClassification},
	{ID: "EP2", L: Layout{EP: 2}, O: moeModel, Cls: testClassification},
	{ID: "EP4", L: Layout{EP: 4}, O: moeModel, Cls: testClassification},
	{ID: "TP2_ETP2_EP2", L: Layout{TP: 2, ETP: 2, EP: 2}, O: moeModel, Cls: testClassification},
	{ID: "TP2_ETP1_EP2", L: Layout{TP: 2, ETP: 1, EP: 2}, O: moeModel, Cls: testClassification},
	{ID: "TP2_PP2_EP2", L: Layout{TP: 2, PP: 2, EP: 2}, O: tiedModel, Cls: testClassification},
	{ID: "TEGrouped_TP2_EP2", L: Layout{TP: 2, EP: 2, MoEGroupedGEMM: true, TEGroupedMoE: true}, O: moeModel, Cls: testClassification},
	{ID: "LegacyGrouped_TP2_EP2", L: Layout{TP: 2, EP: 2, MoEGroupedGEMM: true}, O: moeModel, Cls: testClassification},
	{ID: "LegacyGrouped_TP2_PP2", L: Layout{TP: 2, PP: 2, MoEGroupedGEMM: true}, O: moeModel, Cls: testClassification},
	{ID: "PipelineLayout_PP2", L: Layout{PP: 2, PipelineLayout: "E(t|)*3,tmL"}, O: moeModel, Cls: testClassification},
	{ID: "MegatronLlama_TP2_EP2_legacy", L: Layout{TP: 2, EP: 2, MoEGroupedGEMM: true}, O: llamaModel, Cls: rollDefault},
	{ID: "MegatronLlama_TP2_PP2", L: Layout{TP: 2, PP: 2}, O: llamaModel, Cls: rollDefault},
	{ID: "Local_TP2_PP2", L: Layout{TP: 2, PP: 2, TransformerImpl: ImplLocal}, O: denseModel, Cls: denseClassification},
	{ID: "Local_TP2_EP2_legacy", L: Layout{TP: 2, EP: 2, TransformerImpl: ImplLocal, MoEGroupedGEMM: true}, O: modelOpts{layers: 4, experts: 4, allMoE: true}, Cls: testClassification},
	{ID: "TP2_contiguous_rows", L: Layout{TP: 2, PP: 2}, O: moeModel, Cls: testClassification, Opts: &Options{ContiguousRows: true}},
}

func TestRoundTrip(t *testing.T) {
	for i, c := range layoutCases {
		t.Run(c.ID, func(t *testing.T) {
			t.Parallel()
			roundTrip(t, c, uint64(i+1))
		})
	}
}

// roundTrip splits the test model, checks the pieces against PlanWrite,
// plans the read of the assembled rank files, merges every group and
// requires the original weights back, bit for bit.
func roundTrip(t *testing.T, c layoutCase, seed uint64) {
	model := makeModel(c.O, seed)
	l := layoutFor(c.L, c.O)
	s, err := New(l, c.Cls(), c.Opts)
	if err != nil {
		t.Fatal(err)
	}
	rts := splitAll(t, s, model)

	// The write plan lists exactly the assembled tensors, in stage order.
	metas := make([]GlobalTensor, len(model))
	for i, w := range model {
		metas[i] = w.meta()
	}
	wp, err := s.PlanWrite(metas)
	if err != nil {
		t.Fatal(err)
	}
	type ent struct {
		Dir, Key, Name, DType, Shape string
	}
	var fromPlan, fromSplit []ent
	for _, f := range wp.Files {
		if f.Dir != RankDir(f.Rank, l) {
			t.Errorf("file %v has dir %q", f.Rank, f.Dir)
		}
		last := -1
		for _, e := range f.Entries {
			if e.Stage < last {
				t.Errorf("%s: entries not in stage order", f.Dir)
			}
			last = e.Stage
			fromPlan = append(fromPlan, ent{f.Dir, e.Key, e.Name, e.DType.String(), e.Shape.String()})
		}
	}
	for _, rt := range rts {
		fromSplit = append(fromSplit, ent{RankDir(rt.Rank, l), StageKey(rt.Stage, l), rt.Name, rt.dtype.String(), rt.shape.String()})
	}
	cmpEnt := func(a, b ent) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) }
	slices.SortFunc(fromPlan, cmpEnt)
	slices.SortFunc(fromSplit, cmpEnt)
	if diff := cmp.Diff(fromSplit, fromPlan); diff != "" {
		t.Fatalf("PlanWrite disagrees with Split (-split +plan):\n%s", diff)
	}
	if len(wp.Files) != len(Ranks(l)) {
		t.Fatalf("plan has %d files, layout %d", len(wp.Files), len(Ranks(l)))
	}

	// Row shares are zero-copy views unless ContiguousRows.
	if c.Opts != nil && c.Opts.ContiguousRows {
		ps, err := s.Split("decoder.layers.1.self_attention.linear_proj.weight", model[indexOf(model, "decoder.layers.1.self_attention.linear_proj.weight")].t)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if !p.Data.Contiguous() {
				t.Errorf("ContiguousRows: piece %v %s has %d pieces", p.Rank, p.Name, p.Data.NumPieces())
			}
		}
	}

	// Read back.
	files := rankFiles(l, rts)
	rp, err := s.PlanRead(files)
	if err != nil {
		t.Fatal(err)
	}
	byRef := map[LocalRef]tensor.Tensor{}
	for _, rt := range rts {
		byRef[rt.LocalRef] = rt.tensor()
	}
	got := map[string]Global{}
	var order []string
	for _, g := range rp.Groups {
		locals := make([]Local, len(g.Members))
		for i, m := range g.Members {
			locals[i] = Local{Rank: m.Rank, Stage: m.Stage, Name: m.Name, Tensor: byRef[m]}
		}
		globals, err := s.Merge(locals)
		if err != nil {
			t.Fatal(err)
		}
		if len(globals) != len(g.Globals) {
			t.Fatalf("group %v: Merge returned %d globals, plan %d", g.Members, len(globals), len(g.Globals))
		}
		for i, gl := range globals {
			want := g.Globals[i]
			if gl.Name != want.Name || gl.Tensor.DType != want.DType || !gl.Tensor.Shape.Equal(want.Shape) {
				t.Errorf("Merge gave %s %v, PlanRead promised %s %v%v", gl.Name, gl.Tensor, want.Name, want.DType, want.Shape)
			}
			if _, dup := got[gl.Name]; dup {
				t.Errorf("global %s merged twice", gl.Name)
			}
			got[gl.Name] = gl
			order = append(order, gl.Name)
		}
	}
	// Globals come back in the order their first share appears in the
	// rank files, stages and tensors given (PlanRead's promise; the MCA ->
	// HF output follows it).
	globalsOf := map[LocalRef][]string{}
	for _, f := range wp.Files {
		for _, e := range f.Entries {
			lr := LocalRef{Rank: f.Rank, Stage: e.Stage, Name: e.Name}
			for _, p := range e.Parts {
				globalsOf[lr] = append(globalsOf[lr], p.Global)
			}
		}
	}
	var wantOrder []string
	seen := map[string]bool{}
	for _, f := range files {
		for _, lt := range f.Tensors {
			for _, g := range globalsOf[LocalRef{Rank: f.Rank, Stage: lt.Stage, Name: lt.Name}] {
				if !seen[g] {
					seen[g] = true
					wantOrder = append(wantOrder, g)
				}
			}
		}
	}
	if diff := cmp.Diff(wantOrder, order); diff != "" {
		t.Errorf("merged globals not in rank-file order (-want +got):\n%s", diff)
	}
	for _, w := range model {
		gl, ok := got[w.name]
		if !ok {
			t.Errorf("%s: not merged back", w.name)
			continue
		}
		if !gl.Tensor.Equal(w.full()) {
			t.Errorf("%s: merged %v differs from the original %v", w.name, gl.Tensor, w.full())
		}
		if w.st != nil {
			if gl.Stacked == nil || len(gl.Stacked.Components) != len(w.st.Components) {
				t.Errorf("%s: merged without its %d components", w.name, len(w.st.Components))
				continue
			}
			for i := range w.st.Components {
				if !gl.Stacked.Components[i].Equal(w.st.Components[i]) {
					t.Errorf("%s: component %d differs", w.name, i)
				}
			}
		}
		delete(got, w.name)
	}
	for name := range got {
		t.Errorf("merge produced %s, which is not in the model", name)
	}
}

func indexOf(model []gw, name string) int {
	for i, w := range model {
		if w.name == name {
			return i
		}
	}
	panic(name)
}

// splitCase splits the model of a layout case and returns the sharder and
// the assembled rank tensors.
func splitCase(t *testing.T, id string) (*Sharder, Layout, []gw, []*rankTensor) {
	t.Helper()
	for i, c := range layoutCases {
		if c.ID == id {
			model := makeModel(c.O, uint64(i+1))
			l := layoutFor(c.L, c.O)
			s, err := New(l, c.Cls(), c.Opts)
			if err != nil {
				t.Fatal(err)
			}
			return s, l, model, splitAll(t, s, model)
		}
	}
	t.Fatalf("no layout case %s", id)
	return nil, Layout{}, nil, nil
}

func localsOf(rts []*rankTensor, keep func(*rankTensor) bool) []Local {
	var out []Local
	for _, rt := range rts {
		if keep(rt) {
			out = append(out, Local{Rank: rt.Rank, Stage: rt.Stage, Name: rt.Name, Tensor: rt.tensor()})
		}
	}
	return out
}

// corrupt returns a copy of rt with one byte changed.
func corrupt(rt *rankTensor) *rankTensor {
	c := *rt
	c.data = append([]byte(nil), rt.data...)
	c.data[len(c.data)-1] ^= 0x40
	return &c
}

func TestMergeCorruptedReplica(t *testing.T) {
	tests := []struct {
		layout  string
		dir     string // rank file whose copy is corrupted
		local   string // its local name
		weight  string // the global weight the error must name
		differs string // the error must say this rank file differs
	}{
		{"TP2", "mp_rank_01", "decoder.layers.1.self_attention.linear_qkv.layer_norm_weight",
			"decoder.layers.1.self_attention.linear_qkv.layer_norm_weight", "mp_rank_01"},
		{"TP2", "mp_rank_00", "decoder.final_layernorm.weight", "decoder.final_layernorm.weight", "mp_rank_01"},
		// A dense (column) share replicated on every expert rank.
		{"EP2", "mp_rank_00_001", "decoder.layers.1.self_attention.linear_qkv.weight",
			"decoder.layers.1.self_attention.linear_qkv.weight", "mp_rank_00_001"},
		// The tied LM-head copy on the last stage must equal the embedding.
		{"PP2_tied", "mp_rank_00_001", "output_layer.weight", "embedding.word_embeddings.weight", "mp_rank_00_001"},
		// The embedding kept on the last stage for MTP.
		{"PP2", "mp_rank_00_001", "embedding.word_embeddings.weight", "embedding.word_embeddings.weight", "mp_rank_00_001"},
		// An expert share replicated over TP when ETP < TP.
		{"TP2_ETP1_EP2", "mp_rank_01_001", "decoder.layers.2.mlp.experts.local_experts.1.linear_fc2.weight",
			"decoder.layers.2.mlp.experts.local_experts.3.linear_fc2.weight", "mp_rank_01_001"},
	}
	for _, tc := range tests {
		t.Run(tc.layout+"/"+tc.local, func(t *testing.T) {
			s, l, _, rts := splitCase(t, tc.layout)
			found := false
			for i, rt := range rts {
				if RankDir(rt.Rank, l) == tc.dir && rt.Name == tc.local {
					rts[i] = corrupt(rt)
					found = true
				}
			}
			if !found {
				t.Fatalf("no tensor %s in %s", tc.local, tc.dir)
			}
			// Through the planner, as a reader would.
			rp, err := s.PlanRead(rankFiles(l, rts))
			if err != nil {
				t.Fatal(err)
			}
			byRef := map[LocalRef]*rankTensor{}
			for _, rt := range rts {
				byRef[rt.LocalRef] = rt
			}
			var mergeErr error
			for _, g := range rp.Groups {
				locals := localsOf(rts, func(rt *rankTensor) bool { return slices.Contains(g.Members, rt.LocalRef) })
				if _, err := s.Merge(locals); err != nil {
					mergeErr = err
					break
				}
			}
			if mergeErr == nil {
				t.Fatal("merge of a corrupted replica succeeded")
			}
			msg := mergeErr.Error()
			t.Log(msg)
			for _, want := range []string{fmt.Sprintf("%q", tc.weight), tc.differs, "differ"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
		})
	}
}

func TestPlanReadMissing(t *testing.T) {
	s, l, _, rts := splitCase(t, "TP2_PP2_EP2")
	files := rankFiles(l, rts)

	t.Run("rank file", func(t *testing.T) {
		var fs []RankFile
		for _, f := range files {
			if RankDir(f.Rank, l) != "mp_rank_01_001_000" {
				fs = append(fs, f)
			}
		}
		_, err := s.PlanRead(fs)
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), "missing rank file mp_rank_01_001_000") {
			t.Fatalf("got %v, want an error naming mp_rank_01_001_000", err)
		}
	})
	t.Run("tensor", func(t *testing.T) {
		fs := slices.Clone(files)
		for i, f := range fs {
			if RankDir(f.Rank, l) == "mp_rank_00_001_001" {
				f.Tensors = slices.DeleteFunc(slices.Clone(f.Tensors), func(lt LocalTensor) bool {
					return lt.Name == "decoder.layers.0.self_attention.linear_proj.weight"
				})
				fs[i] = f
			}
		}
		_, err := s.PlanRead(fs)
		if err == nil || !strings.Contains(err.Error(), "mp_rank_00_001_001") || !strings.Contains(err.Error(), "decoder.layers.0.self_attention.linear_proj.weight") {
			t.Fatalf("got %v, want an error naming the rank file and tensor", err)
		}
	})
	t.Run("share", func(t *testing.T) {
		// Without TP rank 1's share, Merge names the rank file it expects.
		locals := localsOf(rts, func(rt *rankTensor) bool {
			return rt.Name == "decoder.layers.0.self_attention.linear_proj.weight" && rt.Rank.TP == 0
		})
		_, err := s.Merge(locals)
		if err == nil || !strings.Contains(err.Error(), "mp_rank_01_001_000") {
			t.Fatalf("got %v, want an error naming mp_rank_01_001_000", err)
		}
	})
	t.Run("stage key", func(t *testing.T) {
		s, l, _, rts := splitCase(t, "PP2_VPP2")
		fs := rankFiles(l, rts)
		fs[1].Keys = []string{"model0"}
		_, err := s.PlanRead(fs)
		if err == nil || !strings.Contains(err.Error(), `mp_rank_00_001 has no "model1" entry`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unexpected tensor", func(t *testing.T) {
		fs := slices.Clone(files)
		fs[0].Tensors = append(slices.Clone(fs[0].Tensors), LocalTensor{Stage: 0, Name: "decoder.layers.2.self_attention.linear_proj.weight", DType: tensor.BF16, Shape: tensor.Shape{mH, mAttn / 2}})
		_, err := s.PlanRead(fs)
		if err == nil || !strings.Contains(err.Error(), "mp_rank_00_000_000") {
			t.Fatalf("got %v", err)
		}
	})
}

// A Sharder is shared by the writer's goroutines.
func TestConcurrentSplitMerge(t *testing.T) {
	c := layoutCases[0]
	for _, lc := range layoutCases {
		if lc.ID == "TP2_PP2_EP2" {
			c = lc
		}
	}
	model := makeModel(c.O, 99)
	l := layoutFor(c.L, c.O)
	s, err := New(l, c.Cls(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := splitAll(t, s, model)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for _, w := range model {
				var err error
				if w.st != nil {
					_, err = s.SplitStacked(w.name, *w.st)
				} else {
					_, err = s.Split(w.name, w.t)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			_, err := s.Merge(localsOf(want, func(*rankTensor) bool { return true }))
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// ROLL accepts a checkpoint written with another grouped-GEMM mode and
// fails on key names later (§8.2 item 14); PlanRead names the tensor.
func TestWrongExpertNaming(t *testing.T) {
	_, _, _, rts := splitCase(t, "EP2") // per-expert names
	for _, tc := range []struct {
		l    Layout
		want string
	}{
		{Layout{EP: 2, MoEGroupedGEMM: true}, "must have grouped names (legacy grouped)"},
		{Layout{EP: 2, MoEGroupedGEMM: true, TEGroupedMoE: true}, "must have grouped names (TE grouped)"},
	} {
		l := layoutFor(tc.l, moeModel)
		s, err := New(l, testClassification(), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.PlanRead(rankFiles(l, rts))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "local_experts") {
			t.Errorf("%v: got %v, want %q", l.ExpertNaming(), err, tc.want)
		}
	}
	// A legacy grouped checkpoint read as TE grouped: weight1 is no
	// parallel class there.
	_, _, _, rts = splitCase(t, "LegacyGrouped_TP2_EP2")
	l := layoutFor(Layout{TP: 2, EP: 2, MoEGroupedGEMM: true, TEGroupedMoE: true}, moeModel)
	s, err := New(l, testClassification(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PlanRead(rankFiles(l, rts)); err == nil || !strings.Contains(err.Error(), "experts.weight") {
		t.Errorf("legacy read as TE: %v", err)
	}
}
