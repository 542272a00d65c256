package shard

import (
	"fmt"
	"strconv"
	"strings"
)

// Rank identifies one rank file of a legacy MCA checkpoint: its tensor,
// pipeline and expert parallel ranks. Virtual pipeline stages live inside
// the file (keys "model0", "model1", …); the expert tensor parallel rank
// is not part of the name (it is TP mod ETP).
type Rank struct {
	TP, PP, EP int
}

func (r Rank) String() string {
	return fmt.Sprintf("tp%d/pp%d/ep%d", r.TP, r.PP, r.EP)
}

// RankDir returns the rank directory name Megatron and ROLL use:
// "mp_rank_TT", then "_PPP" when PP > 1, then "_EEE" when EP > 1
// (roll-converter-spec.md §6.1). With EP > 1 and PP = 1 the name has the
// same form as with PP > 1 and EP = 1; the layout disambiguates.
func RankDir(r Rank, l Layout) string {
	n := l.Normalized()
	s := fmt.Sprintf("mp_rank_%02d", r.TP)
	if n.PP > 1 {
		s += fmt.Sprintf("_%03d", r.PP)
	}
	if n.EP > 1 {
		s += fmt.Sprintf("_%03d", r.EP)
	}
	return s
}

// ParseRankDir is the inverse of [RankDir] for the given layout.
func ParseRankDir(dir string, l Layout) (Rank, error) {
	n := l.Normalized()
	rest, ok := strings.CutPrefix(dir, "mp_rank_")
	if !ok {
		return Rank{}, fmt.Errorf("rank directory %q does not start with mp_rank_", dir)
	}
	parts := strings.Split(rest, "_")
	want := 1
	if n.PP > 1 {
		want++
	}
	if n.EP > 1 {
		want++
	}
	if len(parts) != want {
		return Rank{}, fmt.Errorf("rank directory %q does not match the layout (PP %d, EP %d)", dir, n.PP, n.EP)
	}
	vals := make([]int, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || leadingDigits(p) != p {
			return Rank{}, fmt.Errorf("rank directory %q: %q is not a rank number", dir, p)
		}
		vals[i] = v
	}
	r := Rank{TP: vals[0]}
	i := 1
	if n.PP > 1 {
		r.PP = vals[i]
		i++
	}
	if n.EP > 1 {
		r.EP = vals[i]
	}
	if r.TP >= n.TP || r.PP >= n.PP || r.EP >= n.EP {
		return Rank{}, fmt.Errorf("rank directory %q is outside the layout (TP %d, PP %d, EP %d)", dir, n.TP, n.PP, n.EP)
	}
	if RankDir(r, l) != dir {
		return Rank{}, fmt.Errorf("rank directory %q is not canonical (want %q)", dir, RankDir(r, l))
	}
	return r, nil
}

// Ranks returns every rank file of the layout in the order ROLL writes
// them: tensor rank outermost, then pipeline, then expert rank.
func Ranks(l Layout) []Rank {
	n := l.Normalized()
	out := make([]Rank, 0, n.TP*n.PP*n.EP)
	for tp := range n.TP {
		for pp := range n.PP {
			for ep := range n.EP {
				out = append(out, Rank{tp, pp, ep})
			}
		}
	}
	return out
}

// StageKey returns the state-dict key of virtual stage vp: "model" without
// virtual pipeline (VPP ≤ 1), else "model0" … "model<VPP-1>".
//
// ROLL writes "model0" when --virtual_pipeline_model_parallel_size 1 is
// given explicitly, which neither its exporter nor the single-chunk loader
// can read (roll-converter-spec.md §8.2 item 7); this package always uses
// "model" for a single stage.
func StageKey(vp int, l Layout) string {
	if l.Normalized().VPP <= 1 {
		return "model"
	}
	return "model" + strconv.Itoa(vp)
}

// StageKeys returns the state-dict keys of one rank file, in stage order.
func StageKeys(l Layout) []string {
	n := l.Normalized()
	keys := make([]string, n.VPP)
	for vp := range keys {
		keys[vp] = StageKey(vp, l)
	}
	return keys
}

// ParseStageKey is the inverse of [StageKey]. It allocates nothing per
// stage: a rank file may hold many keys and the layout many stages.
func ParseStageKey(key string, l Layout) (int, error) {
	vpp := l.Normalized().VPP
	if vpp <= 1 {
		if key == "model" {
			return 0, nil
		}
		return 0, fmt.Errorf("state-dict key %q is not %q (no virtual pipeline)", key, "model")
	}
	if d, ok := strings.CutPrefix(key, "model"); ok && d != "" && (d == "0" || d[0] != '0') &&
		strings.Trim(d, "0123456789") == "" {
		if vp, err := strconv.Atoi(d); err == nil && vp < vpp {
			return vp, nil
		}
	}
	return 0, fmt.Errorf("state-dict key %q is not one of \"model0\" … \"model%d\" (virtual pipeline size %d)", key, vpp-1, vpp)
}
