package tensor

import (
	"errors"
	"fmt"
	"strings"
)

// Stacked is ROLL's StackedTensors: a logical weight that is the
// concatenation of Components along Dim, kept apart because tensor
// parallelism splits each component on its own and joins the per-rank
// pieces in component order (gate/up of a SwiGLU MLP, the q/k/v/z/b/a parts
// of a Gated-DeltaNet projection).
type Stacked struct {
	Components []Tensor
	Dim        int
}

// NewStacked returns the Stacked of ts along dim after checking that they
// can be concatenated: same dtype, same rank, equal dimensions except dim.
func NewStacked(dim int, ts ...Tensor) (Stacked, error) {
	s := Stacked{Components: ts, Dim: dim}
	if err := s.Validate(); err != nil {
		return Stacked{}, err
	}
	return s, nil
}

// Validate reports whether the components can be concatenated along Dim.
func (s Stacked) Validate() error {
	if len(s.Components) == 0 {
		return errors.New("tensor: stacked tensor without components")
	}
	first := s.Components[0]
	d, err := normDim(s.Dim, len(first.Shape))
	if err != nil {
		return fmt.Errorf("tensor: stacked: %w", err)
	}
	for i, t := range s.Components {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("tensor: stacked component %d: %w", i, err)
		}
		if t.DType != first.DType {
			return fmt.Errorf("tensor: stacked component %d is %v, component 0 is %v", i, t.DType, first.DType)
		}
		if !sameExcept(t.Shape, first.Shape, d) {
			return fmt.Errorf("tensor: stacked along dim %d: component %d has shape %v, component 0 has %v", d, i, t.Shape, first.Shape)
		}
	}
	return nil
}

// Concat returns the logical tensor: the components concatenated along Dim,
// as a view (see [Concat]).
func (s Stacked) Concat() (Tensor, error) {
	if len(s.Components) == 0 {
		return Tensor{}, errors.New("tensor: stacked tensor without components")
	}
	return Concat(s.Dim, s.Components...)
}

// String describes s without data, as in "Stacked(dim 0: BF16[4, 8], BF16[4, 8])".
func (s Stacked) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Stacked(dim %d:", s.Dim)
	for i, t := range s.Components {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte(' ')
		b.WriteString(t.String())
	}
	b.WriteByte(')')
	return b.String()
}
