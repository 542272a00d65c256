package pyemit

// Ops built from tensor steps (ir.Op.Inputs, spec §7) are emitted as
// generated ConverOp subclasses of the catalog op's ROLL class:
// _hf_to_mca runs the steps on the HF weights, then the base op on the
// parts; _mca_to_hf runs the base op, then the inverse steps back to the
// HF weights. ROLL's converter runs them unchanged: hf_names are the HF
// weights the steps read (what ROLL looks up and gathers), and while the
// base class works (its __post_init__ checks, its _mca_to_hf) it is shown
// one HF name per part (the support module's hf_parts).

import (
	"fmt"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
)

// stepClass is the generated class of one op with tensor steps.
type stepClass struct {
	Name string
	Base string
	Op   *ir.Op
}

// stepClasses returns the generated classes of t's ops with tensor steps,
// in op order, named after their base class.
func stepClasses(t *ir.Template) []stepClass {
	var out []stepClass
	for _, op := range t.Ops {
		if len(op.Inputs) == 0 {
			continue
		}
		base := opClasses[op.Kind]
		if m, ok := modelOpOf(op); ok {
			base = m.Name
		}
		out = append(out, stepClass{Name: fmt.Sprintf("%sSteps%d", base, len(out)+1), Base: base, Op: op})
	}
	return out
}

// usesSteps reports whether any template of p has an op with tensor steps.
func usesSteps(p *ir.Program) bool {
	for _, t := range p.Templates {
		if len(stepClasses(t)) > 0 {
			return true
		}
	}
	return false
}

// stepProblem returns why op's steps cannot be emitted, or "".
func stepProblem(op *ir.Op) string {
	var walk func(x *ir.TensorExpr) string
	walk = func(x *ir.TensorExpr) string {
		for _, o := range x.Operands {
			if p := walk(o); p != "" {
				return p
			}
		}
		switch x.Step {
		case "cat":
			if x.Args["sizes"] == nil {
				return fmt.Sprintf("cat at %s has no sizes to invert", x.Span.Start)
			}
		case "reshape":
			if x.Args["from"] == nil {
				return fmt.Sprintf("reshape at %s has no input shape to invert", x.Span.Start)
			}
		case "", "split", "chunk", "transpose", "slice":
		default:
			return fmt.Sprintf("unknown tensor step %q", x.Step)
		}
		return ""
	}
	for _, in := range op.Inputs {
		if p := walk(in); p != "" {
			return p
		}
	}
	return ""
}

// pySize prints a size expression as Python (ir.Expr.Python) over the
// local `mca`, the op's MCA config.
func pySize(e *ir.Expr) string { return e.Python(ir.PyNames{MCA: "mca"}) }

// pyNode is pySize as a node, so that a long list of sizes wraps.
func pyNode(e *ir.Expr) node {
	if e.Kind == ir.ExprList {
		items := make([]node, len(e.Args))
		for i, a := range e.Args {
			items[i] = atom(pySize(a))
		}
		return list(items...)
	}
	return atom(pySize(e))
}

// stepCode writes Python statements at one indentation.
type stepCode struct {
	b      strings.Builder
	indent int
	n      int
}

func (g *stepCode) line(format string, args ...any) {
	fmt.Fprintf(&g.b, "%s%s\n", strings.Repeat(" ", g.indent), fmt.Sprintf(format, args...))
}

func (g *stepCode) assign(val node) string {
	g.n++
	v := fmt.Sprintf("t%d", g.n)
	g.line("%s", render(assign(v, val), g.indent))
	return v
}

// operand is what forward returns: a tensor expression, or a variable
// holding a list of tensors.
type operand struct {
	expr string
	list bool
}

func (o operand) items() string {
	if o.list {
		return "*" + o.expr
	}
	return o.expr
}

// forward writes the HF -> MCA statements of x.
func (g *stepCode) forward(x *ir.TensorExpr) operand {
	if x.Leaf() {
		return operand{expr: fmt.Sprintf("weights[%d]", x.HF)}
	}
	var in []operand
	for _, o := range x.Operands {
		in = append(in, g.forward(o))
	}
	dim := func() node { return arg("dim", atom(pySize(x.Args["dim"]))) }
	switch x.Step {
	case "split":
		return operand{expr: g.assign(call("list", call("torch.split", atom(in[0].expr), pyNode(x.Args["sizes"]), dim()))), list: true}
	case "chunk":
		return operand{expr: g.assign(call("chunk", atom(in[0].expr), atom(pySize(x.Args["parts"])), dim())), list: true}
	case "cat":
		var items []node
		for _, o := range in {
			items = append(items, atom(o.items()))
		}
		return operand{expr: g.assign(call("torch.cat", list(items...), dim()))}
	case "reshape":
		return operand{expr: g.assign(call(in[0].expr+".reshape", pyNode(x.Args["shape"])))}
	case "transpose":
		return operand{expr: g.assign(atom(in[0].expr + ".transpose(" + pySize(x.Args["dims"].Args[0]) + ", " + pySize(x.Args["dims"].Args[1]) + ").contiguous()"))}
	case "slice":
		start, stop := x.Args["start"], x.Args["stop"]
		length := &ir.Expr{Kind: ir.ExprBinary, Op: "-", Args: []*ir.Expr{stop, start}}
		return operand{expr: g.assign(call(in[0].expr+".narrow", atom(pySize(x.Args["dim"])), atom(pySize(start)), atom(pySize(length))))}
	}
	return operand{expr: "None"}
}

// inverse writes the MCA -> HF statements of x, given the expressions of
// the parts it yields, and sets hf[i] for the leaves.
func (g *stepCode) inverse(x *ir.TensorExpr, parts []string, hf []string) {
	if x.Leaf() {
		hf[x.HF] = parts[0]
		return
	}
	dim := func() node { return arg("dim", atom(pySize(x.Args["dim"]))) }
	switch x.Step {
	case "split", "chunk":
		var items []node
		for _, p := range parts {
			items = append(items, atom(p))
		}
		g.inverse(x.Operands[0], []string{g.assign(call("torch.cat", list(items...), dim()))}, hf)
	case "cat":
		v := g.assign(call("list", call("torch.split", atom(parts[0]), pyNode(x.Args["sizes"]), dim())))
		k := 0
		for _, o := range x.Operands {
			var mine []string
			for range o.Parts() {
				mine = append(mine, fmt.Sprintf("%s[%d]", v, k))
				k++
			}
			g.inverse(o, mine, hf)
		}
	case "reshape":
		g.inverse(x.Operands[0], []string{g.assign(call(parts[0]+".reshape", pyNode(x.Args["from"])))}, hf)
	case "transpose":
		g.inverse(x.Operands[0], []string{g.assign(atom(parts[0] + ".transpose(" + pySize(x.Args["dims"].Args[0]) + ", " + pySize(x.Args["dims"].Args[1]) + ").contiguous()"))}, hf)
	case "slice":
		g.line("raise ValueError(%q)", fmt.Sprintf("slice at %s drops data: the weight cannot be converted back to HF", x.Span.Start))
		for i := range hf {
			if hf[i] == "" {
				hf[i] = "None"
			}
		}
	}
}

// emitStepClass writes the class of one op with tensor steps.
func emitStepClass(b *strings.Builder, c stepClass, source string) {
	op := c.Op
	parts := ir.InputParts(op.Inputs)
	fmt.Fprintf(b, "class %s(%s):\n", c.Name, c.Base)
	fmt.Fprintf(b, "    %q\n\n", fmt.Sprintf("%s whose HF weights pass through tensor steps (%s:%d).", op.Kind, source, op.Span.Start.Line))
	b.WriteString("    def __post_init__(self):\n")
	fmt.Fprintf(b, "        with hf_parts(self, %d):\n", parts)
	b.WriteString("            super().__post_init__()\n\n")

	fw := &stepCode{indent: 8}
	fw.line("mca = self.mca_config  # noqa: F841")
	var items []string
	for _, in := range op.Inputs {
		items = append(items, fw.forward(in).items())
	}
	fw.line("with hf_parts(self, %d):", parts)
	fw.line("    return super()._hf_to_mca([%s])", strings.Join(items, ", "))
	b.WriteString("    def _hf_to_mca(self, weights):\n")
	b.WriteString(fw.b.String())
	b.WriteString("\n")

	bw := &stepCode{indent: 8}
	bw.line("mca = self.mca_config  # noqa: F841")
	bw.line("with hf_parts(self, %d):", parts)
	bw.line("    parts = as_list(super()._mca_to_hf(weights))")
	hf := make([]string, len(op.HF))
	k := 0
	for _, in := range op.Inputs {
		var mine []string
		for range in.Parts() {
			mine = append(mine, fmt.Sprintf("parts[%d]", k))
			k++
		}
		bw.inverse(in, mine, hf)
	}
	bw.line("%s", render(assign("hf", list(atomsOf(hf)...)), bw.indent))
	bw.line("return hf")
	b.WriteString("    def _mca_to_hf(self, weights):\n")
	b.WriteString(bw.b.String())
}

func atomsOf(ss []string) []node {
	out := make([]node, len(ss))
	for i, s := range ss {
		out[i] = atom(s)
	}
	return out
}

// supportSteps is the support module's code for ops with tensor steps.
const supportSteps = `

@contextmanager
def hf_parts(op, n):
    """Show op's base class n HF names, one per tensor its steps yield.

    An op with tensor steps lists the HF weights the steps read as its
    hf_names (what the template looks up and gathers); its base class
    (QKVConverOp, StackConverOp, ...) counts its inputs by hf_names.
    """
    names = op.hf_names
    op.hf_names = ["<part %d>" % i for i in range(n)]
    try:
        yield
    finally:
        op.hf_names = [names] if isinstance(names, str) else names


def as_list(weights):
    """The tensors a ConverOp returned, as a list."""
    if isinstance(weights, (torch.Tensor, StackedTensors)):
        return [weights]
    return list(weights)


def chunk(tensor, parts, dim=0):
    """tensor split into parts equal parts along dim; the size must divide."""
    size = tensor.shape[dim]
    if size % parts != 0:
        raise ValueError(f"chunk: size {size} along dim {dim} does not divide into {parts} parts")
    return list(torch.split(tensor, size // parts, dim=dim))
`
