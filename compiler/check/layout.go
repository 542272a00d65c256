package check

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/lang/diag"
)

// Layout checks: without a checkpoint, the checker knows what each op
// hands ROLL's DistConverter for an MCA weight (vocab.OpSpec.Produces)
// and what the weight's parallel class requires, as DistConverter's
// dist_convert dispatches on it:
//
//   - swiglu (when the template sets swiglu) and, with swiglu,
//     grouped_column: handle_swiglu asserts a StackedTensors of exactly two
//     parts (gate, up) along dim 0; anything else crashes the conversion.
//   - gdn: handle_gdn takes a StackedTensors along dim 0 and, converting
//     back, splits an in_proj into 6 parts and a conv1d into 3; it also
//     asserts swiglu, so a gdn weight without swiglu is a mismatch too.
//   - Megatron's fused QKV (vocab.FusedQKVSuffix): the group-interleaved
//     layout of the qkv-family ops. Any other op writes a tensor of the
//     right size in the wrong order, which every later gate accepts.
//   - every other class: torch.chunk of a plain tensor; a StackedTensors
//     there crashes.
//
// A mismatch is a layout-mismatch error at the op.

// layout reports ops whose output does not have the layout their MCA
// weight requires, once per op.
func (c *checker) layout(t *ir.Template) {
	if t.Parallel == nil {
		return // parallel-coverage says so
	}
	swiglu := setsSwiglu(t)
	reported := map[*ir.Op]bool{}
	for mi, mode := range c.modes(t) {
		eff := c.effective(t, mode)
		for _, op := range t.Ops {
			spec := vocab.Op(op.Kind)
			if reported[op] || spec == nil || spec.Arity == vocab.DropArity {
				continue
			}
			hf, mca := c.resolved(t, op, mi)
			n := len(hf)
			if op.Inputs != nil {
				n = 0 // operands built from tensor steps: parts not counted here
			}
			dim := opDim(op)
			if dim < -2 || dim > 1 {
				continue // param-range says so
			}
			got := spec.LayoutOf(n, len(mca), dim)
			for _, name := range mca {
				if !swiglu && inClass(eff, rollname.KeyGDN, pure(name)) {
					reported[op] = true
					c.add(diag.Errorf(op.Span, diag.LayoutMismatch, "GDN weight without swiglu",
						"MCA weight %s%s is in the gdn class, which ROLL's DistConverter converts only with swiglu on (handle_gdn asserts mca_config.swiglu); set `swiglu = true` in the mca section.", name, flagNote(mode)))
					break
				}
				want, why, ok := requiredLayout(eff, name, swiglu)
				if !ok || got.Satisfies(want) {
					continue
				}
				reported[op] = true
				detail := fmt.Sprintf("MCA weight %s%s needs %s: %s. Op %s produces %s.", name, flagNote(mode), want, why, op.Kind, got)
				if kinds := vocab.Producing(want); len(kinds) > 0 && want.Form != vocab.FormPlain {
					detail += fmt.Sprintf(" Use %s.", orList(kinds))
				}
				c.add(diag.Errorf(op.Span, diag.LayoutMismatch, "Op produces the wrong layout for its MCA weight", "%s", detail))
				break
			}
		}
	}
}

// requiredLayout returns the layout the MCA weight name requires under
// the classification eff, and why; ok is false when any layout will do
// (a name in no class: parallel-coverage reports it).
func requiredLayout(eff ir.Effective, name string, swiglu bool) (want vocab.Layout, why string, ok bool) {
	p := pure(name)
	switch {
	case swiglu && inClass(eff, rollname.KeySwiglu, p):
		return vocab.Layout{Form: vocab.FormStacked, Parts: 2}, "it is in the swiglu class, and ROLL's DistConverter asserts a stack of gate and up (StackedTensors of 2 parts, dim 0)", true
	case swiglu && inMap(eff, rollname.KeyGroupedColumn, p):
		return vocab.Layout{Form: vocab.FormStacked, Parts: 2}, "it is in the grouped_column class of a swiglu model, and ROLL's DistConverter splits it as swiglu gate and up (StackedTensors of 2 parts, dim 0)", true
	case inClass(eff, rollname.KeyGDN, p):
		parts := vocab.GDNParts(p)
		why := "it is in the gdn class, and ROLL's DistConverter takes a StackedTensors along dim 0"
		if parts > 0 {
			why += fmt.Sprintf(" and splits it back into %d parts", parts)
		}
		return vocab.Layout{Form: vocab.FormStacked, Parts: parts}, why, true
	case strings.HasSuffix(p, vocab.FusedQKVSuffix):
		return vocab.Layout{Form: vocab.FormQKV}, "it is Megatron's fused QKV projection, q, k and v interleaved by query group", true
	case inMap(eff, rollname.KeyGroupedDuplicated, p) || inMap(eff, rollname.KeyGroupedColumn, p) || inMap(eff, rollname.KeyGroupedRow, p) ||
		inClass(eff, rollname.KeyDuplicated, p) || inClass(eff, rollname.KeyColumn, p) || inClass(eff, rollname.KeyRow, p):
		return vocab.Layout{Form: vocab.FormPlain}, "its parallel class splits or copies one tensor, and ROLL's DistConverter fails on a StackedTensors", true
	}
	// In no class that applies (a swiglu-only name without swiglu):
	// ROLL's DistConverter rejects the name whatever its layout.
	return vocab.Layout{}, "", false
}

// setsSwiglu reports whether the MCA config of t may have swiglu on: a
// constant true or a value mapped from the HF config.
func setsSwiglu(t *ir.Template) bool {
	for _, k := range t.Constants {
		if k.Key == "swiglu" {
			return k.Value.Kind == ir.Bool && k.Value.Bool
		}
	}
	for _, e := range t.Config {
		if e.MCA == "swiglu" {
			return true
		}
	}
	return false
}

// opDim returns the op's dim parameter (0 when unset or not a number).
func opDim(op *ir.Op) int {
	v, ok := op.Params["dim"]
	if !ok {
		return 0
	}
	d, _ := strconv.Atoi(v.Text)
	return d
}

// inClass reports whether the pure name p matches a pattern of the list
// class (whole name, shell glob, as ROLL's name_match).
func inClass(eff ir.Effective, class, p string) bool {
	return matchAny(eff.Lists[class], p)
}

// inMap reports whether the pure name p matches a key or a value of the
// map class (ROLL's grouped_*_weights are keys plus values).
func inMap(eff ir.Effective, class, p string) bool {
	var pats []string
	for _, e := range eff.Maps[class] {
		pats = append(pats, e.From, e.To)
	}
	return matchAny(pats, p)
}

// matchAny reports whether the pure name p (a {} read as one name
// component) matches one of the patterns by ROLL's name_match.
func matchAny(patterns []string, p string) bool {
	return rollname.NameMatch(strings.ReplaceAll(p, "*", "x"), patterns)
}

// orList joins names as "a, b or c".
func orList(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
