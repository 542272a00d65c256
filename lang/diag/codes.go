package diag

import "sort"

// This file is the one registry of diagnostic codes. Code that reports a
// diagnostic names its code through one of these constants, never as a
// string literal (a test scans the project for literals), and every code
// here is documented in lang/spec.md §11 (a test compares the two) and
// asserted by a case of cmd/rolltplc/internal/cli/testdata/diagnostics
// (TestDiagnosticCorpusCoversCodes names the few asserted elsewhere).
//
// To add a code: add the constant and its [CodeInfo] entry below, add a
// row to the table of lang/spec.md §11, and add a corpus case named after
// the code.

// The diagnostic codes, grouped by the stage that reports them.
const (
	// Parser (lang/parser).
	SyntaxError    = "syntax-error"
	NestingTooDeep = "nesting-too-deep"

	// Loading and name resolution (compiler/resolve, compiler/schema).
	ReadError            = "read-error"
	UnknownImport        = "unknown-import"
	BadImport            = "bad-import"
	UnnamedBlock         = "unnamed-block"
	DuplicateDeclaration = "duplicate-declaration"
	UnknownReference     = "unknown-reference"
	UnknownType          = "unknown-type"

	// Lowering (compiler/lower).
	UnknownOpKind        = "unknown-op-kind"
	UnknownParam         = "unknown-param"
	UnknownField         = "unknown-field"
	UnknownParallelClass = "unknown-parallel-class"
	OpArity              = "op-arity"
	MissingParam         = "missing-param"
	MissingField         = "missing-field"
	TypeMismatch         = "type-mismatch"
	NotConstant          = "not-constant"
	DuplicateKey         = "duplicate-key"
	DuplicateSection     = "duplicate-section"
	NamedSection         = "named-section"
	ReuseCycle           = "reuse-cycle"
	ParallelEntry        = "parallel-entry"
	MTPField             = "mtp-field"
	UnknownStep          = "unknown-step"
	StepArg              = "step-arg"
	QuantRule            = "quant-rule"
	QuantOverlap         = "quant-overlap"

	// Checks (compiler/check).
	NoSchema         = "no-schema"
	UnknownHFKey     = "unknown-hf-key"
	UnknownMCAKey    = "unknown-mca-key"
	UnknownName      = "unknown-name"
	UnknownFunction  = "unknown-function"
	HFKeyAbsent      = "hf-key-absent"
	MCAKeyIgnored    = "mca-key-ignored"
	DuplicateMCAKey  = "duplicate-mca-key"
	MissingConfig    = "missing-config"
	ParamRange       = "param-range"
	NameScope        = "name-scope"
	WildcardCount    = "wildcard-count"
	DuplicateName    = "duplicate-name"
	UnreachableOp    = "unreachable-op"
	NameRegexp       = "name-regexp"
	ParallelCoverage = "parallel-coverage"
	MissingBiasOp    = "missing-bias-op"
	NotInvertible    = "not-invertible"
	MTPBlock         = "mtp-block"
	LayoutMismatch   = "layout-mismatch"
	DroppedWeight    = "dropped-weight"
	ScaleOp          = "scale-op"

	// A template against a real config.json (check --hf-config, convert).
	HFConfigJSON      = "hf-config-json"
	HFConfigModelType = "hf-config-model-type"
	HFConfigMissing   = "hf-config-missing"
	HFConfigType      = "hf-config-type"
	HFConfigRange     = "hf-config-range"

	// Backends and the tool itself.
	PythonBackend = "python-backend"
	InternalError = "internal-error"
)

// CodeInfo describes one diagnostic code.
type CodeInfo struct {
	Code string
	// Severity is the severity every diagnostic of this code has.
	Severity Severity
	// Summary says in one line what the code means.
	Summary string
}

// codes is the registry: every code with its severity and meaning.
var codes = []CodeInfo{
	{SyntaxError, Error, "the parser could not read a declaration"},
	{NestingTooDeep, Error, "a declaration nests more than 100 levels deep; it is not read"},

	{ReadError, Error, "a file given to the command cannot be read (missing, not a regular file)"},
	{UnknownImport, Error, "an import names no file beside the importer nor in the standard library"},
	{BadImport, Error, "an import path that is invalid, or names a file that cannot be read"},
	{UnnamedBlock, Error, "a config, mca, weights or parallel block outside a template without a name"},
	{DuplicateDeclaration, Error, "a name declared twice"},
	{UnknownReference, Error, "`use` or `extends` names nothing visible"},
	{UnknownType, Error, "a schema field of a type that is neither a basic type nor a schema"},

	{UnknownOpKind, Error, "an op kind the language does not know"},
	{UnknownParam, Error, "an op parameter the op kind does not take"},
	{UnknownField, Error, "a template field the language does not know"},
	{UnknownParallelClass, Error, "a parallel class the language does not know"},
	{OpArity, Error, "an op with the wrong number of names"},
	{MissingParam, Error, "an op without a parameter it requires"},
	{MissingField, Error, "a template without a field it requires"},
	{TypeMismatch, Error, "a value of the wrong kind"},
	{NotConstant, Error, "an expression where a constant is required"},
	{DuplicateKey, Error, "a key or parameter set twice"},
	{DuplicateSection, Error, "a template section written twice"},
	{NamedSection, Error, "a section inside a template given a name"},
	{ReuseCycle, Error, "a block that uses or a template that extends itself"},
	{ParallelEntry, Error, "a list class given a map entry or the reverse"},
	{MTPField, Error, "MTP template fields set both, or an MTP prefix that is not a prefix or overlaps layer_prefix"},
	{UnknownStep, Error, "a call in an op's HF operands that is not a tensor step"},
	{StepArg, Error, "a tensor step given a wrong, missing or extra argument"},
	{QuantRule, Error, "a scale rule with a side without exactly one {}, or both sides the same"},
	{QuantOverlap, Error, "two scale rules (or one rule's two sides) claiming a common name"},

	{NoSchema, Warning, "a template whose model type has no config schema"},
	{UnknownHFKey, Error, "an HF config key no schema has"},
	{UnknownMCAKey, Error, "an MCA config key no schema has"},
	{UnknownName, Error, "an expression names something that is neither hf, mca, layer nor a build flag"},
	{UnknownFunction, Error, "an expression calls a function the language does not have"},
	{HFKeyAbsent, Warning, "an HF key this model type lacks but others have: ROLL skips it"},
	{MCAKeyIgnored, Warning, "a key the MCA config class drops on load"},
	{DuplicateMCAKey, Error, "an MCA key mapped twice, or both mapped and constant"},
	{MissingConfig, Error, "an op reads config the template never sets"},
	{ParamRange, Error, "an op parameter out of range (a dim other than 0, 1, -1 or -2)"},
	{NameScope, Error, "layer-relative and global names mixed in one op"},
	{WildcardCount, Error, "the two sides of an op have different numbers of {}"},
	{DuplicateName, Error, "an HF name registered twice, or two ops producing one MCA name"},
	{UnreachableOp, Error, "an op an earlier pattern always shadows"},
	{NameRegexp, Error, "an op name that is not a regular expression both ROLL's lookup and the runtime can use"},
	{ParallelCoverage, Error, "an MCA name no parallel class covers"},
	{MissingBiasOp, Warning, "add_qkv_bias set but no qkv_bias op (a known ROLL quirk)"},
	{MTPBlock, Warning, "MTP layers without ops for the MTP block's weights, or such ops without MTP layers"},
	{NotInvertible, Error, "a tensor step the compiler cannot invert for the MCA -> HF direction"},
	{LayoutMismatch, Error, "an op whose output has the wrong layout for its MCA weight's class"},
	{DroppedWeight, Warning, "ignore or drop of a name an op of the program converts"},
	{ScaleOp, Warning, "an op converting FP8 scale tensors, on which ROLL's DistConverter raises (a known ROLL quirk)"},

	{HFConfigJSON, Error, "config.json is not a JSON object"},
	{HFConfigModelType, Error, "config.json has no model_type, or no template converts it"},
	{HFConfigMissing, Error, "a mapped key absent from config.json that the schema gives no default"},
	{HFConfigType, Error, "a config.json value of the wrong type for its schema or MCA key"},
	{HFConfigRange, Error, "a config.json value out of range for its MCA key"},

	{PythonBackend, Warning, "rolltplc build cannot emit the template yet"},
	{InternalError, Error, "a bug in rolltplc; please report it"},
}

var byCode = func() map[string]CodeInfo {
	m := make(map[string]CodeInfo, len(codes))
	for _, c := range codes {
		m[c.Code] = c
	}
	return m
}()

// Codes returns every registered code, sorted by code.
func Codes() []CodeInfo {
	out := append([]CodeInfo(nil), codes...)
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// LookupCode returns the registry entry of code.
func LookupCode(code string) (CodeInfo, bool) {
	c, ok := byCode[code]
	return c, ok
}
