package shard

import (
	"fmt"

	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// Stacks knows the global form of the weights whose op result is a stack
// of components: a swiglu fc1 weight (gate and up) and a gdn weight (its
// linear_* components). The ops produce (HF -> MCA) and read (MCA -> HF)
// the components; a global MCA weight, the same at every layout, holds
// them concatenated on dim 0. Stacks joins and cuts them, and tells the
// plain parallel class (swiglu, gdn, duplicated, column, row) of a global
// weight; the grouped classes only decide placement ([Sharder]).
//
// A Stacks is what a 1x1x1 layout needs of the placement rules: it
// depends only on the classification and the swiglu flag and gdn sizes of
// the layout, never on the parallel sizes.
type Stacks struct {
	l     Layout
	plain *rollname.Classifier
}

// NewStacks returns the Stacks of layout l and classification c.
func NewStacks(l Layout, c Classification) (*Stacks, error) {
	return &Stacks{l: l, plain: rollname.NewClassifier(classLists(c))}, nil
}

// Class returns the plain parallel class of a global MCA name (its layer
// and expert prefix removed, ".bias" read as ".weight"), first match in
// ROLL's order, or Unclassified.
func (s *Stacks) Class(name string) Class {
	pure := name
	if n, err := rollname.ParseMCAName(name); err == nil {
		pure = n.Pure
	}
	return s.plain.Classify(pure, false, s.l.Swiglu)
}

func unclassifiedErr(name string) error {
	return fmt.Errorf("MCA tensor %q is in no parallel class of the template (duplicated, column, row, swiglu, gdn)", name)
}

// Join returns the global weight name of an op result: t, or with st not
// nil the components of st concatenated on dim 0, which is only right for
// a swiglu weight (exactly gate and up) or a gdn weight; a swiglu weight
// must be stacked (torch.chunk on a StackedTensors is an error in ROLL).
func (s *Stacks) Join(name string, t tensor.Tensor, st *tensor.Stacked) (tensor.Tensor, error) {
	class := s.Class(name)
	if class == Unclassified {
		return tensor.Tensor{}, unclassifiedErr(name)
	}
	if st == nil {
		if class == Swiglu {
			return tensor.Tensor{}, fmt.Errorf("MCA tensor %q is swiglu but the op produced a plain tensor %v; want gate and up stacked", name, t)
		}
		return t, nil
	}
	switch class {
	case Swiglu:
		if len(st.Components) != 2 || st.Dim != 0 {
			return tensor.Tensor{}, fmt.Errorf("MCA tensor %q is swiglu but the op produced %v; want gate and up stacked on dim 0", name, *st)
		}
	case GDN:
		if st.Dim != 0 {
			return tensor.Tensor{}, fmt.Errorf("MCA tensor %q is gdn but the op produced %v; want components stacked on dim 0", name, *st)
		}
	default:
		return tensor.Tensor{}, fmt.Errorf("MCA tensor %q is %s-parallel but the op produced a stacked tensor %v", name, class, *st)
	}
	j, err := st.Concat()
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("MCA tensor %q: %v", name, err)
	}
	return j, nil
}

// Cut is the inverse of Join: it cuts a global swiglu weight into halves
// (gate, up) and a gdn weight into its components ([Layout.GDNRows]);
// stacked is false for any other class, whose weight is used as is.
func (s *Stacks) Cut(name string, t tensor.Tensor) (st tensor.Stacked, stacked bool, err error) {
	var sizes []int64
	switch s.Class(name) {
	case Unclassified:
		return tensor.Stacked{}, false, unclassifiedErr(name)
	case Swiglu:
		if len(t.Shape) == 0 || t.Shape[0]%2 != 0 {
			return tensor.Stacked{}, false, fmt.Errorf("MCA tensor %q %v is swiglu (gate and up stacked) but does not have an even number of rows", name, t)
		}
		sizes = []int64{t.Shape[0] / 2, t.Shape[0] / 2}
	case GDN:
		if sizes, err = s.l.GDNRows(name); err != nil {
			return tensor.Stacked{}, false, fmt.Errorf("MCA tensor %q: %v", name, err)
		}
		var total int64
		for _, r := range sizes {
			total += r
		}
		if len(t.Shape) == 0 || t.Shape[0] != total {
			return tensor.Stacked{}, false, fmt.Errorf("MCA tensor %q %v is gdn with components of %v rows (%d in all)", name, t, sizes, total)
		}
	default:
		return tensor.Stacked{}, false, nil
	}
	parts, err := tensor.Split(t, 0, sizes...)
	if err != nil {
		return tensor.Stacked{}, false, fmt.Errorf("MCA tensor %q: %v", name, err)
	}
	return tensor.Stacked{Components: parts}, true, nil
}
