package ops

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// The primitive tensor steps a composed op is built from (spec §7,
// composable tensor ops; docs tensor-ops.md).
const (
	StepSplit     = "split"     // cut along Dim into parts of Sizes; inverse cat
	StepChunk     = "chunk"     // cut along Dim into Parts equal parts (torch.chunk); inverse cat
	StepCat       = "cat"       // concatenate every part of the operands along Dim; inverse split
	StepReshape   = "reshape"   // view as Shape (one -1 allowed); inverse reshape to the input shape
	StepTranspose = "transpose" // swap Dims[0] and Dims[1] (a copy); inverse the same swap
	StepSlice     = "slice"     // rows [Start, Stop) along Dim; not invertible
)

// maxParts bounds the number of parts one split or chunk yields, so that
// a size list from a template cannot ask for unbounded allocation.
const maxParts = 1 << 16

// A Node is one HF-side operand of a composed op, with its sizes already
// evaluated: a leaf (Leaf >= 0) yields the HF input Leaf; a step node
// applies Step to the parts its Operands yield, in order. A split yields
// len(Sizes) parts, a chunk Parts parts, every other step one tensor.
type Node struct {
	// Leaf is the index of the HF input a leaf reads; -1 for a step.
	Leaf int
	// Step is the step kind (StepSplit, ...).
	Step     string
	Operands []*Node
	// Dim is the dimension of split, chunk, cat and slice (negative counts
	// from the end).
	Dim int
	// Sizes are a split's part sizes; for a cat, when set, the sizes of
	// its operands' parts along Dim, which the inverse needs and cannot
	// always infer.
	Sizes []int64
	// Parts is a chunk's number of parts.
	Parts int
	// Shape is a reshape's target shape.
	Shape []int64
	// From, when set, is the shape of a reshape's input (one -1
	// allowed), for the inverse where the steps do not determine it (the
	// reshape reads an HF tensor).
	From []int64
	// Dims are the two dimensions a transpose swaps.
	Dims [2]int
	// Start and Stop delimit a slice.
	Start, Stop int64
	// Pos names the step in messages, e.g. "phi3.rolltpl:12:9".
	Pos string
}

// Leaf returns a leaf node reading HF input i.
func Leaf(i int) *Node { return &Node{Leaf: i} }

// yields returns the number of tensors n yields.
func (n *Node) yields() int {
	switch {
	case n.Leaf >= 0:
		return 1
	case n.Step == StepSplit:
		return len(n.Sizes)
	case n.Step == StepChunk:
		return n.Parts
	}
	return 1
}

// describe names the step for messages.
func (n *Node) describe() string {
	s := n.Step
	switch n.Step {
	case StepSplit:
		s += fmt.Sprintf("(dim %d, sizes %v)", n.Dim, n.Sizes)
	case StepChunk:
		s += fmt.Sprintf("(dim %d, %d parts)", n.Dim, n.Parts)
	case StepCat:
		s += fmt.Sprintf("(dim %d)", n.Dim)
	case StepReshape:
		s += fmt.Sprintf("(%v)", n.Shape)
	case StepTranspose:
		s += fmt.Sprintf("(%d, %d)", n.Dims[0], n.Dims[1])
	case StepSlice:
		s += fmt.Sprintf("(dim %d, %d:%d)", n.Dim, n.Start, n.Stop)
	}
	if n.Pos != "" {
		s += " at " + n.Pos
	}
	return "step " + s
}

// Check reports a malformed node tree: an unknown step, a step with the
// wrong number of operand parts, a leaf beyond numHF inputs, or sizes out
// of bounds. Shapes are checked when the steps run.
func (n *Node) Check(numHF int) error {
	if n == nil {
		return fmt.Errorf("ops: nil step node")
	}
	if n.Leaf >= 0 {
		if n.Leaf >= numHF {
			return fmt.Errorf("ops: a step reads HF input %d of %d", n.Leaf, numHF)
		}
		return nil
	}
	in := 0
	for _, o := range n.Operands {
		if err := o.Check(numHF); err != nil {
			return err
		}
		in += o.yields()
	}
	switch n.Step {
	case StepCat:
		if in == 0 {
			return fmt.Errorf("ops: %s has no operands", n.describe())
		}
		if n.Sizes != nil && len(n.Sizes) != in {
			return fmt.Errorf("ops: %s: %d operand sizes for %d parts", n.describe(), len(n.Sizes), in)
		}
	case StepSplit, StepChunk, StepReshape, StepTranspose, StepSlice:
		if in != 1 {
			return fmt.Errorf("ops: %s takes one tensor; its operands yield %d", n.describe(), in)
		}
	default:
		return fmt.Errorf("ops: unknown tensor step %q", n.Step)
	}
	switch n.Step {
	case StepSplit:
		if len(n.Sizes) == 0 || len(n.Sizes) > maxParts {
			return fmt.Errorf("ops: %s: want 1 to %d sizes", n.describe(), maxParts)
		}
		for _, s := range n.Sizes {
			if s < 0 {
				return fmt.Errorf("ops: %s: negative size", n.describe())
			}
		}
	case StepChunk:
		if n.Parts <= 0 || n.Parts > maxParts {
			return fmt.Errorf("ops: %s: want 1 to %d parts", n.describe(), maxParts)
		}
	case StepSlice:
		if n.Start < 0 || n.Stop < n.Start {
			return fmt.Errorf("ops: %s: bad bounds", n.describe())
		}
	case StepReshape:
		if len(n.Shape) > 64 || len(n.From) > 64 {
			return fmt.Errorf("ops: %s: more than 64 dimensions", n.describe())
		}
	}
	return nil
}

// A Composite is an op the catalog lacks, composed from primitive steps:
// its HF operands are built from the op's HF tensors by step programs
// (Inputs) and the parts they yield, in order, are the HF inputs of the
// catalog op Op. HF -> MCA runs the steps, then Op; MCA -> HF runs Op's
// inverse, then the inverse steps in reverse order.
//
// Every step but transpose is a view (row windows for a split along dim 0,
// piece lists otherwise, metadata for a reshape): no bytes are copied.
// A transpose writes its result into a buffer from Config.Alloc.
type Composite struct {
	// Op is the catalog op; its NumHF is the number of parts Inputs yield.
	Op Op
	// Inputs are the HF operands, one per operand written.
	Inputs []*Node
	// NumHF is the number of HF tensors the op declares (the leaves'
	// range).
	NumHF int
	// Names name the HF tensors in messages (optional).
	Names []string
}

// Check reports a malformed composite: bad nodes, or a part count the
// catalog op does not take.
func (c *Composite) Check() error {
	parts := 0
	for _, n := range c.Inputs {
		if err := n.Check(c.NumHF); err != nil {
			return err
		}
		parts += n.yields()
	}
	op := c.Op
	op.NumHF = parts
	if _, _, err := op.Arity(); err != nil {
		return fmt.Errorf("%v (the parts the tensor steps yield)", err)
	}
	if parts != c.Op.NumHF {
		return fmt.Errorf("ops: the tensor steps yield %d parts but %s is declared with %d HF inputs", parts, c.Op.Kind, c.Op.NumHF)
	}
	return nil
}

// Apply runs c in direction dir on real data: in are the op's HF tensors
// (HF -> MCA) or its MCA tensors (MCA -> HF), in declared order.
func (c *Composite) Apply(dir Direction, cfg Config, in []Value) ([]Value, error) {
	return c.run(dir, cfg, in, Op.Apply, false)
}

// Plan runs c for shapes only: the bytes of in are never read (they may be
// stand-ins over unmapped address space) and transposes only swap shapes.
// catalog applies the catalog op; it must not read bytes either.
func (c *Composite) Plan(dir Direction, cfg Config, in []Value, catalog func(Op, Direction, Config, []Value) ([]Value, error)) ([]Value, error) {
	return c.run(dir, cfg, in, catalog, true)
}

func (c *Composite) run(dir Direction, cfg Config, in []Value, catalog func(Op, Direction, Config, []Value) ([]Value, error), shapesOnly bool) (out []Value, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, &Error{Kind: c.Op.Kind, Dir: dir, Msg: fmt.Sprintf("tensor steps: internal error: %v", r)}
		}
	}()
	if err := c.Check(); err != nil {
		return nil, err
	}
	r := &stepRun{cfg: cfg, shapesOnly: shapesOnly, names: c.Names}
	switch dir {
	case HFToMCA:
		if len(in) != c.NumHF {
			return nil, fmt.Errorf("ops: %s with tensor steps: got %d HF tensors, want %d", c.Op.Kind, len(in), c.NumHF)
		}
		leaves := make([]tensor.Tensor, len(in))
		for i, v := range in {
			if v.IsStacked() {
				return nil, fmt.Errorf("ops: %s with tensor steps: %s is a stacked tensor", c.Op.Kind, r.leafName(i))
			}
			if err := v.Tensor.Validate(); err != nil {
				return nil, fmt.Errorf("ops: %s with tensor steps: %s: %v", c.Op.Kind, r.leafName(i), err)
			}
			leaves[i] = v.Tensor
		}
		parts, err := r.forwardAll(c.Inputs, leaves)
		if err != nil {
			return nil, err
		}
		return catalog(c.Op, HFToMCA, cfg, values(parts...))
	case MCAToHF:
		res, err := catalog(c.Op, MCAToHF, cfg, in)
		if err != nil {
			return nil, err
		}
		parts := make([]tensor.Tensor, len(res))
		for i, v := range res {
			if parts[i], err = v.Flatten(); err != nil {
				return nil, err
			}
		}
		leaves, err := r.inverseAll(c.Inputs, parts, c.NumHF)
		if err != nil {
			return nil, err
		}
		return values(leaves...), nil
	}
	return nil, fmt.Errorf("ops: %s: invalid direction %v", c.Op.Kind, dir)
}

// RunSteps runs step programs alone, without a catalog op: HF -> MCA it
// maps the HF tensors in (leaves index them) to the parts the nodes yield,
// in order; MCA -> HF it maps such parts back to the HF tensors (as many
// as the largest leaf index + 1). Transposes allocate with make. It is the
// runtime's reference for the Python backend's generated steps.
func RunSteps(dir Direction, nodes []*Node, in []tensor.Tensor) (out []tensor.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("ops: tensor steps: internal error: %v", r)
		}
	}()
	numHF := 0
	var walk func(n *Node)
	walk = func(n *Node) {
		if n == nil {
			return
		}
		numHF = max(numHF, n.Leaf+1)
		for _, o := range n.Operands {
			walk(o)
		}
	}
	for _, n := range nodes {
		walk(n)
	}
	if dir == HFToMCA && len(in) > numHF {
		numHF = len(in)
	}
	for _, n := range nodes {
		if err := n.Check(numHF); err != nil {
			return nil, err
		}
	}
	r := &stepRun{}
	if dir == HFToMCA {
		if len(in) != numHF {
			return nil, fmt.Errorf("ops: tensor steps read %d HF tensors, got %d", numHF, len(in))
		}
		return r.forwardAll(nodes, in)
	}
	return r.inverseAll(nodes, in, numHF)
}

// stepRun is one run of step programs.
type stepRun struct {
	cfg        Config
	shapesOnly bool
	names      []string
}

func (r *stepRun) leafName(i int) string {
	if i < len(r.names) && r.names[i] != "" {
		return r.names[i]
	}
	return "HF input " + strconv.Itoa(i)
}

// operandName names what a node reads, for messages: the HF tensors of
// its leaves.
func (r *stepRun) operandName(n *Node) string {
	var names []string
	var walk func(n *Node)
	walk = func(n *Node) {
		if n.Leaf >= 0 {
			if s := r.leafName(n.Leaf); !slices.Contains(names, s) {
				names = append(names, s)
			}
			return
		}
		for _, o := range n.Operands {
			walk(o)
		}
	}
	walk(n)
	return strings.Join(names, ", ")
}

func (r *stepRun) errorf(n *Node, format string, args ...any) error {
	return fmt.Errorf("ops: %s of %s: %s", n.describe(), r.operandName(n), fmt.Sprintf(format, args...))
}

func (r *stepRun) alloc(n int64) []byte {
	if r.cfg.Alloc != nil {
		if b := r.cfg.Alloc(int(n)); int64(len(b)) >= n {
			return b[:n]
		}
	}
	return make([]byte, n)
}

// forwardAll runs every node HF -> MCA and returns all their parts.
func (r *stepRun) forwardAll(nodes []*Node, leaves []tensor.Tensor) ([]tensor.Tensor, error) {
	var parts []tensor.Tensor
	for _, n := range nodes {
		ts, err := r.forward(n, leaves)
		if err != nil {
			return nil, err
		}
		parts = append(parts, ts...)
	}
	return parts, nil
}

// forward runs node n HF -> MCA.
func (r *stepRun) forward(n *Node, leaves []tensor.Tensor) ([]tensor.Tensor, error) {
	if n.Leaf >= 0 {
		return []tensor.Tensor{leaves[n.Leaf]}, nil
	}
	in, err := r.forwardAll(n.Operands, leaves)
	if err != nil {
		return nil, err
	}
	if n.Step == StepCat {
		if n.Sizes != nil {
			for k, t := range in {
				d, err := normDim(n.Dim, len(t.Shape))
				if err != nil {
					return nil, r.errorf(n, "part %d %v: %v", k, t, err)
				}
				if t.Shape[d] != n.Sizes[k] {
					return nil, r.errorf(n, "part %d is %v; want size %d along dim %d", k, t, n.Sizes[k], d)
				}
			}
		}
		t, err := r.concat(n, in)
		if err != nil {
			return nil, r.errorf(n, "%v", err)
		}
		return []tensor.Tensor{t}, nil
	}
	t := in[0]
	switch n.Step {
	case StepSplit, StepChunk:
		d, err := normDim(n.Dim, len(t.Shape))
		if err != nil {
			return nil, r.errorf(n, "%v is %v", t, err)
		}
		sizes, err := r.partSizes(n, t.Shape[d])
		if err != nil {
			return nil, r.errorf(n, "%v: %v", t, err)
		}
		parts, err := r.split(n, t, d, sizes)
		if err != nil {
			return nil, err
		}
		return parts, nil
	case StepReshape:
		if n.From != nil {
			// The inverse reshapes to From: it must be the input's shape.
			f, err := t.Reshape(tensor.Shape(n.From))
			if err != nil || !f.Shape.Equal(t.Shape) {
				return nil, r.errorf(n, "the input is %v, not of the shape %v the step reshapes from", t, tensor.Shape(n.From))
			}
		}
		u, err := t.Reshape(tensor.Shape(n.Shape))
		if err != nil {
			return nil, r.errorf(n, "%v", err)
		}
		return []tensor.Tensor{u}, nil
	case StepTranspose:
		u, err := r.transpose(n, t)
		if err != nil {
			return nil, err
		}
		return []tensor.Tensor{u}, nil
	case StepSlice:
		d, err := normDim(n.Dim, len(t.Shape))
		if err != nil {
			return nil, r.errorf(n, "%v is %v", t, err)
		}
		if n.Stop > t.Shape[d] {
			return nil, r.errorf(n, "%v has %d along dim %d, fewer than the slice's end %d", t, t.Shape[d], d, n.Stop)
		}
		parts, err := r.split(n, t, d, []int64{n.Start, n.Stop - n.Start, t.Shape[d] - n.Stop})
		if err != nil {
			return nil, err
		}
		return parts[1:2], nil
	}
	return nil, r.errorf(n, "unknown step")
}

// maxPieces bounds the byte pieces a split or cat along an inner
// dimension makes (one per index of the outer dimensions, per part): a
// view of more would hold more slice headers than is reasonable (24 bytes
// each), so it is an error rather than an allocation sized by the tensor.
// Real weights stay far below it (the rows of a vocabulary are 10^5).
const maxPieces = 1 << 22

// checkPieces reports a split or cat along dim d of a tensor of shape that
// would cut it into more than maxPieces pieces.
func (r *stepRun) checkPieces(n *Node, shape tensor.Shape, d, k int) error {
	outer := shape[:d].NumElements()
	if outer < 0 || (d > 0 && outer > int64(maxPieces/max(k, 1))) {
		return r.errorf(n, "cutting %v along dim %d makes %d pieces per part, more than %d", shape, d, outer, maxPieces/max(k, 1))
	}
	return nil
}

// split is tensor.Split with the piece bound.
func (r *stepRun) split(n *Node, t tensor.Tensor, d int, sizes []int64) ([]tensor.Tensor, error) {
	if err := r.checkPieces(n, t.Shape, d, len(sizes)); err != nil {
		return nil, err
	}
	parts, err := tensor.Split(t, d, sizes...)
	if err != nil {
		return nil, r.errorf(n, "%v", err)
	}
	return parts, nil
}

// concat is tensor.Concat along n.Dim with the piece bound.
func (r *stepRun) concat(n *Node, ts []tensor.Tensor) (tensor.Tensor, error) {
	if len(ts) > 0 {
		d, err := normDim(n.Dim, len(ts[0].Shape))
		if err != nil {
			return tensor.Tensor{}, r.errorf(n, "%v is %v", ts[0], err)
		}
		if err := r.checkPieces(n, ts[0].Shape, d, len(ts)); err != nil {
			return tensor.Tensor{}, err
		}
	}
	t, err := tensor.Concat(n.Dim, ts...)
	if err != nil {
		return tensor.Tensor{}, r.errorf(n, "%v", err)
	}
	return t, nil
}

// partSizes returns the part sizes of a split or chunk of a dimension of
// size dim.
func (r *stepRun) partSizes(n *Node, dim int64) ([]int64, error) {
	if n.Step == StepSplit {
		var sum int64
		over := false
		for _, s := range n.Sizes {
			if s > (1<<62)-sum {
				over = true // the sum would overflow
			}
			if !over {
				sum += s
			}
		}
		if over {
			return nil, fmt.Errorf("the sizes %v add up to more than 2^62, the dimension is %d", n.Sizes, dim)
		}
		if sum != dim {
			return nil, fmt.Errorf("the sizes add up to %d but the dimension is %d", sum, dim)
		}
		return n.Sizes, nil
	}
	p := int64(n.Parts)
	if dim%p != 0 {
		return nil, fmt.Errorf("the dimension %d does not divide into %d equal parts", dim, p)
	}
	sizes := make([]int64, p)
	for i := range sizes {
		sizes[i] = dim / p
	}
	return sizes, nil
}

// transpose swaps n.Dims of t: a copy into a buffer from Config.Alloc, or
// for shapes only a metadata swap.
func (r *stepRun) transpose(n *Node, t tensor.Tensor) (tensor.Tensor, error) {
	a, err := normDim(n.Dims[0], len(t.Shape))
	if err != nil {
		return tensor.Tensor{}, r.errorf(n, "%v is %v", t, err)
	}
	b, err := normDim(n.Dims[1], len(t.Shape))
	if err != nil {
		return tensor.Tensor{}, r.errorf(n, "%v is %v", t, err)
	}
	if r.shapesOnly {
		s := slices.Clone(t.Shape)
		s[a], s[b] = s[b], s[a]
		u, err := t.Reshape(s)
		if err != nil {
			return tensor.Tensor{}, r.errorf(n, "%v", err)
		}
		return u, nil
	}
	var dst []byte
	if a != b {
		dst = r.alloc(t.Len())
		lo, hi := min(a, b), max(a, b)
		matrices := t.Shape[lo+1:hi].NumElements() == 1 && t.Shape[hi+1:].NumElements() == 1
		if !t.Contiguous() && !matrices {
			// tensor.Transpose would gather the pieces into fresh heap
			// memory; gather them into a buffer from Config.Alloc.
			g := r.alloc(t.Len())
			u, err := tensor.New(t.DType, t.Shape, t.AppendTo(g[:0]))
			if err != nil {
				return tensor.Tensor{}, r.errorf(n, "%v", err)
			}
			t = u
		}
	}
	u, err := tensor.Transpose(t, a, b, dst)
	if err != nil {
		return tensor.Tensor{}, r.errorf(n, "%v", err)
	}
	return u, nil
}

// normDim resolves a possibly negative dimension of a rank-dimensional
// tensor.
func normDim(dim, rank int) (int, error) {
	d := dim
	if d < 0 {
		d += rank
	}
	if d < 0 || d >= rank {
		return 0, fmt.Errorf("a %d-d tensor, without dim %d", rank, dim)
	}
	return d, nil
}

// inverseAll runs the nodes MCA -> HF: parts are the catalog op's HF-side
// results, in the order the nodes yield them; the result holds the numHF
// HF tensors.
func (r *stepRun) inverseAll(nodes []*Node, parts []tensor.Tensor, numHF int) ([]tensor.Tensor, error) {
	want := 0
	for _, n := range nodes {
		want += n.yields()
	}
	if len(parts) != want {
		return nil, fmt.Errorf("ops: tensor steps: got %d parts, the steps yield %d", len(parts), want)
	}
	leaves := make([]tensor.Tensor, numHF)
	set := make([]bool, numHF)
	for _, n := range nodes {
		k := n.yields()
		if err := r.inverse(n, parts[:k], leaves, set); err != nil {
			return nil, err
		}
		parts = parts[k:]
	}
	for i, ok := range set {
		if !ok {
			return nil, fmt.Errorf("ops: tensor steps: no step reads %s", r.leafName(i))
		}
	}
	return leaves, nil
}

// inverse undoes node n: parts are the tensors n yielded. A part whose
// forward shape the steps determine is first viewed in that shape (the
// catalog op's inverse returns its own canonical shapes, with the same
// elements).
func (r *stepRun) inverse(n *Node, parts []tensor.Tensor, leaves []tensor.Tensor, set []bool) error {
	for k, t := range parts {
		if s := fullShape(n, k); s != nil && !t.Shape.Equal(s) {
			u, err := t.Reshape(s)
			if err != nil {
				return r.errorf(n, "part %d is %v; the steps give it shape %v: %v", k, t, tensor.Shape(s), err)
			}
			parts[k] = u
		}
	}
	if n.Leaf >= 0 {
		t := parts[0]
		if set[n.Leaf] {
			// A tensor read twice must come back the same both times.
			prev := leaves[n.Leaf]
			if prev.DType != t.DType || !prev.Shape.Equal(t.Shape) || (!r.shapesOnly && !prev.Equal(t)) {
				return fmt.Errorf("ops: tensor steps: %s is read twice and the two copies differ (%v, %v)", r.leafName(n.Leaf), prev, t)
			}
			return nil
		}
		leaves[n.Leaf], set[n.Leaf] = t, true
		return nil
	}
	var in tensor.Tensor // the tensor the step read (all steps but cat)
	switch n.Step {
	case StepSplit, StepChunk:
		if n.Step == StepSplit {
			d, err := normDim(n.Dim, len(parts[0].Shape))
			if err != nil {
				return r.errorf(n, "inverse: %v is %v", parts[0], err)
			}
			for k, t := range parts {
				if len(t.Shape) != len(parts[0].Shape) || t.Shape[d] != n.Sizes[k] {
					return r.errorf(n, "inverse: part %d is %v; want size %d along dim %d", k, t, n.Sizes[k], d)
				}
			}
		}
		t, err := r.concat(n, parts)
		if err != nil {
			return err
		}
		if n.Step == StepChunk {
			d, _ := normDim(n.Dim, len(t.Shape))
			for k, p := range parts {
				if p.Shape[d]*int64(n.Parts) != t.Shape[d] {
					return r.errorf(n, "inverse: part %d is %v; the %d parts must be equal along dim %d", k, p, n.Parts, d)
				}
			}
		}
		in = t
	case StepCat:
		t := parts[0]
		d, err := normDim(n.Dim, len(t.Shape))
		if err != nil {
			return r.errorf(n, "inverse: %v is %v", t, err)
		}
		sizes, err := r.catSizes(n, d, len(t.Shape), t.Shape[d])
		if err != nil {
			return err
		}
		split, err := r.split(n, t, d, sizes)
		if err != nil {
			return err
		}
		for _, o := range n.Operands {
			k := o.yields()
			if err := r.inverse(o, split[:k], leaves, set); err != nil {
				return err
			}
			split = split[k:]
		}
		return nil
	case StepReshape:
		t := parts[0]
		s := fullShape(n.Operands[0], 0)
		if s == nil {
			s = n.From
		}
		if s == nil {
			return r.errorf(n, "inverse: the shape of the step's input is not determined by the step sizes (an HF tensor of unknown shape; give the reshape the shape it reshapes from), so %v cannot be reshaped back", t)
		}
		u, err := t.Reshape(s)
		if err != nil {
			return r.errorf(n, "inverse: %v", err)
		}
		in = u
	case StepTranspose:
		u, err := r.transpose(n, parts[0])
		if err != nil {
			return err
		}
		in = u
	case StepSlice:
		return r.errorf(n, "a slice drops elements and has no inverse: the op converts HF -> MCA only")
	default:
		return r.errorf(n, "unknown step")
	}
	return r.inverse(n.Operands[0], []tensor.Tensor{in}, leaves, set)
}

// catSizes returns the sizes along dim d of the parts a cat read, for its
// inverse: the cat's own Sizes, else the sizes its operands' steps
// determine. Sizes the steps leave open (they come from an HF tensor) may
// all be one unknown size, taken m times (the parts of one split along
// another dim): it is then (total - known) / m.
func (r *stepRun) catSizes(n *Node, d, rank int, total int64) ([]int64, error) {
	if n.Sizes != nil {
		return n.Sizes, nil
	}
	var sizes []int64
	var open []int
	var sym string
	var known int64
	for _, o := range n.Operands {
		for k := range o.yields() {
			s := sizeAlong(o, k, d, rank)
			if s.sym != "" {
				if sym != "" && s.sym != sym {
					return nil, r.errorf(n, "inverse: the sizes of the concatenated parts along dim %d are not determined by the step sizes (give the cat its operand sizes)", d)
				}
				sym = s.sym
				open = append(open, len(sizes))
			} else {
				if s.n > total-known {
					return nil, r.errorf(n, "inverse: the parts' sizes along dim %d add up to more than %d", d, total)
				}
				known += s.n
			}
			sizes = append(sizes, s.n)
		}
	}
	if len(open) > 0 {
		rest := total - known
		if rest < 0 || rest%int64(len(open)) != 0 {
			return nil, r.errorf(n, "inverse: %d along dim %d does not hold the parts of known sizes %v", total, d, sizes)
		}
		for _, i := range open {
			sizes[i] = rest / int64(len(open))
		}
	}
	return sizes, nil
}

// size is a size the step sizes determine (sym empty), or an unknown size
// named sym: two unknowns with the same name are equal.
type size struct {
	n   int64
	sym string
}

// sizeAlong returns the size along dim d (of a rank-dimensional tensor)
// of part k of node n.
func sizeAlong(n *Node, k, d, rank int) size {
	if s := fullShape(n, k); s != nil {
		if len(s) != rank {
			return size{sym: fmt.Sprintf("%p", n)}
		}
		return size{n: s[d]}
	}
	if n.Leaf >= 0 {
		return size{sym: fmt.Sprintf("leaf %d dim %d", n.Leaf, d)}
	}
	unknown := size{sym: fmt.Sprintf("%p/%d/%d", n, k, d)}
	dim := func(x int) (int, bool) {
		v, err := normDim(x, rank)
		return v, err == nil
	}
	switch n.Step {
	case StepSplit:
		if x, ok := dim(n.Dim); ok && x == d {
			return size{n: n.Sizes[k]}
		}
		return sizeAlong(n.Operands[0], 0, d, rank)
	case StepChunk:
		s := sizeAlong(n.Operands[0], 0, d, rank)
		if x, ok := dim(n.Dim); ok && x == d {
			if s.sym != "" {
				return size{sym: s.sym + fmt.Sprintf("/%d", n.Parts)}
			}
			if s.n%int64(n.Parts) != 0 {
				return unknown
			}
			return size{n: s.n / int64(n.Parts)}
		}
		return s
	case StepSlice:
		if x, ok := dim(n.Dim); ok && x == d {
			return size{n: n.Stop - n.Start}
		}
		return sizeAlong(n.Operands[0], 0, d, rank)
	case StepTranspose:
		a, ok1 := dim(n.Dims[0])
		b, ok2 := dim(n.Dims[1])
		if !ok1 || !ok2 {
			return unknown
		}
		switch d {
		case a:
			d = b
		case b:
			d = a
		}
		return sizeAlong(n.Operands[0], 0, d, rank)
	case StepReshape:
		if d < len(n.Shape) && len(n.Shape) == rank && n.Shape[d] >= 0 {
			return size{n: n.Shape[d]}
		}
		return unknown
	case StepCat:
		x, ok := dim(n.Dim)
		if !ok {
			return unknown
		}
		if x != d {
			return sizeAlong(n.Operands[0], 0, d, rank)
		}
		var sum int64
		for _, o := range n.Operands {
			for j := range o.yields() {
				s := sizeAlong(o, j, d, rank)
				if s.sym != "" {
					return unknown
				}
				sum += s.n
			}
		}
		return size{n: sum}
	}
	return unknown
}

// fullShape returns the shape of part k of node n as the step sizes alone
// determine it, or nil when it depends on an HF tensor's shape.
func fullShape(n *Node, k int) []int64 {
	if n.Leaf >= 0 {
		return nil
	}
	if n.Step == StepReshape {
		infer := -1
		for i, x := range n.Shape {
			if x < 0 {
				infer = i
			}
		}
		if infer < 0 {
			return slices.Clone(n.Shape)
		}
		in := fullShape(n.Operands[0], 0)
		if in == nil {
			return nil
		}
		total := tensor.Shape(in).NumElements()
		if total < 0 {
			return nil
		}
		known := int64(1)
		for i, x := range n.Shape {
			if i != infer {
				if x < 0 || (x != 0 && known > (1<<62)/x) {
					return nil
				}
				known *= x
			}
		}
		if known <= 0 || total%known != 0 {
			return nil
		}
		s := slices.Clone(n.Shape)
		s[infer] = total / known
		return s
	}
	if n.Step == StepCat {
		var out []int64
		for _, o := range n.Operands {
			for j := range o.yields() {
				s := fullShape(o, j)
				if s == nil {
					return nil
				}
				if out == nil {
					out = slices.Clone(s)
					continue
				}
				d, err := normDim(n.Dim, len(out))
				if err != nil || len(s) != len(out) {
					return nil
				}
				out[d] += s[d]
			}
		}
		return out
	}
	in := fullShape(n.Operands[0], 0)
	if in == nil {
		return nil
	}
	switch n.Step {
	case StepSplit, StepChunk, StepSlice:
		d, err := normDim(n.Dim, len(in))
		if err != nil {
			return nil
		}
		switch n.Step {
		case StepSplit:
			in[d] = n.Sizes[k]
		case StepChunk:
			if in[d]%int64(n.Parts) != 0 {
				return nil
			}
			in[d] /= int64(n.Parts)
		case StepSlice:
			in[d] = n.Stop - n.Start
		}
		return in
	case StepTranspose:
		a, err1 := normDim(n.Dims[0], len(in))
		b, err2 := normDim(n.Dims[1], len(in))
		if err1 != nil || err2 != nil {
			return nil
		}
		in[a], in[b] = in[b], in[a]
		return in
	}
	return nil
}
