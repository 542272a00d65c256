package exec

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/pyjson"
)

// This file records which of a template's alternative ops converted each
// layer, so that MCA -> HF gives back the HF layout the checkpoint came
// from. Alternative ops are ops whose MCA names overlap: several HF
// layouts of the same MCA weights (qwen3_5_moe: a fused-expert split op
// and the per-expert ops). HF -> MCA, the op the HF names select runs;
// MCA -> HF, the names alone cannot tell which layout to write back, and
// the op table takes one for every layer (model.go, opTable). A
// checkpoint may mix layouts (the Qwen3.5-35B-A3B release keeps its
// decoder layers' experts fused and its MTP layer's one by one), so
// HF -> MCA records, in mca_config.json, per alternative op the layers
// it converted; MCA -> HF takes, in a layer the record names, the op
// recorded for it, and the op table's choice elsewhere (a checkpoint
// written by ROLL or an older rolltplc has no record).

// LayerOpsKey is the mca_config.json key of the record: an object
// mapping the index of an alternative op in the template's ops (0-based,
// as a decimal string) to the layers it converted, as a string of
// comma-separated ranges ("0-39,41"); layers are canonical (MTP layer i
// is layer num_layers + i). Only templates with alternative ops write it.
const LayerOpsKey = "rolltpl_layer_ops"

// altGroups returns the alternative ops of the template: op index → the
// lowest index of its group, for the ops sharing an MCA name with another
// op (sides of per-layer name variants share their op's index).
func altGroups(sides []*side) map[int]int {
	owner := map[string]int{} // MCA name → first op index declaring it
	parent := map[int]int{}
	var find func(int) int
	find = func(i int) int {
		p, ok := parent[i]
		if !ok || p == i {
			return i
		}
		r := find(p)
		parent[i] = r
		return r
	}
	for _, s := range sides {
		i := s.info.index
		for _, n := range s.info.mca {
			j, ok := owner[n]
			if !ok {
				owner[n] = i
				continue
			}
			if j == i {
				continue
			}
			a, b := find(i), find(j)
			if a != b {
				parent[max(a, b)] = min(a, b)
			}
			if _, ok := parent[i]; !ok {
				parent[i] = find(i)
			}
			if _, ok := parent[j]; !ok {
				parent[j] = find(j)
			}
		}
	}
	g := map[int]int{}
	for i := range parent {
		g[i] = find(i)
	}
	return g
}

// layerOps collects, from an HF -> MCA plan, the layers each alternative
// op converted (nil when the template has none or none ran).
func (pl *planner) layerOps() map[int][]int {
	if len(pl.alt) == 0 {
		return nil
	}
	plain := pl.src
	plain.mtp = nil
	set := map[int]map[int]bool{}
	for _, st := range pl.p.Steps {
		if _, ok := pl.alt[st.OpIndex]; !ok || st.Dropped || st.Bucket == "" {
			continue
		}
		wp, _, err := plain.split(st.Bucket) // canonical prefixes
		if err != nil || wp.Layer < 0 {
			continue
		}
		if set[st.OpIndex] == nil {
			set[st.OpIndex] = map[int]bool{}
		}
		set[st.OpIndex][wp.Layer] = true
	}
	if len(set) == 0 {
		return nil
	}
	out := make(map[int][]int, len(set))
	for o, ls := range set {
		for l := range ls {
			out[o] = append(out[o], l)
		}
		slices.Sort(out[o])
	}
	return out
}

// recordLayerOps sets LayerOpsKey in the MCA config an HF -> MCA
// conversion writes (removes it when the plan ran no alternative op).
// Every job of a multi-job conversion plans the whole checkpoint, so
// they all record the same.
func recordLayerOps(mc *MCAConfig, p *Plan) {
	obj := mc.Object()
	if len(p.layerOps) == 0 {
		obj.Delete(LayerOpsKey)
		return
	}
	idx := make([]int, 0, len(p.layerOps))
	for o := range p.layerOps {
		idx = append(idx, o)
	}
	slices.Sort(idx)
	rec := pyjson.NewObject()
	for _, o := range idx {
		rec.Set(strconv.Itoa(o), formatRanges(p.layerOps[o]))
	}
	obj.Set(LayerOpsKey, rec)
}

// formatRanges writes sorted layer indices as comma-separated ranges.
func formatRanges(ls []int) string {
	var b strings.Builder
	for i := 0; i < len(ls); {
		j := i
		for j+1 < len(ls) && ls[j+1] == ls[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(ls[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(ls[j]))
		}
		i = j + 1
	}
	return b.String()
}

// parseRanges reads formatRanges's output; no layer may be limit or
// beyond and the ranges may not hold more than limit layers in all (the
// config's layer count, so a hostile value cannot allocate without
// bound).
func parseRanges(s string, limit int) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("bad layer %q", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad layer range %q", part)
			}
		}
		if b >= limit {
			return nil, fmt.Errorf("layer %d is beyond the %d layers of the config", b, limit)
		}
		if len(out)+b-a+1 > limit {
			return nil, fmt.Errorf("more layers than the %d of the config", limit)
		}
		for l := a; l <= b; l++ {
			out = append(out, l)
		}
	}
	return out, nil
}

// readLayerOps reads LayerOpsKey from the MCA config of an MCA -> HF
// conversion into pl.recorded ({canonical layer, group} → op index). An absent
// record leaves it nil; a malformed one, or one naming an op that is not
// an alternative op of the template, is a config problem.
func (pl *planner) readLayerOps() {
	v, ok := pl.p.Config.Object().Get(LayerOpsKey)
	if !ok || v == nil {
		return
	}
	bad := func(format string, args ...any) {
		pl.problem(ProblemConfig, Error, "", nil, "%s in %s: %s", LayerOpsKey, MCAConfigName, fmt.Sprintf(format, args...))
	}
	rec, ok := v.(*pyjson.Object)
	if !ok {
		bad("not an object but %s", pyjson.Kind(v))
		return
	}
	n, _ := pl.p.Config.Int("num_layers")
	limit := int(min(max(n, 0), 1<<20))
	if pl.mtp != nil {
		limit += pl.mtp.num
	}
	pl.recorded = map[[2]int]int{}
	keys := slices.Clone(rec.Keys())
	sort.Strings(keys)
	for _, k := range keys {
		o, err := strconv.Atoi(k)
		if _, alt := pl.alt[o]; err != nil || !alt {
			bad("%q is not the index of an op of template %s that shares MCA names with another", k, pl.m.Template.Name)
			continue
		}
		rv, _ := rec.Get(k)
		s, ok := rv.(string)
		if !ok {
			bad("op %s: the layers are %s, not a string", k, pyjson.Kind(rv))
			continue
		}
		ls, err := parseRanges(s, limit)
		if err != nil {
			bad("op %s: %v", k, err)
			continue
		}
		for _, l := range ls {
			at := [2]int{l, pl.alt[o]}
			if p, dup := pl.recorded[at]; dup {
				bad("layer %d is recorded for ops %d and %d", l, p, o)
				continue
			}
			pl.recorded[at] = o
		}
	}
}

// recordedSide returns the side to use, MCA -> HF, for a name of layer
// that the op table mapped to s by key: the side of the op the record
// names for this layer among s's alternatives, when that op declares the
// key too; else s.
func (pl *planner) recordedSide(s *side, key string, layer int) *side {
	if pl.recorded == nil || layer < 0 {
		return s
	}
	g, ok := pl.alt[s.info.index]
	if !ok {
		return s
	}
	o, ok := pl.recorded[[2]int{layer, g}]
	if !ok || o == s.info.index {
		return s
	}
	for _, c := range pl.sides {
		if c.info.index == o && slices.Contains(c.info.mca, key) {
			return c
		}
	}
	return s
}
