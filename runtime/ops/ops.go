// Package ops implements ROLL's weight conversion operators (ConverOps) on
// host tensors, in both directions: HF → MCA and MCA → HF.
//
// Every op is registered under a kind name ([Kinds]) and applied through
// [Op.Apply]: the inputs are the tensors of the op's source names in
// declared order (HF names for [HFToMCA], MCA names for [MCAToHF]) and the
// results are the tensors of its target names in declared order. Where ROLL
// returns a StackedTensors, the result is a [Value] holding a
// [tensor.Stacked].
//
// # Zero copy
//
// The ops that only reorder rows (rename, copy, stack, concat, qkv,
// qkv_bias, gated_qkv, the GDN splits and joins, the expert splits without
// transpose) return views: their results are piece lists pointing into the
// input bytes, so a writer can stream them to disk straight from an mmap'd
// file (formats.md §5). Only the expert splits with transpose and the
// zero-centred RMSNorm (±1 arithmetic) produce new bytes, obtained from
// [Config.Alloc] when it is set.
//
// The semantics follow roll-converter-spec.md §2; each op's doc comment
// gives the formula.
//
// # Composed ops
//
// An op the catalog lacks is a [Composite]: primitive tensor steps
// ([Node]: split, chunk, cat, reshape, transpose, slice) build the HF
// inputs of a catalog op from the op's HF tensors (a fused qkv_proj split
// into q, k and v for qkv), and run inverted after the catalog op's
// inverse. The steps are views like the ops above; only a transpose
// copies, into [Config.Alloc]. [RunSteps] runs step programs alone.
package ops

import (
	"fmt"
	"slices"
	"strings"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// Direction is the direction of a conversion.
type Direction uint8

// The two directions.
const (
	HFToMCA Direction = iota // Hugging Face layout to Megatron-Core (mcore_adapter) layout
	MCAToHF                  // the reverse
)

// String returns "hf->mca" or "mca->hf".
func (d Direction) String() string {
	switch d {
	case HFToMCA:
		return "hf->mca"
	case MCAToHF:
		return "mca->hf"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// The op kind names.
const (
	KindRename              = "rename"
	KindCopy                = "copy"
	KindConcat              = "concat"
	KindStack               = "stack"
	KindDrop                = "drop"
	KindQKV                 = "qkv"
	KindQKVBias             = "qkv_bias"
	KindGatedQKV            = "gated_qkv"
	KindZeroCenteredRMSNorm = "zero_centered_rmsnorm"
	KindGDNConv1d           = "gdn_conv1d"
	KindNextGDN             = "next_gdn"
	KindQwen3_5GDN          = "qwen3_5_gdn"
	KindSplitExperts        = "split_experts"
	KindSplitStackExperts   = "split_stack_experts"
)

// A Value is an op input or result: a plain tensor, or (when Stacked is not
// nil) ROLL's StackedTensors.
type Value struct {
	Tensor  tensor.Tensor
	Stacked *tensor.Stacked
}

// TensorValue wraps a plain tensor.
func TensorValue(t tensor.Tensor) Value { return Value{Tensor: t} }

// StackedValue wraps a stacked tensor.
func StackedValue(s tensor.Stacked) Value { return Value{Stacked: &s} }

// IsStacked reports whether v holds a stacked tensor.
func (v Value) IsStacked() bool { return v.Stacked != nil }

// Flatten returns the logical tensor of v: v.Tensor, or the concatenation
// of the stacked components (a view, see [tensor.Stacked.Concat]).
func (v Value) Flatten() (tensor.Tensor, error) {
	if v.Stacked != nil {
		return v.Stacked.Concat()
	}
	return v.Tensor, nil
}

// String describes v without its data.
func (v Value) String() string {
	if v.Stacked != nil {
		return v.Stacked.String()
	}
	return v.Tensor.String()
}

// Config holds the model configuration values the ops read (MCA config
// names in comments). Zero means "not set"; an op that needs a value that is
// not set returns an error, except that the hidden size of qkv-like ops is
// inferred from the tensors when neither the op nor the config sets it.
type Config struct {
	HiddenSize          int64 // hidden_size (H)
	NumAttentionHeads   int64 // num_attention_heads (nh)
	NumQueryGroups      int64 // num_query_groups (ng)
	KVChannels          int64 // kv_channels (d)
	LinearNumKeyHeads   int64 // linear_num_key_heads (nk)
	LinearNumValueHeads int64 // linear_num_value_heads (nv)
	LinearKeyHeadDim    int64 // linear_key_head_dim (dk)
	LinearValueHeadDim  int64 // linear_value_head_dim (dv)
	NumMoEExperts       int64 // num_moe_experts (E)

	// Alloc, if set, returns a buffer of n bytes for an op that produces
	// new bytes (transposes, the zero-centred norm), for example a slice of
	// a pre-faulted staging area. Its contents may be garbage; the op
	// overwrites all n bytes. Nil means make([]byte, n).
	Alloc func(n int) []byte
}

// An Op is one declared conversion: its kind, the number of names it
// declares on each side, and its parameters.
type Op struct {
	Kind string

	// NumHF and NumMCA are the numbers of declared HF and MCA names. They
	// decide how many results copy, concat and stack produce, and must be
	// set for those kinds. Zero for both means the kind's fixed arity
	// (3 : 1 for qkv, …). For the expert splits NumMCA is ignored: ROLL
	// expands the single MCA name to one per expert (Config.NumMoEExperts).
	NumHF, NumMCA int

	// Dim is the dimension of stack and concat (default 0).
	Dim int

	// Transpose selects the expert split with transposes (qwen3_vl_moe)
	// instead of the plain one (qwen3_5_moe).
	Transpose bool

	// HiddenSize is the op's own hidden_size for qkv and gated_qkv; ROLL's
	// LoRA variants set it to the LoRA rank. Zero means Config.HiddenSize.
	HiddenSize int64
}

// A Func converts in one direction.
type Func func(op Op, cfg Config, in []Value) ([]Value, error)

// An Impl is the implementation of one op kind.
type Impl struct {
	Kind    string
	HFToMCA Func
	MCAToHF Func

	// HF and MCA are the fixed numbers of names on each side, or 0 when
	// the number is free (copy, concat, stack, drop; the MCA side of the
	// expert splits).
	HF, MCA int
}

var registry = map[string]*Impl{}

func register(impl *Impl) { registry[impl.Kind] = impl }

// Lookup returns the implementation of kind.
func Lookup(kind string) (Impl, bool) {
	impl, ok := registry[kind]
	if !ok {
		return Impl{}, false
	}
	return *impl, true
}

// Kinds returns the registered kind names, sorted.
func Kinds() []string {
	names := make([]string, 0, len(registry))
	for k := range registry {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// An Error is an error of one op application; it names the op kind and the
// direction.
type Error struct {
	Kind string
	Dir  Direction
	Msg  string
}

func (e *Error) Error() string { return "ops: " + e.Kind + " " + e.Dir.String() + ": " + e.Msg }

// Arity returns the numbers of HF and MCA names op declares, with the
// kind's fixed arity filled in, after checking them against the kind's
// rule (roll-converter-spec.md §2.3).
func (op Op) Arity() (nhf, nmca int, err error) {
	impl, ok := registry[op.Kind]
	if !ok {
		return 0, 0, fmt.Errorf("ops: unknown op kind %q", op.Kind)
	}
	nhf, nmca = op.NumHF, op.NumMCA
	bad := func(rule string) error {
		return fmt.Errorf("ops: %s declares %d HF and %d MCA names; %s", op.Kind, nhf, nmca, rule)
	}
	if nhf < 0 || nmca < 0 {
		return 0, 0, bad("counts cannot be negative")
	}
	switch op.Kind {
	case KindCopy, KindConcat, KindStack:
		if (nhf == 1) == (nmca == 1) || nhf == 0 || nmca == 0 {
			return 0, 0, bad("exactly one side must have one name and the other at least one")
		}
		return nhf, nmca, nil
	case KindDrop:
		return nhf, nmca, nil
	case KindSplitExperts, KindSplitStackExperts:
		if nhf == 0 {
			nhf = 1
		}
		if nhf != 1 {
			return 0, 0, bad("it takes one fused HF tensor")
		}
		return nhf, nmca, nil
	}
	if nhf == 0 && nmca == 0 {
		return impl.HF, impl.MCA, nil
	}
	if nhf != impl.HF || nmca != impl.MCA {
		return 0, 0, bad(fmt.Sprintf("want %d and %d", impl.HF, impl.MCA))
	}
	return nhf, nmca, nil
}

// Apply runs op in direction dir on the source tensors in, in declared
// order, and returns the target tensors in declared order. It never panics: bad
// shapes, bad configuration and internal failures are errors that name the
// op and the sizes that disagree.
func (op Op) Apply(dir Direction, cfg Config, in []Value) ([]Value, error) {
	impl, ok := registry[op.Kind]
	if !ok {
		return nil, fmt.Errorf("ops: unknown op kind %q", op.Kind)
	}
	switch dir {
	case HFToMCA:
		return impl.HFToMCA(op, cfg, in)
	case MCAToHF:
		return impl.MCAToHF(op, cfg, in)
	}
	return nil, fmt.Errorf("ops: %s: invalid direction %v", op.Kind, dir)
}

// call carries one application of an op, for the helpers below.
type call struct {
	op  Op
	dir Direction
	cfg Config
	in  []Value
}

func (c *call) errorf(format string, args ...any) error {
	return &Error{Kind: c.op.Kind, Dir: c.dir, Msg: fmt.Sprintf(format, args...)}
}

// wantInputs checks the number of inputs; names are used in the message.
func (c *call) wantInputs(names ...string) error {
	if len(c.in) != len(names) {
		return c.errorf("got %d inputs, want %d (%s)", len(c.in), len(names), joinNames(names))
	}
	return nil
}

func joinNames(names []string) string { return strings.Join(names, ", ") }

// plain returns input i as a plain, valid tensor.
func (c *call) plain(i int, name string) (tensor.Tensor, error) {
	v := c.in[i]
	if v.Stacked != nil {
		return tensor.Tensor{}, c.errorf("%s is a stacked tensor %v; want a plain tensor", name, v)
	}
	if err := v.Tensor.Validate(); err != nil {
		return tensor.Tensor{}, c.errorf("%s: %v", name, err)
	}
	return v.Tensor, nil
}

// stacked returns input i as a stacked tensor of n components.
func (c *call) stacked(i int, name string, comps ...string) (tensor.Stacked, error) {
	v := c.in[i]
	if v.Stacked == nil {
		return tensor.Stacked{}, c.errorf("%s is a plain tensor %v; want a stacked tensor of %d components (%s)",
			name, v.Tensor, len(comps), joinNames(comps))
	}
	s := *v.Stacked
	if len(s.Components) != len(comps) {
		return tensor.Stacked{}, c.errorf("%s is %v; want %d components (%s)", name, s, len(comps), joinNames(comps))
	}
	for k, t := range s.Components {
		if err := t.Validate(); err != nil {
			return tensor.Stacked{}, c.errorf("%s component %s: %v", name, comps[k], err)
		}
	}
	return s, nil
}

// sameDType checks that all tensors have the dtype of the first.
func (c *call) sameDType(names []string, ts ...tensor.Tensor) error {
	for i := 1; i < len(ts); i++ {
		if ts[i].DType != ts[0].DType {
			return c.errorf("%s is %v but %s is %v", names[i], ts[i].DType, names[0], ts[0].DType)
		}
	}
	return nil
}

// counts returns the numbers of source and target names of the call.
func (c *call) counts() (src, dst int) {
	nhf, nmca, _ := c.op.Arity() // checked by Apply
	if c.dir == HFToMCA {
		return nhf, nmca
	}
	return nmca, nhf
}

// need returns the config value v named name, or an error if it is not
// positive.
func (c *call) need(name string, v int64) (int64, error) {
	if v <= 0 {
		return 0, c.errorf("config value %s must be positive, got %d", name, v)
	}
	return v, nil
}

// hidden returns the hidden size for qkv-like ops: the op's own, else the
// config's, else 0 (infer from the tensors).
func (c *call) hidden() int64 {
	if c.op.HiddenSize > 0 {
		return c.op.HiddenSize
	}
	return max(c.cfg.HiddenSize, 0)
}

// alloc returns a buffer of n bytes from Config.Alloc or make.
func (c *call) alloc(n int64) ([]byte, error) {
	if c.cfg.Alloc == nil {
		return make([]byte, n), nil
	}
	b := c.cfg.Alloc(int(n))
	if int64(len(b)) < n {
		return nil, c.errorf("Config.Alloc returned %d bytes, want %d", len(b), n)
	}
	return b[:n], nil
}

// mul multiplies non-negative sizes, failing on overflow.
func (c *call) mul(xs ...int64) (int64, error) {
	p := int64(1)
	for _, x := range xs {
		if x < 0 || (x != 0 && p > (1<<62)/x) {
			return 0, c.errorf("size product %v overflows", xs)
		}
		p *= x
	}
	return p, nil
}

func values(ts ...tensor.Tensor) []Value {
	out := make([]Value, len(ts))
	for i, t := range ts {
		out[i] = Value{Tensor: t}
	}
	return out
}

// both builds an Impl from the two direction functions. The Funcs it makes
// check the arity and turn panics into errors, so they are safe to call
// directly as well as through [Op.Apply].
func both(kind string, hf, mca int, fwd, rev func(c *call) ([]Value, error)) *Impl {
	mk := func(dir Direction, f func(c *call) ([]Value, error)) Func {
		return func(op Op, cfg Config, in []Value) (out []Value, err error) {
			defer func() {
				if r := recover(); r != nil {
					out, err = nil, &Error{Kind: op.Kind, Dir: dir, Msg: fmt.Sprintf("internal error: %v", r)}
				}
			}()
			if op.Kind != kind {
				return nil, fmt.Errorf("ops: %s implementation called for op kind %q", kind, op.Kind)
			}
			if _, _, err := op.Arity(); err != nil {
				return nil, err
			}
			c := &call{op: op, dir: dir, cfg: cfg, in: in}
			out, err = f(c)
			if err != nil {
				return nil, err
			}
			if _, dst := c.counts(); kind != KindDrop && !isExpertSplit(kind) && len(out) != dst {
				return nil, c.errorf("internal error: %d results for %d target names", len(out), dst)
			}
			return out, nil
		}
	}
	return &Impl{Kind: kind, HF: hf, MCA: mca, HFToMCA: mk(HFToMCA, fwd), MCAToHF: mk(MCAToHF, rev)}
}

func isExpertSplit(kind string) bool {
	return kind == KindSplitExperts || kind == KindSplitStackExperts
}
