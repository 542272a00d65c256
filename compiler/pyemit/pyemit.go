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
	"github.com/rolltpl/rolltpl/lang/diag"
	"github.com/rolltpl/rolltpl/lang/token"
)

// SupportModule is the name of the support module, without ".py".
const SupportModule = "_rolltpl_support"

// LineLength is the line length the output is wrapped at (ROLL's black
// configuration).
const LineLength = 119

// opClasses maps op kinds to the ROLL ConverOp class that implements them.
// Kinds absent here have no Python rule yet.
var opClasses = map[string]string{
	"rename":                "RenameConverOp",
	"copy":                  "CopyConverOp",
	"concat":                "ConcatConverOp",
	"stack":                 "StackConverOp",
	"drop":                  "DropConverOp",
	"qkv":                   "QKVConverOp",
	"qkv_bias":              "QKVBiasConverOp",
	"gated_qkv":             "GatedQKVConverOp",
	"zero_centered_rmsnorm": "ZeroCenteredRMSNormConverOp",
	"gdn_conv1d":            "GDNConv1dConverOp",
}

// modelOp is an op class ROLL defines beside a model's template instead of
// in template.py; the support module re-exports it under Name.
type modelOp struct {
	Module, Class, Name string
}

// modelOps maps op kinds (and, for the expert splits, the transpose
// parameter) to ROLL's classes in its model modules.
var modelOps = map[string]modelOp{
	"next_gdn":                  {"mcore_adapter.models.qwen3_next", "NextGDNConverOp", "NextGDNConverOp"},
	"qwen3_5_gdn":               {"mcore_adapter.models.qwen3_5", "Qwen3_5_GDNConverOp", "Qwen3_5_GDNConverOp"},
	"split_experts/true":        {"mcore_adapter.models.qwen3_vl_moe", "SplitConverOp", "TransposedSplitConverOp"},
	"split_stack_experts/true":  {"mcore_adapter.models.qwen3_vl_moe", "SplitStackConverOp", "TransposedSplitStackConverOp"},
	"split_experts/false":       {"mcore_adapter.models.qwen3_5_moe", "SplitConverOp", "SplitConverOp"},
	"split_stack_experts/false": {"mcore_adapter.models.qwen3_5_moe", "SplitStackConverOp", "SplitStackConverOp"},
}

// fusedExpertClasses maps the model module of a template's fused-expert
// split ops to the template class ROLL defines beside them. Converting
// MCA -> HF, that class gathers a layer's per-expert weights under one
// prefix so that the split op can stack them back into the fused tensor
// (its add_mca_weight); a plain Template would never complete the group.
// Each class extends ROLL's VisionTemplate, so the template's key-prefix
// rule must be that one.
var fusedExpertClasses = map[string]modelOp{
	"mcore_adapter.models.qwen3_vl_moe": {"mcore_adapter.models.qwen3_vl_moe", "Qwen3VLMoeTemplate", "Qwen3VLMoeTemplate"},
}

// modelClass returns the template class ROLL defines beside a model that
// t needs (for fused-expert split ops); ok is false when t needs none.
// Per-layer names and computed config need none: the emitter generates a
// class for them (tmplclass.go).
func modelClass(t *ir.Template) (m modelOp, ok bool, err error) {
	return fusedExpertClass(t)
}

// fusedExpertClass returns the template class of a template with fused
// expert split ops, or ok false when it has none.
func fusedExpertClass(t *ir.Template) (m modelOp, ok bool, err error) {
	for _, op := range t.Ops {
		if op.Kind != "split_experts" && op.Kind != "split_stack_experts" {
			continue
		}
		mo, _ := modelOpOf(op)
		cls, known := fusedExpertClasses[mo.Module]
		if !known {
			return modelOp{}, false, &Error{t.Name, op.Span, fmt.Sprintf("fused experts of %s (the %s op at %s) have no Python template class yet", mo.Module, op.Kind, op.Span.Start)}
		}
		if ok && cls != m {
			return modelOp{}, false, &Error{t.Name, op.Span, fmt.Sprintf("the %s op at %s needs %s.%s, an earlier split op %s.%s", op.Kind, op.Span.Start, cls.Module, cls.Class, m.Module, m.Class)}
		}
		m, ok = cls, true
	}
	if ok && (len(t.KeyPrefixes) != 1 || !samePrefixRule(t.KeyPrefixes[0], visionRule)) {
		return modelOp{}, false, &Error{t.Name, t.NameSpan, fmt.Sprintf("%s.%s, which its fused-expert split ops need, extends VisionTemplate: the template's key-prefix rule must be VisionTemplate's (use vision)", m.Module, m.Class)}
	}
	return m, ok, nil
}

// selectParam names the parameter that selects a model op's class; it is
// not passed to the constructor.
const selectParam = "transpose"

func modelOpOf(op *ir.Op) (modelOp, bool) {
	key := op.Kind
	if v, ok := op.Params[selectParam]; ok {
		key += "/" + v.String()
		key = strings.ToLower(key)
	}
	m, ok := modelOps[key]
	return m, ok
}

// OpKinds returns the op kinds the emitter has a rule for, sorted.
func OpKinds() []string {
	seen := map[string]bool{}
	for k := range opClasses {
		seen[k] = true
	}
	for k := range modelOps {
		kind, _, _ := strings.Cut(k, "/")
		seen[kind] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// visionRule is ROLL's VisionTemplate key prefixing.
var visionRule = ir.PrefixRule{Prefix: "text_config.", Unless: []string{"*_token_id", "vision_config", "tie_word_embeddings"}}

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
		return "VisionTemplate", false
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
			l.Add(diag.Warningf(e.Span, "python-backend", "rolltplc build cannot emit this yet", "Template %s: %s.", t.Name, e.Msg))
		}
	}
	return l
}

// problems lists what keeps emitTemplate from writing t.
func problems(t *ir.Template) []*Error {
	var out []*Error
	for _, op := range t.Ops {
		if _, ok := modelOpOf(op); ok {
			continue
		}
		if _, ok := opClasses[op.Kind]; !ok {
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
		if m, ok := modelOpOf(op); ok {
			fromSupport[m.Name] = true
			continue
		}
		if cls, ok := opClasses[op.Kind]; ok {
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
	cls := opClasses[op.Kind]
	m, isModel := modelOpOf(op)
	if isModel {
		cls = m.Name
	}
	if class != "" {
		cls = class
	}
	for _, k := range op.ParamNames() {
		if isModel && k == selectParam {
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
			if m, ok := modelOpOf(op); ok {
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

var listFields = map[string]string{
	"pre_process": "pre_process_weights", "post_process": "post_process_weights",
	"duplicated": "duplicated_weights", "column": "column_parallel_weights",
	"row": "row_parallel_weights", "swiglu": "swiglu_weights", "gdn": "gdn_weights",
}

var mapFields = map[string]string{
	"grouped_duplicated": "grouped_duplicated_map", "grouped_column": "grouped_column_map",
	"grouped_row": "grouped_row_map", "te_to_local": "te_to_local_key_map",
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
	b.WriteString(`

try:
    from mcore_adapter.utils import is_megatron_llama
except ImportError:  # an mcore_adapter without the helper

    def is_megatron_llama():
        """Whether the installed Megatron is megatron-llama-core."""
        from importlib.metadata import distributions

        return any(dist.metadata.get("Name") == "megatron-llama-core" for dist in distributions())


def register_dist_config(name, config):
    """Register config for name, replacing an earlier registration."""
    dist_converter.dist_configs.pop(name, None)
    dist_converter.register_dist_config(name, config)
`)
	if steps {
		b.WriteString(supportSteps)
	}
	if needPrefix {
		b.WriteString(`

def key_prefix_template(rules):
    """A Template class whose HF config keys are prefixed by rules.

    rules is a list of (prefix, unless) pairs tried in order: the first rule
    none of whose unless patterns (shell globs) matches a key prefixes it.
    """
    from fnmatch import fnmatchcase

    class KeyPrefixTemplate(Template):
        def adjust_config_hf_to_mca(self):
            out = {}
            for hf_key, mca_key in self.config_hf_to_mca.items():
                for prefix, unless in rules:
                    if not any(fnmatchcase(hf_key, pattern) for pattern in unless):
                        hf_key = prefix + hf_key
                        break
                out[hf_key] = mca_key
            return out

    return KeyPrefixTemplate
`)
	}
	if needGenerated {
		b.WriteString(generatedSupport)
	}
	if hasMTP(p) {
		b.WriteString(supportMTP)
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
