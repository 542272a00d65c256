package ir

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestNameResolve: a build-flag condition is evaluated with the flags; a
// per-layer condition takes its outcome from its CondKey (Else by
// default) in Resolve and is evaluated in ResolveIn; a computed name
// evaluates with the flags.
func TestNameResolve(t *testing.T) {
	flag := &Expr{Kind: ExprRef, Name: "megatron_llama"}
	layerTypes := &Expr{Kind: ExprField, Name: "layer_types", Args: []*Expr{{Kind: ExprRef, Name: "mca"}}}
	perLayer := &Expr{Kind: ExprBinary, Op: "==", Args: []*Expr{
		{Kind: ExprIndex, Args: []*Expr{layerTypes, {Kind: ExprRef, Name: "layer"}}},
		{Kind: ExprLit, Lit: StringValue("linear")},
	}}
	leaf := func(s string) *Name { return &Name{Value: s} }
	byFlag := Name{Cond: flag, Then: leaf("a"), Else: leaf("b")}
	byLayer := Name{Cond: perLayer, Then: leaf("x"), Else: &Name{Cond: flag, Then: leaf("y"), Else: leaf("z")}}
	computed := Name{Computed: &Expr{Kind: ExprBinary, Op: "+", Args: []*Expr{
		{Kind: ExprLit, Lit: StringValue("p")},
		{Kind: ExprCond, Args: []*Expr{{Kind: ExprLit, Lit: StringValue("1")}, flag, {Kind: ExprLit, Lit: StringValue("2")}}},
	}}}
	on := map[string]bool{"megatron_llama": true}
	got := []string{
		byFlag.Resolve(nil), byFlag.Resolve(on),
		byLayer.Resolve(nil), byLayer.Resolve(on), byLayer.Resolve(map[string]bool{CondKey(perLayer): true}),
		computed.Resolve(nil), computed.Resolve(on),
	}
	want := []string{"b", "a", "z", "y", "x", "p2", "p1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Resolve (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*Expr{perLayer}, byLayer.LayerConds()); diff != "" {
		t.Errorf("LayerConds (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"megatron_llama"}, byLayer.Flags()); diff != "" {
		t.Errorf("Flags (-want +got):\n%s", diff)
	}
	env := MapEnv{MCAConfig: map[string]Value{"layer_types": ListValue(StringValue("linear"), StringValue("full"))}, HasLayer: true,
		Flags: map[string]bool{"megatron_llama": false}}
	for layer, want := range []string{"x", "z"} {
		env.LayerIndex = int64(layer)
		if got, err := byLayer.ResolveIn(env); err != nil || got != want {
			t.Errorf("layer %d: ResolveIn = %q, %v; want %q", layer, got, err, want)
		}
	}
	env.LayerIndex = 2
	if _, err := byLayer.ResolveIn(env); err == nil {
		t.Error("layer 2 of 2 layer_types: no error")
	}
}

// TestFloatRepr pins Python's repr of floats.
func TestFloatRepr(t *testing.T) {
	for f, want := range map[float64]string{
		0: "0.0", 1: "1.0", -2.5: "-2.5", 1e16: "1e+16", 1e15: "1000000000000000.0", 1.5e-5: "1.5e-05",
		0.0001: "0.0001", 123456789.125: "123456789.125", math.Inf(1): "inf",
	} {
		if got := FloatValue(f).Text; got != want {
			t.Errorf("FloatValue(%v) = %s, want %s", f, got, want)
		}
	}
}
