package lower_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/lower"
	"github.com/rolltpl/rolltpl/lang/ast"
	"github.com/rolltpl/rolltpl/lang/parser"
)

// parseExpr parses src as the value of an MCA constant.
func parseExpr(t *testing.T, src string) *ast.Expr {
	t.Helper()
	f, diags := parser.ParseFile("e.rolltpl", []byte("mca m { a = "+src+" }"))
	if diags.HasErrors() {
		t.Fatalf("%s: %v", src, diags.Err())
	}
	return f.Decls[0].Mca.Items[0].Const.Value
}

func lowerExpr(t *testing.T, src string) *ir.Expr {
	t.Helper()
	e, diags := lower.Expr(parseExpr(t, src))
	if diags.HasErrors() {
		t.Fatalf("%s: %v", src, diags.Err())
	}
	return e
}

// TestExprPrecedence pins the precedence levels twice: in the parse dump
// and in the lowered tree.
func TestExprPrecedence(t *testing.T) {
	tests := []struct{ src, dump, lowered string }{
		{
			`a || b && c == d + e * -f[0].g if x else y`,
			`(Expr Value=(OrExpr Left=(Primary Ident="a") Right=[(AndExpr Left=(Primary Ident="b") Right=[(CmpExpr Left=(Primary Ident="c") Op="==" ` +
				`Right=(AddExpr Left=(Primary Ident="d") Rest=[(AddTerm Op="+" Right=(MulExpr Left=(Primary Ident="e") Rest=[(MulTerm Op="*" ` +
				`Right=(Unary Op="-" Operand=(Postfix X=(Primary Ident="f") Ops=[(Suffix Index=(Primary Int="0")) (Suffix Field=(Ident Name="g"))])))]))]))])]) ` +
				`Cond=(Primary Ident="x") Else=(Primary Ident="y"))`,
			`(if (|| a (&& b (== c (+ d (* e (- (. g ([] f 0)))))))) x y)`,
		},
		{`a - b - c`, ``, `(- (- a b) c)`},
		{`a / b // c % d * e`, ``, `(* (% (// (/ a b) c) d) e)`},
		{`!a == b`, ``, `(== (! a) b)`},
		{`-a[0]`, ``, `(- ([] a 0))`},
		{`a if b else c if d else e`, ``, `(if a b (if c d e))`},
		{`(a if b else c) if d else e`, ``, `(if (if a b c) d e)`},
		{`a || b || c && d`, ``, `(|| (|| a b) (&& c d))`},
		{`(a < b) == c`, ``, `(== (< a b) c)`},
		{`len(hf.x) + count(mca.y, 0) * 2`, ``, `(+ (call len (. x hf)) (* (call count (. y mca) 0) 2))`},
		{`-1`, ``, `-1`},
		{`- -1`, ``, `(- -1)`},
		{`[1, "a", [2.5, null, true]]`, ``, `(list 1 'a' (list 2.5 None True))`},
		{`hf.rope_scaling.factor`, ``, `(. factor (. rope_scaling hf))`},
	}
	for _, tc := range tests {
		e := parseExpr(t, tc.src)
		if tc.dump != "" {
			if diff := cmp.Diff(tc.dump, ast.Dump(e)); diff != "" {
				t.Errorf("%s: dump (-want +got):\n%s", tc.src, diff)
			}
		}
		if diff := cmp.Diff(tc.lowered, lowerExpr(t, tc.src).String()); diff != "" {
			t.Errorf("%s: lowered (-want +got):\n%s", tc.src, diff)
		}
	}
}

// TestExprLowerErrors: what is not an expression is a diagnostic with the
// range of the offending part.
func TestExprLowerErrors(t *testing.T) {
	for _, src := range []string{`hf.x(1)`, `f[0](1)`} {
		_, diags := lower.Expr(parseExpr(t, src))
		if !diags.HasErrors() || diags[0].Code != "type-mismatch" || diags[0].Subject.Start.Line != 1 {
			t.Errorf("%s: got %v, want a type-mismatch error with a range", src, diags)
		}
	}
}

// testEnv is the configs the evaluator tests read.
func testEnv() ir.MapEnv {
	return ir.MapEnv{
		HFConfig: map[string]ir.Value{
			"num_hidden_layers":     ir.IntValue(4),
			"hidden_size":           ir.IntValue(4096),
			"first_k_dense_replace": ir.IntValue(1),
			"n_shared_experts":      ir.NullValue(),
			"moe_intermediate_size": ir.IntValue(1408),
			"name":                  ir.StringValue("it's"),
			"rope_scaling": ir.DictValue([]string{"factor", "type", "original_max_position_embeddings"},
				[]ir.Value{ir.FloatValue(40), ir.StringValue("yarn"), ir.IntValue(4096)}),
		},
		MCAConfig: map[string]ir.Value{
			"moe_layer_freq": ir.ListValue(ir.IntValue(0), ir.IntValue(1), ir.IntValue(1), ir.IntValue(1)),
			"layer_types":    ir.ListValue(ir.StringValue("linear_attention"), ir.StringValue("full_attention")),
			"num_layers":     ir.IntValue(4),
			"ffn":            ir.IntValue(1408),
			"shared":         ir.IntValue(2816),
		},
		LayerIndex: 1, HasLayer: true,
		Flags: map[string]bool{"megatron_llama": false},
	}
}

// exprCases are expressions with their value (Python's repr) in
// testEnv, or "error" when evaluation must fail.
var exprCases = []struct{ src, want string }{
	{`1 + 2 * 3`, `7`},
	{`(1 + 2) * 3`, `9`},
	{`7 / 2`, `3.5`},
	{`6 / 3`, `2.0`},
	{`7 // 2`, `3`},
	{`-7 // 2`, `-4`},
	{`7 // -2`, `-4`},
	{`-7 % 3`, `2`},
	{`7 % -3`, `-2`},
	{`7.5 // 2`, `3.0`},
	{`-7.5 % 2`, `0.5`},
	{`1e16 + 1.0`, `1e+16`},
	{`0.1 + 0.2`, `0.30000000000000004`},
	{`1234567.0 * 10`, `12345670.0`},
	{`1 / 3`, `0.3333333333333333`},
	{`0.0001 / 10`, `1e-05`},
	{`2 ** 3`, `error`}, // not in the language: a parse error handled below
	{`[0] * 2 + [1] * 3`, `[0, 0, 1, 1, 1]`},
	{`[0] * hf.first_k_dense_replace + [1] * (hf.num_hidden_layers - hf.first_k_dense_replace)`, `[0, 1, 1, 1]`},
	{`2 * [1, 2]`, `[1, 2, 1, 2]`},
	{`[1] * -3`, `[]`},
	{`"ab" * 3`, `'ababab'`},
	{`"a" + "b"`, `'ab'`},
	{`[1, 2] < [1, 3]`, `True`},
	{`[1, 2] < [1, 2, 0]`, `True`},
	{`"abc" < "abd"`, `True`},
	{`1 == 1.0`, `True`},
	{`true == 1`, `True`},
	{`null == null`, `True`},
	{`null == 0`, `False`},
	{`[1, [2]] == [1, [2]]`, `True`},
	{`"1" == 1`, `False`},
	{`1 < 2.5`, `True`},
	{`hf.missing`, `None`},
	{`hf.missing == null`, `True`},
	{`hf.rope_scaling.factor`, `40.0`},
	{`hf.rope_scaling.type if hf.rope_scaling else "rope"`, `'yarn'`},
	{`hf.nothing.factor if hf.nothing else 1.0`, `1.0`},
	{`hf.rope_scaling.missing`, `None`},
	{`hf.rope_scaling["factor"]`, `40.0`},
	{`hf.n_shared_experts * hf.moe_intermediate_size if hf.n_shared_experts else 0`, `0`},
	{`mca.shared // mca.ffn`, `2`},
	{`count(mca.moe_layer_freq, 0)`, `1`},
	{`layer < count(mca.moe_layer_freq, 0)`, `False`},
	{`mca.layer_types[layer] == "full_attention"`, `True`},
	{`mca.layer_types[-1]`, `'full_attention'`},
	{`mca.layer_types[layer % 2] == "linear_attention" && layer > 0`, `False`},
	{`is_list(mca.moe_layer_freq)`, `True`},
	{`is_list(hf.hidden_size)`, `False`},
	{`len(mca.moe_layer_freq) + len("abc") + len(hf.rope_scaling)`, `10`},
	{`range(3)`, `[0, 1, 2]`},
	{`range(1, 7, 2)`, `[1, 3, 5]`},
	{`range(5, 0, -2)`, `[5, 3, 1]`},
	{`range(3, 1)`, `[]`},
	{`str(1.5) + str(2) + str(null) + str(true) + str("x")`, `'1.52NoneTruex'`},
	{`str([1, "a"])`, `"[1, 'a']"`},
	{`str(hf.name)`, `"it's"`},
	{`int(2.9) + int(-2.9) + int("12")`, `12`},
	{`float(3)`, `3.0`},
	{`min(3, 1, 2)`, `1`},
	{`max([1, 5, 2])`, `5`},
	{`max(1, 2.5)`, `2.5`},
	{`0 || "x"`, `'x'`},
	{`1 || hf.nothing.x[9]`, `1`},
	{`0 && 1 / 0`, `0`},
	{`"" || null`, `None`},
	{`!0`, `True`},
	{`![]`, `True`},
	{`!"a"`, `False`},
	{`!(1 == 2) == true`, `True`},
	{`-(1 + 2)`, `-3`},
	{`- -3`, `3`},
	{`1 if [] else 2`, `2`},
	{`1 if [0] else 2`, `1`},
	{`megatron_llama`, `False`},
	{`"a" if megatron_llama else "b"`, `'b'`},
	{`(1 if 0 else 2) if 1 else 3`, `2`},
	{`1 if 0 else 2 if 1 else 3`, `2`},
	{`9223372036854775807 + 0`, `9223372036854775807`},
	{`-9223372036854775808`, `-9223372036854775808`},
	// errors: never a panic, always a message with a range
	{`9223372036854775807 + 1`, `error`},
	{`-9223372036854775807 - 2`, `error`},
	{`4611686018427387904 * 2`, `error`},
	{`1 / 0`, `error`},
	{`1 // 0`, `error`},
	{`1.0 % 0`, `error`},
	{`"a" - 1`, `error`},
	{`null + 1`, `error`},
	{`null < 1`, `error`},
	{`[1] * 2000000`, `error`},
	{`[[0] * 1000000] * 1000000`, `error`},
	{`[[0] * 600000, [0] * 600000]`, `error`},
	{`[0] * 600000 + [0] * 600000`, `error`},
	{`len([[0] * 100] * 100)`, `100`},
	{`len([[0] * 1000] * 1000)`, `error`},
	{`range(65535)[-1]`, `65534`},
	{`range(65537)`, `error`},
	{`len([0] * 65536)`, `65536`},
	{`range(2000000)`, `error`},
	{`range(1, 2, 0)`, `error`},
	{`mca.layer_types[5]`, `error`},
	{`len(3)`, `error`},
	{`hf.rope_scaling["nope"]`, `error`},
	{`int("x")`, `error`},
	{`min([])`, `error`},
	{`hf.hidden_size.x`, `error`},
}

// TestExprEval evaluates every case.
func TestExprEval(t *testing.T) {
	for _, tc := range exprCases {
		f, diags := parser.ParseFile("e.rolltpl", []byte("mca m { a = "+tc.src+" }"))
		if diags.HasErrors() {
			if tc.want != "error" {
				t.Errorf("%s: %v", tc.src, diags.Err())
			}
			continue
		}
		e, ld := lower.Expr(f.Decls[0].Mca.Items[0].Const.Value)
		if ld.HasErrors() {
			t.Errorf("%s: %v", tc.src, ld.Err())
			continue
		}
		v, err := e.Eval(testEnv())
		got := v.Repr()
		if err != nil {
			got = "error"
			ee, ok := err.(*ir.EvalError)
			if !ok || ee.Span.Start.Line != 1 || ee.Span.End.Offset <= ee.Span.Start.Offset {
				t.Errorf("%s: error %v has no range", tc.src, err)
			}
		}
		if got != tc.want {
			t.Errorf("%s = %s (%v), want %s", tc.src, got, err, tc.want)
		}
	}
}

// TestExprPython pins the printer's output for precedence and the
// printed forms of names and functions.
func TestExprPython(t *testing.T) {
	tests := []struct{ src, want string }{
		{`!a == b`, `(not is_a()) == is_b()`},
		{`!(layer == 1)`, `not layer_idx == 1`},
		{`(layer < 1) == (layer < 2)`, `(layer_idx < 1) == (layer_idx < 2)`},
		{`a || b && c`, `is_a() or is_b() and is_c()`},
		{`(a || b) && c`, `(is_a() or is_b()) and is_c()`},
		{`1 - (2 - 3)`, `1 - (2 - 3)`},
		{`(1 - 2) - 3`, `1 - 2 - 3`},
		{`-(1 + layer)`, `-(1 + layer_idx)`},
		{`- -layer`, `- -layer_idx`},
		{`-(-1)`, `- -1`},
		{`(1 if a else 2) if b else 3`, `(1 if is_a() else 2) if is_b() else 3`},
		{`1 if (a if b else c) else 2`, `1 if (is_a() if is_b() else is_c()) else 2`},
		{`1 if a else 2 if b else 3`, `1 if is_a() else 2 if is_b() else 3`},
		{`hf.rope_scaling.factor`, `_rt_field(getattr(hf_config, 'rope_scaling', None), 'factor')`},
		{`mca.layer_types[layer]`, `getattr(mca_config, 'layer_types', None)[layer_idx]`},
		{`count(mca.f, 0) + len([1]) * 2`, `getattr(mca_config, 'f', None).count(0) + len([1]) * 2`},
		{`range(layer, 3)`, `list(range(layer_idx, 3))`},
		{`is_list(null)`, `isinstance(None, list)`},
		{`[true, false, null, "x\"y", 1.5e3]`, `[True, False, None, 'x"y', 1.5e3]`},
		{`(1 + 2)[0]`, `(1 + 2)[0]`},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, lowerExpr(t, tc.src).Python(ir.DefaultPyNames)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.src, diff)
		}
	}
}

// TestExprPythonAgrees runs the printed form of every case with
// /usr/bin/python3 and compares Python's repr with Eval's.
func TestExprPythonAgrees(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 is required under CI: %v", err)
		}
		t.Skip("no /usr/bin/python3")
	}
	env := testEnv()
	var srcs, gos []string
	for _, tc := range exprCases {
		f, diags := parser.ParseFile("e.rolltpl", []byte("mca m { a = "+tc.src+" }"))
		if diags.HasErrors() {
			continue
		}
		e, ld := lower.Expr(f.Decls[0].Mca.Items[0].Const.Value)
		if ld.HasErrors() {
			t.Fatalf("%s: %v", tc.src, ld.Err())
		}
		v, err := e.Eval(env)
		want := v.Repr()
		if err != nil {
			want = "error"
			if msg := err.Error(); strings.Contains(msg, "limit of") || strings.Contains(msg, "more than") {
				continue // the size bounds are the evaluator's own: Python has none
			}
		}
		srcs = append(srcs, e.Python(ir.DefaultPyNames))
		gos = append(gos, want)
	}
	var prog strings.Builder
	prog.WriteString("import json, sys, types\n")
	prog.WriteString(ir.PythonPrelude)
	prog.WriteString(`
hf = {"num_hidden_layers": 4, "hidden_size": 4096, "first_k_dense_replace": 1, "n_shared_experts": None,
      "moe_intermediate_size": 1408, "name": "it's",
      "rope_scaling": {"factor": 40.0, "type": "yarn", "original_max_position_embeddings": 4096}}
hf_config = types.SimpleNamespace(**hf)
mca_config = types.SimpleNamespace(moe_layer_freq=[0, 1, 1, 1], layer_types=["linear_attention", "full_attention"],
                                   num_layers=4, ffn=1408, shared=2816)
layer_idx = 1
def is_megatron_llama():
    return False
LIMIT = 1 << 16
def weight(v, limit):
    w = 1 + (len(v) if isinstance(v, str) else 0)
    for x in (v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()):
        if w > limit:
            break
        w += weight(x, limit - w)
    return w
out = []
for src in json.load(sys.stdin):
    try:
        v = eval(src)
        if weight(v, LIMIT) > LIMIT:
            raise ValueError("too large")
        if isinstance(v, int) and not isinstance(v, bool) and not -2**63 <= v < 2**63:
            raise OverflowError("int64")
        if isinstance(v, bool) or v is None or isinstance(v, (int, float, str, list, dict)):
            out.append(repr(v))
        else:
            out.append("error")
    except Exception:
        out.append("error")
print(json.dumps(out))
`)
	in, _ := json.Marshal(srcs)
	cmd := exec.Command(py, "-c", prog.String())
	cmd.Stdin = strings.NewReader(string(in))
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var pys []string
	if err := json.Unmarshal(b, &pys); err != nil {
		t.Fatalf("python3 output %q: %v", b, err)
	}
	if len(pys) != len(gos) {
		t.Fatalf("python3 printed %d values, want %d", len(pys), len(gos))
	}
	for i := range gos {
		if gos[i] != pys[i] {
			t.Errorf("%s: Go %s, Python %s", srcs[i], gos[i], pys[i])
		}
	}
}

// typeEnv knows a few keys of each config.
type typeEnv struct{ layer bool }

func (e typeEnv) HFType(key string) (ir.Type, bool) {
	switch key {
	case "hidden_size":
		return ir.TypeOf(ir.Int), true
	case "rope_scaling":
		return ir.TypeOf(ir.Dict, ir.Null), true
	case "n_shared_experts":
		return ir.TypeOf(ir.Int, ir.Null), true
	}
	return 0, false
}

func (e typeEnv) MCAType(key string) (ir.Type, bool) {
	if key == "layer_types" {
		return ir.TypeOf(ir.List), true
	}
	return 0, false
}
func (e typeEnv) LayerBound() bool        { return e.layer }
func (e typeEnv) IsFlag(name string) bool { return name == "megatron_llama" }

// TestExprCheck pins the static check: the inferred type, or the errors
// with their codes and the source text of their ranges.
func TestExprCheck(t *testing.T) {
	tests := []struct {
		src   string
		layer bool
		want  string
	}{
		{`hf.hidden_size * 2`, false, `int`},
		{`hf.hidden_size / 2`, false, `float`},
		{`hf.n_shared_experts * 2 if hf.n_shared_experts else 0`, false, `int`},
		{`[0] * hf.hidden_size`, false, `list`},
		{`hf.rope_scaling.factor if hf.rope_scaling else 1.0`, false, `any`},
		{`mca.layer_types[layer] == "x"`, true, `bool`},
		{`"a" if megatron_llama else "b"`, false, `str`},
		{`hf.hiden_size + 1`, false, `unknown-hf-key hf.hiden_size`},
		{`mca.nope`, false, `unknown-mca-key mca.nope`},
		{`layer + 1`, false, `type-mismatch layer`},
		{`foo || 1`, false, `unknown-name foo`},
		{`bar(1)`, false, `unknown-function bar(1)`},
		{`len(1, 2)`, false, `type-mismatch len(1, 2)`},
		{`len(hf.hidden_size)`, false, `type-mismatch hf.hidden_size`},
		{`"a" - hf.hidden_size`, false, `type-mismatch "a" - hf.hidden_size`},
		{`hf.hidden_size < "a"`, false, `type-mismatch hf.hidden_size < "a"`},
		{`hf.hidden_size.x`, false, `type-mismatch hf.hidden_size.x`},
		{`-"a"`, false, `type-mismatch -"a"`},
		{`[1][("a")]`, false, `type-mismatch [1][("a")]`},
		{`99999999999999999999`, false, `type-mismatch 99999999999999999999`},
		{`range(1, "a")`, false, `type-mismatch "a"`},
	}
	for _, tc := range tests {
		src := "mca m { a = " + tc.src + " }"
		typ, errs := lowerExpr(t, tc.src).Check(typeEnv{layer: tc.layer})
		got := typ.String()
		if len(errs) > 0 {
			var parts []string
			for _, e := range errs {
				parts = append(parts, e.Code+" "+src[e.Span.Start.Offset:e.Span.End.Offset])
			}
			got = strings.Join(parts, "; ")
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.src, diff)
		}
	}
}

// FuzzExpr: any expression the parser accepts lowers, checks, evaluates
// and prints without a panic, and evaluation stays bounded.
func FuzzExpr(f *testing.F) {
	for _, tc := range exprCases {
		f.Add(tc.src)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if strings.ContainsAny(src, "{}#\n") {
			return
		}
		file, diags := parser.ParseFile("e.rolltpl", []byte("mca m { a = "+src+" }"))
		if diags.HasErrors() || len(file.Decls) != 1 || file.Decls[0].Mca == nil || len(file.Decls[0].Mca.Items) != 1 {
			return
		}
		c := file.Decls[0].Mca.Items[0].Const
		if c == nil {
			return
		}
		e, ld := lower.Expr(c.Value)
		if ld.HasErrors() {
			return
		}
		e.Check(typeEnv{layer: true})
		_ = e.Python(ir.DefaultPyNames)
		v, err := e.Eval(testEnv())
		if err == nil && ir.Weight(v, 2*ir.MaxElems) > 2*ir.MaxElems {
			t.Fatalf("%s: a result of weight %d", src, ir.Weight(v, 4*ir.MaxElems))
		}
	})
}
