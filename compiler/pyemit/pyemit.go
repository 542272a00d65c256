// Package pyemit writes compiled templates (compiler/ir) as the Python
// modules ROLL's mcore_adapter imports: one module per template with one
// register_dist_config and one register_template call laid out like ROLL's
// own models/*/__init__.py, a support module holding the named parallel
// sets and helpers, and an __init__.py importing every module.
//
// Importing a built module replaces ROLL's registration for that model type
// (ROLL's register_dist_config asserts on duplicates, so the support
// module's register_dist_config removes the old entry first; templates are
// replaced by plain assignment in ROLL). Output is deterministic and wrapped
// the way black wraps calls at 119 columns, ROLL's line length.
package pyemit

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/compiler/vocab"
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

// SupportModule is the name of the support module, without ".py".
const SupportModule = "_rolltpl_support"

// LineLength is the line length the output is wrapped at (ROLL's black
// configuration).
const LineLength = 119

// opClass returns the ROLL ConverOp class of an op kind defined in ROLL's
// converter/template.py (compiler/vocab's catalog), or ok false for a
// kind with no such class (a model op, see modelOpOf, or an unknown kind).
func opClass(kind string) (class string, ok bool) {
	spec := vocab.Op(kind)
	if spec == nil || spec.ROLLClass == "" || spec.ROLLModule != "" || spec.ROLLBy != "" {
		return "", false
	}
	return spec.ROLLClass, true
}

// modelOp is an op class ROLL defines beside a model's template instead of
// in template.py; the support module re-exports it under Name.
type modelOp struct {
	Module, Class, Name string
}

// modelClass returns the template class ROLL defines beside a model that
// t needs, or ok false when it needs none: the class of its fused-expert
// split ops (vocab.ROLLVariant.Template). Converting MCA -> HF, that
// class gathers a layer's per-expert weights under one prefix so that the
// split op can stack them back into the fused tensor (its add_mca_weight);
// a plain Template would never complete the group. Each class extends
// ROLL's VisionTemplate, so the template's key-prefix rule must be that
// one. Per-layer names and computed config need none: the emitter
// generates a class for them (tmplclass.go).
func modelClass(t *ir.Template) (m modelOp, ok bool, err error) {
	for _, op := range t.Ops {
		mo, isModel, tmpl := modelOpOf(op)
		if !isModel || vocab.Op(op.Kind).ROLLBy == "" {
			continue
		}
		if tmpl == "" {
			// ROLL's qwen3_5_moe split ops expand to per-expert MCA names
			// its MCA -> HF lookup never reaches (the per-expert ops take
			// the names by exact match): no class gathers for them, and
			// any template class converts as ROLL's does.
			continue
		}
		cls := modelOp{mo.Module, tmpl, tmpl}
		if ok && cls != m {
			return modelOp{}, false, &Error{t.Name, op.Span, fmt.Sprintf("the %s op at %s needs %s.%s, an earlier split op %s.%s", op.Kind, op.Span.Start, cls.Module, cls.Class, m.Module, m.Class)}
		}
		m, ok = cls, true
	}
	if ok && (len(t.KeyPrefixes) != 1 || !samePrefixRule(t.KeyPrefixes[0], visionRule)) {
		return modelOp{}, false, &Error{t.Name, t.NameSpan, fmt.Sprintf("%s.%s, which its fused-expert split ops need, extends %s: the template's key-prefix rule must be %[3]s's (use vision)", m.Module, m.Class, visionClass)}
	}
	return m, ok, nil
}

// modelOpOf returns the class of op when ROLL defines it beside a model
// (vocab.OpSpec.ROLLModule, or the variant its ROLLBy parameter selects)
// and the template class that op needs ("" for none).
func modelOpOf(op *ir.Op) (m modelOp, ok bool, template string) {
	spec := vocab.Op(op.Kind)
	if spec == nil || (spec.ROLLModule == "" && spec.ROLLBy == "") {
		return modelOp{}, false, ""
	}
	by := false
	if spec.ROLLBy != "" {
		v, set := op.Params[spec.ROLLBy]
		if !set {
			return modelOp{}, false, ""
		}
		by = strings.EqualFold(v.String(), "true")
	}
	module, name, template := spec.ROLLImport(by)
	return modelOp{Module: module, Class: spec.ROLLClass, Name: name}, true, template
}

// OpKinds returns the op kinds the emitter has a rule for, sorted: every
// kind of compiler/vocab's catalog with a ROLL class.
func OpKinds() []string {
	var out []string
	for _, o := range vocab.Ops {
		if o.ROLLClass != "" {
			out = append(out, o.Kind)
		}
	}
	sort.Strings(out)
	return out
}

// visionClass and visionRule are ROLL's VisionTemplate and its key
// prefixing (vocab.ROLLTemplateClasses).
var visionClass, visionRule = func() (string, ir.PrefixRule) {
	c := vocab.ROLLTemplateClasses[0]
	return c.Class, ir.PrefixRule{Prefix: c.Prefix, Unless: c.Unless}
}()

// File is one emitted file.
type File struct {
	Name    string // e.g. "qwen2.py"
	Content []byte
}

// Error is an emission failure tied to a template element.
type Error struct {
	Template string
	Span     token.Span // the op or template concerned
	Msg      string
}

func (e *Error) Error() string { return fmt.Sprintf("template %s: %s", e.Template, e.Msg) }

// Emit returns the files for p: one module per template, the support module
// and __init__.py, in that order.
func Emit(p *ir.Program) ([]File, error) {
	var files []File
	needPrefix := false
	needGenerated := false
	for _, t := range p.Templates {
		needGenerated = needGenerated || needsGeneratedClass(t)
		src, usesPrefix, err := emitTemplate(p, t)
		if err != nil {
			return nil, err
		}
		needPrefix = needPrefix || usesPrefix
		files = append(files, File{Name: t.Name + ".py", Content: src})
	}
	files = append(files, File{Name: SupportModule + ".py", Content: emitSupport(p, needPrefix, needGenerated)})
	files = append(files, File{Name: "__init__.py", Content: emitInit(p)})
	return files, nil
}

func header(source string) string {
	var b strings.Builder
	if source != "" {
		fmt.Fprintf(&b, "# Code generated by rolltplc from %s. DO NOT EDIT.\n", source)
	} else {
		b.WriteString("# Code generated by rolltplc. DO NOT EDIT.\n")
	}
	return b.String()
}

func distVar(name string) string { return name + "_dist_config" }

func templateClass(t *ir.Template) (class string, custom bool) {
	switch {
	case len(t.KeyPrefixes) == 0:
		return "", false
	case len(t.KeyPrefixes) == 1 && samePrefixRule(t.KeyPrefixes[0], visionRule):
		return visionClass, false
	}
	return "", true
}

func samePrefixRule(a, b ir.PrefixRule) bool {
	if a.Prefix != b.Prefix || len(a.Unless) != len(b.Unless) {
		return false
	}
	x := append([]string(nil), a.Unless...)
	y := append([]string(nil), b.Unless...)
	sort.Strings(x)
	sort.Strings(y)
	return strings.Join(x, "\x00") == strings.Join(y, "\x00")
}

// Check reports, as warnings, what keeps Emit from writing a template: op
// kinds with no Python rule, fused-expert split ops without a known ROLL
// template class. `rolltplc check` and the language server show them where
// they are written; conversions by the Go runtime are not affected.
func Check(p *ir.Program) diag.List {
	var l diag.List
	for _, t := range p.Templates {
		for _, e := range problems(t) {
			l.Add(diag.Warningf(e.Span, diag.PythonBackend, "rolltplc build cannot emit this yet", "Template %s: %s.", t.Name, e.Msg))
		}
	}
	return l
}

// problems lists what keeps emitTemplate from writing t.
func problems(t *ir.Template) []*Error {
	var out []*Error
	for _, op := range t.Ops {
		if _, ok, _ := modelOpOf(op); ok {
			continue
		}
		if _, ok := opClass(op.Kind); !ok {
			out = append(out, &Error{t.Name, op.Span, fmt.Sprintf("op kind %s has no Python rule yet (written at %s)", op.Kind, op.Span.Start)})
		} else if p := stepProblem(op); p != "" {
			out = append(out, &Error{t.Name, op.Span, p})
		}
	}
	if _, _, err := modelClass(t); err != nil {
		out = append(out, err.(*Error))
	}
	return out
}

func emitTemplate(p *ir.Program, t *ir.Template) ([]byte, bool, error) {
	if ps := problems(t); len(ps) > 0 {
		return nil, false, ps[0]
	}
	var b strings.Builder
	b.WriteString(header(t.File))
	fmt.Fprintf(&b, "%q\n\n", "ROLL conversion template for "+t.Name+".")
	classes := stepClasses(t)
	if len(classes) > 0 {
		b.WriteString("import torch\n\n")
	}

	// Imports from ROLL's template module.
	roll := map[string]bool{"register_template": true}
	fromSupport := map[string]bool{}
	for _, op := range t.Ops {
		if m, ok, _ := modelOpOf(op); ok {
			fromSupport[m.Name] = true
			continue
		}
		if cls, ok := opClass(op.Kind); ok {
			roll[cls] = true
		}
	}
	class, custom := templateClass(t)
	mcls, hasModelClass, err := modelClass(t)
	if err != nil {
		return nil, false, err
	}
	if hasModelClass {
		class, custom = mcls.Name, false
		fromSupport[mcls.Name] = true
	} else if class != "" {
		roll[class] = true
	}
	generated := needsGeneratedClass(t)
	if generated {
		if class == "" && !custom {
			roll["Template"] = true
		}
		for _, c := range []string{"RenameConverOp", "CopyConverOp", "StackConverOp", "QKVConverOp"} {
			roll[c] = true
		}
	}
	if t.MTP != nil && class == "" && !custom {
		roll["Template"] = true // the base of mtp_template
	}
	b.WriteString(importBlock("mcore_adapter.models.converter.template", sortedKeys(roll)))

	support := map[string]bool{"register_dist_config": true}
	if generated {
		for _, h := range []string{"_rt_field", "_rt_namespace", "_rt_recorded_hf", "_rt_layer_index"} {
			support[h] = true
		}
		for _, f := range exprFlags(t) {
			support["is_"+f] = true
		}
	}
	for n := range fromSupport {
		support[n] = true
	}
	if custom {
		support["key_prefix_template"] = true
	}
	if t.MTP != nil {
		support["mtp_template"] = true
	}
	if len(classes) > 0 {
		support["hf_parts"], support["as_list"], support["chunk"] = true, true, true
	}
	needDist := false
	if t.Parallel != nil {
		for _, part := range t.Parallel.Parts {
			if part.Use != "" {
				support[distVar(part.Use)] = true
			} else {
				needDist = true
			}
		}
	}
	for _, op := range t.Ops {
		for _, n := range append(append([]ir.Name{}, op.HF...), op.MCA...) {
			for _, f := range n.Flags() {
				support["is_"+f] = true
			}
		}
	}
	if needDist {
		b.WriteString(importBlock("mcore_adapter.models.converter.dist_converter", []string{"DistParallelConfig"}))
	}
	b.WriteString("\n")
	b.WriteString(importBlock("."+SupportModule, sortedKeys(support)))
	b.WriteString("\n\n")
	stepClassOf := map[*ir.Op]string{}
	for _, c := range classes {
		emitStepClass(&b, c, t.File)
		b.WriteString("\n\n")
		stepClassOf[c.Op] = c.Name
	}

	// register_dist_config(...)
	dist := parallelExpr(t.Parallel)
	b.WriteString(render(call("register_dist_config", arg("", str(t.Name)), arg("", dist)), 0))
	b.WriteString("\n\n")

	b.WriteString(mtpFirstLayerDef(t, generated))

	// register_template(...)
	args := []node{arg("", str(t.Name)), arg("hf_layer_prefix", str(t.LayerPrefix))}
	if t.ExpertPrefix != "" {
		args = append(args, arg("hf_moe_prefix", str(t.ExpertPrefix)))
	}
	if len(t.Invalid) > 0 {
		var inv []node
		for _, s := range t.Invalid {
			inv = append(inv, str(s.Value))
		}
		args = append(args, arg("hf_invalid_keys", list(inv...)))
	}
	var base node
	switch {
	case class != "":
		base = atom(class)
	case custom:
		var rules []node
		for _, r := range t.KeyPrefixes {
			var unless []node
			for _, u := range r.Unless {
				unless = append(unless, str(u))
			}
			rules = append(rules, tuple(str(r.Prefix), list(unless...)))
		}
		base = call("key_prefix_template", arg("", list(rules...)))
	}
	if generated {
		if base == nil {
			base = atom("Template")
		}
		b.WriteString("\n" + generatedClass(t, render(base, 0)))
		b.WriteString("\n\n")
		base = atom(generatedClassName(t))
	}
	if base != nil {
		args = append(args, arg("template_class", base))
	}
	if t.MTP != nil {
		args = withMTPClass(t, args)
	}
	var cfg []node
	for _, c := range t.Config {
		cfg = append(cfg, kv(str(c.HF), str(c.MCA)))
	}
	args = append(args, arg("config_hf_to_mca", dict(cfg...)))
	if len(t.Constants) > 0 {
		var cs []node
		for _, c := range t.Constants {
			cs = append(cs, kv(str(c.Key), value(c.Value)))
		}
		args = append(args, arg("constant_mca_config", dict(cs...)))
	}
	var ops []node
	for _, op := range t.Ops {
		ops = append(ops, opCall(op, stepClassOf[op]))
	}
	args = append(args, arg("weight_converters", list(ops...)))
	b.WriteString(render(call("register_template", args...), 0))
	b.WriteString("\n")
	return []byte(b.String()), custom, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	// isort order as ROLL uses it: case-sensitive, classes (capitalized) first.
	sort.Strings(out)
	return out
}

func importBlock(module string, names []string) string {
	one := fmt.Sprintf("from %s import %s\n", module, strings.Join(names, ", "))
	if len(one) <= LineLength+1 {
		return one
	}
	var b strings.Builder
	fmt.Fprintf(&b, "from %s import (\n", module)
	for _, n := range names {
		fmt.Fprintf(&b, "    %s,\n", n)
	}
	b.WriteString(")\n")
	return b.String()
}

func nameNode(n ir.Name) node {
	switch {
	case n.Computed != nil:
		return atom(n.Computed.Python(ir.DefaultPyNames))
	case n.Cond == nil:
		return str(n.Value)
	case !n.Cond.IsStatic(): // registered as the default; the template class picks Then per layer
		return nameNode(*n.Else)
	}
	c := n.Cond.Python(ir.DefaultPyNames)
	if n.Cond.Kind == ir.ExprCond {
		c = "(" + c + ")"
	}
	return cond(nameNode(*n.Then), atom(c), nameNode(*n.Else))
}

func names(ns []ir.Name) node {
	if len(ns) == 0 {
		return list()
	}
	if len(ns) == 1 {
		return nameNode(ns[0])
	}
	var items []node
	for _, n := range ns {
		items = append(items, nameNode(n))
	}
	return list(items...)
}

// opCall is the constructor call of op's class; class, when set, replaces
// the catalog class (an op's generated class with tensor steps).
func opCall(op *ir.Op, class string) node {
	// ROLL's ConverOp requires mca_names even when empty (DropConverOp).
	args := []node{arg("hf_names", names(op.HF)), arg("mca_names", names(op.MCA))}
	cls, _ := opClass(op.Kind)
	m, isModel, _ := modelOpOf(op)
	if isModel {
		cls = m.Name
	}
	if class != "" {
		cls = class
	}
	for _, k := range op.ParamNames() {
		if isModel && k == vocab.Op(op.Kind).ROLLBy {
			continue
		}
		args = append(args, arg(k, value(op.Params[k])))
	}
	return call(cls, args...)
}

// usedModelOps returns the model ops any template of p uses, sorted by name.
func usedModelOps(p *ir.Program) []modelOp {
	seen := map[string]modelOp{}
	for _, t := range p.Templates {
		for _, op := range t.Ops {
			if m, ok, _ := modelOpOf(op); ok {
				seen[m.Name] = m
			}
		}
		if m, ok, _ := modelClass(t); ok {
			seen[m.Name] = m
		}
	}
	var out []modelOp
	for _, m := range seen {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func value(v ir.Value) node {
	switch v.Kind {
	case ir.String:
		return str(v.Text)
	case ir.List:
		var items []node
		for _, e := range v.Elems {
			items = append(items, value(e))
		}
		return list(items...)
	}
	return atom(v.String())
}

// parallelExpr builds a DistParallelConfig expression merging the parts.
func parallelExpr(s *ir.ParallelSet) node {
	if s == nil || len(s.Parts) == 0 {
		return call("DistParallelConfig")
	}
	var expr node
	for _, part := range s.Parts {
		var n node
		if part.Use != "" {
			n = atom(distVar(part.Use))
		} else {
			n = inlineParallel(part)
		}
		if expr == nil {
			expr = n
		} else {
			expr = method(expr, "merge_configs", n)
		}
	}
	return expr
}

// listFields and mapFields are the DistParallelConfig arguments of the
// parallel classes (ir.ParallelClasses, ir.ParallelMaps).
var listFields = map[string]string{
	rollname.KeyPreProcess: "pre_process_weights", rollname.KeyPostProcess: "post_process_weights",
	rollname.KeyDuplicated: "duplicated_weights", rollname.KeyColumn: "column_parallel_weights",
	rollname.KeyRow: "row_parallel_weights", rollname.KeySwiglu: "swiglu_weights", rollname.KeyGDN: "gdn_weights",
}

var mapFields = map[string]string{
	rollname.KeyGroupedDuplicated: "grouped_duplicated_map", rollname.KeyGroupedColumn: "grouped_column_map",
	rollname.KeyGroupedRow: "grouped_row_map", rollname.KeyTEToLocal: "te_to_local_key_map",
}

func inlineParallel(part ir.ParallelPart) node {
	var args []node
	for _, c := range ir.ParallelClasses {
		if len(part.Lists[c]) == 0 {
			continue
		}
		var items []node
		for _, l := range part.Lists[c] {
			items = append(items, str(l.Value))
		}
		args = append(args, arg(listFields[c], list(items...)))
	}
	for _, m := range ir.ParallelMaps {
		if len(part.Maps[m]) == 0 {
			continue
		}
		var items []node
		for _, e := range part.Maps[m] {
			items = append(items, kv(str(e.From), str(e.To)))
		}
		args = append(args, arg(mapFields[m], dict(items...)))
	}
	return call("DistParallelConfig", args...)
}

func emitSupport(p *ir.Program, needPrefix, needGenerated bool) []byte {
	var b strings.Builder
	b.WriteString(header(""))
	b.WriteString(`"""Support code for the templates built by rolltplc.

Holds the named parallel sets the templates use, is_megatron_llama, and a
register_dist_config that replaces an existing registration instead of
failing on it (importing a built module overrides ROLL's own template for
that model type).
"""

`)
	steps := usesSteps(p)
	if steps {
		b.WriteString("from contextlib import contextmanager\n\nimport torch\n\n")
	}
	b.WriteString("from mcore_adapter.models.converter import dist_converter\n")
	if steps {
		b.WriteString("from mcore_adapter.models.converter.convert_utils import StackedTensors\n")
	}
	b.WriteString("from mcore_adapter.models.converter.dist_converter import DistParallelConfig\n")
	if needPrefix {
		b.WriteString("from mcore_adapter.models.converter.template import Template\n")
	}
	if used := usedModelOps(p); len(used) > 0 {
		b.WriteString("\n# Ops (and template classes) ROLL defines beside its models rather than in template.py.\n")
		for _, m := range used {
			if m.Name == m.Class {
				fmt.Fprintf(&b, "from %s import %s\n", m.Module, m.Class)
			} else {
				fmt.Fprintf(&b, "from %s import %s as %s\n", m.Module, m.Class, m.Name)
			}
		}
	}
	b.WriteString(supportPart("base"))
	if steps {
		b.WriteString(supportPart("steps"))
	}
	if needPrefix {
		b.WriteString(supportPart("key_prefix"))
	}
	if needGenerated {
		b.WriteString("\n\n" + ir.PythonPrelude)
		b.WriteString(supportPart("generated"))
	}
	if hasMTP(p) {
		b.WriteString(supportPart("mtp"))
	}
	for _, s := range p.ParallelSets {
		b.WriteString("\n\n")
		b.WriteString(render(assign(distVar(s.Name), parallelExpr(s)), 0))
		b.WriteString("\n")
	}
	return []byte(b.String())
}

func emitInit(p *ir.Program) []byte {
	var b strings.Builder
	b.WriteString(header(""))
	b.WriteString(`"""Conversion templates compiled by rolltplc.

Importing this package registers every template below with mcore_adapter,
replacing ROLL's own registration for the same model type.
"""

`)
	var mods []string
	for _, t := range p.Templates {
		mods = append(mods, t.Name)
	}
	sort.Strings(mods)
	if len(mods) > 0 {
		b.WriteString(importBlock(".", mods))
	}
	b.WriteString("\n")
	var items []node
	for _, m := range mods {
		items = append(items, str(m))
	}
	b.WriteString(render(assign("__all__", list(items...)), 0))
	b.WriteString("\n")
	return []byte(b.String())
}

func str(s string) node {
	q := strconv.Quote(s)
	return atom(q)
}
