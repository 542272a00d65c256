package rollname

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// python is the interpreter the expected results come from.
const python = "/usr/bin/python3"

// oracle is a Python re-statement of the ROLL rules under test: fnmatch
// is Python's own; get_conver_op, name_match, the ".bias" rule and
// dist_convert's class order are copied from ROLL (mcore_adapter
// models/converter/template.py and dist_converter.py); key prefixing
// from the KeyPrefixTemplate rolltplc emits (VisionTemplate's rule).
const oracle = `
import json, re, sys
from fnmatch import fnmatchcase

def get_conver_op(name, keys):
    if name in keys:
        return name
    for pattern in keys:
        re_pattern = pattern.replace("{}", "(.*?)")
        if re.match(re_pattern, name):
            return pattern
    return None

def name_match(pure_name, patterns):
    if pure_name in patterns:
        return True
    for pattern in patterns:
        if fnmatchcase(pure_name, pattern):
            return True
    return False

def pure(pure_name):
    if pure_name.endswith(".bias"):
        pure_name = pure_name.replace(".bias", ".weight")
    return pure_name

def classify(name, lists, grouped, swiglu):
    p = pure(name)
    order = [("grouped_duplicated", grouped), ("grouped_column", grouped), ("grouped_row", grouped),
             ("swiglu", swiglu), ("gdn", True), ("duplicated", True), ("column", True), ("row", True)]
    for cls, on in order:
        if on and name_match(p, lists.get(cls, [])):
            return cls
    return ""

def matched(name, m):
    if name in m:
        return m[name]
    for key in m:
        if fnmatchcase(name, key):
            v = m[key]
            if v.find(".lora") < 0 or name.find(".lora") < 0:
                return None
            return v[: v.find(".lora")] + name[name.find(".lora") :]
    return None

def to_names(from_name, name, to_names):
    # the renaming of ConverOp._to_names_and_weights for one gathered name
    match = re.findall(from_name.replace(".", r"\.").replace("{}", "(.*)"), name)
    if match:
        try:
            return [t.format(*match) for t in to_names]
        except IndexError:
            return None
    return to_names

# convert_utils.py, MCA side
MCA_LAYER_PREFIX = "decoder.layers."
MCA_MOE_PREFIX = ".mlp.experts.local_experts."
MCA_MTP_PREFIX = "mtp.layers."
MCA_MTP_MOE_PREFIX = ".mtp_model_layer.mlp.experts.local_experts."

def get_layer_index(weight_name, prefix):
    match = re.match(rf"^{re.escape(prefix)}(\d+)(?:\.|$)", weight_name)
    return int(match.group(1)) if match else None

def get_moe_index(weight_name, prefix, moe_prefix):
    if not weight_name.startswith(prefix):
        return None
    match = re.match(rf"^({re.escape(prefix)}\d+{re.escape(moe_prefix)})(\d+)(?:\.|$)", weight_name)
    return int(match.group(2)) if match else None

def get_layer_prefix(weight_name, prefix):
    if match := re.match(rf"^({re.escape(prefix)}\d+)", weight_name):
        return match.group(1)
    raise ValueError(weight_name)

def get_moe_prefix(weight_name, prefix, moe_prefix):
    if match := re.match(rf"^({re.escape(prefix)}\d+{re.escape(moe_prefix)}\d+)", weight_name):
        return match.group(1)
    if match := re.match(rf"^({re.escape(prefix)}\d+{re.escape(moe_prefix)})", weight_name):
        return match.group(1)
    raise ValueError(weight_name)

def get_weight_prefix(weight_name, prefix, moe_prefix=None):
    if not weight_name.startswith(prefix):
        return ""
    if moe_prefix is not None and moe_prefix in weight_name:
        return get_moe_prefix(weight_name, prefix, moe_prefix)
    return get_layer_prefix(weight_name, prefix)

def remove_weight_prefix(weight_name, prefix, moe_prefix=None):
    return weight_name.removeprefix(get_weight_prefix(weight_name, prefix, moe_prefix))

def remove_mca_weight_prefix(weight_name):
    if weight_name.startswith(MCA_MTP_PREFIX):
        return remove_weight_prefix(weight_name, MCA_MTP_PREFIX, MCA_MTP_MOE_PREFIX).replace(".mtp_model_layer", "")
    return remove_weight_prefix(weight_name, MCA_LAYER_PREFIX, MCA_MOE_PREFIX)

def get_mca_layer_index(weight_name):
    if weight_name.startswith(MCA_MTP_PREFIX):
        return get_layer_index(weight_name, MCA_MTP_PREFIX)
    return get_layer_index(weight_name, MCA_LAYER_PREFIX)

def get_mca_moe_index(weight_name):
    if weight_name.startswith(MCA_MTP_PREFIX):
        return get_moe_index(weight_name, MCA_MTP_PREFIX, MCA_MTP_MOE_PREFIX)
    return get_moe_index(weight_name, MCA_LAYER_PREFIX, MCA_MOE_PREFIX)

def add_layer_prefix(weight_name, layer_index, prefix, moe_index=None, moe_prefix=None):
    if not weight_name.startswith("."):
        return weight_name
    if moe_index is not None and moe_prefix is not None:
        return f"{prefix}{layer_index}{moe_prefix}{moe_index}" + weight_name
    return f"{prefix}{layer_index}" + weight_name

def add_mca_mtp_layer_prefix(weight_name, layer_index, moe_index=None):
    if not weight_name.startswith("."):
        return weight_name
    if moe_index is not None:
        weight_name = add_layer_prefix(weight_name, moe_index, MCA_MTP_MOE_PREFIX)
    has_transformer_layer = ".mtp_model_layer" not in weight_name and (
        "self_attention" in weight_name or "mlp" in weight_name or "input_layernorm" in weight_name
    )
    return MCA_MTP_PREFIX + str(layer_index) + (".mtp_model_layer" if has_transformer_layer else "") + weight_name

def mca_name(name):
    try:
        pure = remove_mca_weight_prefix(name)
    except ValueError:
        return "error"
    layer, moe = get_mca_layer_index(name), get_mca_moe_index(name)
    if name.startswith(MCA_MTP_PREFIX):
        back = add_mca_mtp_layer_prefix(pure, layer, moe)
    else:
        back = add_layer_prefix(pure, layer, MCA_LAYER_PREFIX, moe, MCA_MOE_PREFIX)
    return [layer, moe, pure, back]

def prefix(key, rules):
    for p, unless in rules:
        if not any(fnmatchcase(key, u) for u in unless):
            return p + key
    return key

out = []
for c in json.load(sys.stdin):
    k = c["kind"]
    if k == "glob":
        out.append(fnmatchcase(c["name"], c.get("pat", "")))
    elif k == "lookup":
        out.append(get_conver_op(c["name"], c.get("keys", [])))
    elif k == "pure":
        out.append(pure(c["name"]))
    elif k == "classify":
        out.append(classify(c["name"], c.get("lists", {}), c.get("grouped", False), c.get("swiglu", False)))
    elif k == "matched":
        out.append(matched(c["name"], dict(c.get("map", []))))
    elif k == "mcaname":
        out.append(mca_name(c["name"]))
    elif k == "format":
        out.append(to_names(c["pat"], c["name"], c["keys"]))
    elif k == "prefix":
        out.append(prefix(c["name"], c.get("rules", [])))
json.dump(out, sys.stdout)
`

// tcase is one name/pattern case; Kind selects the rule.
type tcase struct {
	Kind    string              `json:"kind"`
	Name    string              `json:"name"`
	Pat     string              `json:"pat"`
	Keys    []string            `json:"keys,omitempty"`
	Lists   map[string][]string `json:"lists,omitempty"`
	Grouped bool                `json:"grouped,omitempty"`
	Swiglu  bool                `json:"swiglu,omitempty"`
	Map     [][2]string         `json:"map,omitempty"`
	Rules   [][2]any            `json:"rules,omitempty"`
}

// runOracle returns Python's answers for cases, skipping the test when
// python3 is absent unless CI is set (the rule of internal/torchtest).
func runOracle(t *testing.T, cases []tcase) []any {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and %s is missing: %v", python, err)
		}
		t.Skipf("%s is missing (%v); set CI to make this a failure", python, err)
	}
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-c", oracle)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python oracle: %v\n%s", err, stderr.String())
	}
	var res []any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("python oracle output: %v\n%s", err, out)
	}
	if len(res) != len(cases) {
		t.Fatalf("python oracle answered %d cases of %d", len(res), len(cases))
	}
	return res
}

var classKeys = map[string]Class{}

func init() {
	for _, c := range Classes {
		classKeys[c.Key()] = c
	}
}

// goAnswer computes a case with this package, in the oracle's JSON shape.
func goAnswer(c tcase) any {
	switch c.Kind {
	case "glob":
		return Fnmatch(c.Name, c.Pat)
	case "lookup":
		if k, ok := NewOpTable(c.Keys).Lookup(c.Name); ok {
			return k
		}
		return nil
	case "pure":
		return PureName(c.Name)
	case "classify":
		lists := ClassLists{}
		for k, v := range c.Lists {
			lists[classKeys[k]] = v
		}
		return NewClassifier(lists).Classify(c.Name, c.Grouped, c.Swiglu).Key()
	case "matched":
		var m []MapEntry
		for _, e := range c.Map {
			m = append(m, MapEntry{e[0], e[1]})
		}
		if v, ok := MatchedName(c.Name, m); ok {
			return v
		}
		return nil
	case "mcaname":
		n, err := ParseMCAName(c.Name)
		if err != nil {
			return "error"
		}
		idx := func(i int) any {
			if i < 0 {
				return nil
			}
			return i
		}
		return []any{idx(n.Layer), idx(n.Expert), n.Pure, AddMCAPrefix(n.Pure, n.MTP, n.Layer, n.Expert)}
	case "format":
		re, err := OpNameRegexp(c.Pat, false)
		if err != nil {
			return err.Error()
		}
		var captures []string
		if m := re.FindStringSubmatch(c.Name); m != nil {
			captures = m[1:]
		}
		names, err := FormatNames(c.Keys, captures)
		if err != nil {
			return nil
		}
		return names
	case "prefix":
		var rules []PrefixRule
		for _, r := range c.Rules {
			unless := append([]string(nil), r[1].([]string)...)
			rules = append(rules, PrefixRule{Prefix: r[0].(string), Unless: unless})
		}
		return PrefixKey(c.Name, rules)
	}
	panic("unknown kind " + c.Kind)
}

func glob(pat, name string) tcase { return tcase{Kind: "glob", Pat: pat, Name: name} }

func mcaName(name string) tcase { return tcase{Kind: "mcaname", Name: name} }

func lookup(name string, keys ...string) tcase {
	return tcase{Kind: "lookup", Name: name, Keys: keys}
}

// defaultLists is a cut of ROLL's default_dist_config plus a grouped map
// and globs.
var defaultLists = map[string][]string{
	"duplicated":     {".self_attention.linear_qkv.layer_norm_weight", ".input_layernorm.weight", "decoder.final_layernorm.weight", "vision_model.*", ".mlp.router.*"},
	"column":         {".self_attention.linear_qkv.weight", ".mlp.linear_fc1.weight", "embedding.word_embeddings.weight", "output_layer.weight", ".linear_[!z]*.lora_B.weight"},
	"row":            {".self_attention.linear_proj.weight", ".mlp.linear_fc2.weight", ".linear_**.lora_A.weight"},
	"swiglu":         {".mlp.linear_fc1.weight", ".mlp.shared_experts.linear_fc1.weight"},
	"gdn":            {".self_attention.in_proj.weight", ".self_attention.conv1d.*"},
	"grouped_column": {".linear_fc1.weight", ".mlp.experts.linear_fc1.weight"},
	"grouped_row":    {".linear_fc2.weight", ".mlp.experts.linear_fc2.weight"},
}

func classify(name string, grouped, swiglu bool) tcase {
	return tcase{Kind: "classify", Name: name, Lists: defaultLists, Grouped: grouped, Swiglu: swiglu}
}

// namingCases are the table: globs, op lookup keys with {} and
// alternation, pure names, classification, grouped-name matching and key
// prefixing.
func namingCases() []tcase {
	vision := [][2]any{{"text_config.", []string{"*_token_id", "vision_config", "tie_word_embeddings"}}}
	omni := [][2]any{
		{"thinker_config.text_config.", []string{"vision_*", "[!a-m]*_token_id", "audio_config"}},
		{"thinker_config.", []string{}},
	}
	lora := [][2]string{{".mlp.experts.linear_fc1.weight", ".linear_fc1.weight"}, {".mlp.experts.linear_fc1.lora_*", ".linear_fc1.lora_A.weight"}}
	return []tcase{
		// globs: stars cross dots and slashes, ** is *, ? is one character
		glob("vision_model.*", "vision_model.blocks.0.attn.qkv.weight"),
		glob("vision_model.*", "xvision_model.a"),
		glob("vision_model.*", "vision_model."),
		glob("*_token_id", "image_token_id"),
		glob("*_token_id", "image_token_id2"),
		glob("a*", "a.b/c\nd"),
		glob("a**b", "a.x.b"),
		glob("a**b", "ab"),
		glob("**", ""),
		glob("*.*", "a"),
		glob("*.weight", ".mlp.linear_fc1.weight"),
		glob("a?c", "abc"),
		glob("a?c", "ac"),
		glob("a?c", "a/c"),
		glob("?", "é"),
		// classes: [seq], [!seq], ranges, empty ranges, ] first
		glob("[!x]b", "ab"),
		glob("[!x]b", "xb"),
		glob("[!a]", "!"),
		glob("[!a]", "a"),
		glob("[^a]", "^"),
		glob("[^a]", "b"),
		glob("[a-c]x", "bx"),
		glob("[a-c]x", "dx"),
		glob("[z-a]", "m"),
		glob("[z-a]", "z"),
		glob("[!z-a]", "m"),
		glob("[a-]", "-"),
		glob("[-a]", "-"),
		glob("[!-a]", "b"),
		glob("a[]]", "a]"),
		glob("a[!]]", "ab"),
		glob("a[!]]", "a]"),
		glob("[]-a]", "_"),
		glob("[a--0]", "+"),
		glob("[&&b]", "&"),
		glob("[|]", "|"),
		glob("[[:alpha:]]", "a"),
		glob("[[:alpha:]]", ":]"),
		// "[" without "]" is literal; there is no escape character
		glob("[a", "[a"),
		glob("a[", "a["),
		glob("[!", "[!"),
		glob("a[[]b", "a[b"),
		glob("a[*]b", "a*b"),
		glob("a[*]b", "axb"),
		glob(`a\*b`, `a\xb`),
		glob(`a\*b`, "a*b"),
		glob(`[\]`, `\`),
		glob(`[\-z]`, "y"),
		glob("x.+", "x.+"),
		glob("x.+", "x.y"),
		glob("(a|b)", "(a|b)"),
		glob("(a|b)", "a"),
		glob("$^", "$^"),
		glob(".mlp.linear_fc1.weight", ".mlp.linear_fc1.weight2"),
		// op lookup (get_conver_op): exact first, then the first key
		// matching at the start, dots unescaped, {} lazy
		lookup(".mlp.down_proj.weight", ".mlp.{}", ".mlp.down_proj.weight"),
		lookup(".mlp.up_proj.weight", ".mlp.{}", ".mlp.down_proj.weight"),
		lookup("model.norm.weight", "model.{}", "model.norm.{}"),
		lookup("xmodel.norm.weight", "model.{}"),
		lookup(".self_attn.q_proj.weight_scale_inv", ".self_attn.q_proj.weight"),
		lookup("a_b", "a.b"),
		lookup("x.b", "a.{}|b"),
		lookup("b.x", "a.{}|b"),
		lookup("a.y", "a.{}|b"),
		lookup("xb", "a|.b"),
		lookup("visual.blocks.0.attn.qkv.weight", "model.{}", "visual.{}.qkv.weight", "visual.{}"),
		lookup("visual.merger.mlp.0.weight", "visual.{}.qkv.weight", "visual.{}"),
		lookup("lm_head.weight", "model.embed_tokens.weight"),
		lookup("a{}b", "a{}b"),
		lookup("a[0]b", "a[0]b", "a{}"),
		lookup("a0b", "a[0]b"),
		// pure names: the .bias rule
		{Kind: "pure", Name: ".self_attention.linear_qkv.bias"},
		{Kind: "pure", Name: ".bias_proj.bias"},
		{Kind: "pure", Name: ".bias_proj.weight"},
		{Kind: "pure", Name: ".mlp.router.expert_bias"},
		{Kind: "pure", Name: "bias"},
		// classification in dist_convert's order
		classify(".self_attention.linear_qkv.bias", false, true),
		classify(".self_attention.linear_qkv.weight", false, true),
		classify(".mlp.linear_fc1.weight", false, true),
		classify(".mlp.linear_fc1.weight", false, false),
		classify(".mlp.linear_fc1.bias", false, true),
		classify(".linear_fc1.weight", true, true),
		classify(".linear_fc1.weight", false, true),
		classify(".mlp.experts.linear_fc2.weight", true, false),
		classify("vision_model.blocks.0.norm1.bias", false, false),
		classify(".mlp.router.expert_bias", false, false),
		classify(".mlp.router.bias", false, false),
		classify(".self_attention.conv1d.bias", false, false),
		classify(".linear_q.lora_B.weight", false, false),
		classify(".linear_z.lora_B.weight", false, false),
		classify(".linear_proj.lora_A.weight", false, false),
		classify(".self_attention.linear_proj.bias", false, false),
		classify(".unknown.weight", true, true),
		// get_matched_name on grouped names
		{Kind: "matched", Name: ".mlp.experts.linear_fc1.weight", Map: lora},
		{Kind: "matched", Name: ".mlp.experts.linear_fc1.lora_B.weight", Map: lora},
		{Kind: "matched", Name: ".mlp.experts.linear_fc2.weight", Map: lora},
		// MCA names: layer, expert, pure name (remove_mca_weight_prefix)
		// and the name rebuilt from them
		mcaName("decoder.layers.3.self_attention.linear_qkv.weight"),
		mcaName("decoder.layers.12.mlp.experts.local_experts.7.linear_fc1.weight"),
		mcaName("decoder.layers.0.mlp.experts.linear_fc1.weight0"),
		mcaName("decoder.layers.1.mlp.experts.local_experts.linear_fc2.weight"),
		mcaName("decoder.layers.2x.input_layernorm.weight"),
		mcaName("decoder.layers.x.weight"),
		mcaName("decoder.layers.4.self_attention.mlp.experts.local_experts.1x.w"),
		mcaName("decoder.final_layernorm.weight"),
		mcaName("embedding.word_embeddings.weight"),
		mcaName("mtp.layers.0.enorm.weight"),
		mcaName("mtp.layers.0.mtp_model_layer.self_attention.linear_qkv.weight"),
		mcaName("mtp.layers.1.mtp_model_layer.mlp.experts.local_experts.5.linear_fc1.weight"),
		mcaName("mtp.layers.0.mtp_model_layer.input_layernorm.weight"),
		// ConverOp name patterns: "{}" greedy, dots escaped, captures
		// formatted into the targets
		{Kind: "format", Pat: "visual.{}", Name: "visual.blocks.0.attn.qkv.weight", Keys: []string{"vision_model.{}"}},
		{Kind: "format", Pat: ".experts.{}.weight", Name: ".experts.3.weight", Keys: []string{".local_experts.{}.fc1.weight", ".x.{}"}},
		{Kind: "format", Pat: "model.{}", Name: "xmodel.norm", Keys: []string{"decoder.{}"}},
		{Kind: "format", Pat: "a.{}", Name: "a_b", Keys: []string{"c.{}"}},
		{Kind: "format", Pat: "a.{}", Name: "a.b", Keys: []string{"c.{}.{}"}},
		// key prefixing
		{Kind: "prefix", Name: "hidden_size", Rules: vision},
		{Kind: "prefix", Name: "image_token_id", Rules: vision},
		{Kind: "prefix", Name: "vision_config", Rules: vision},
		{Kind: "prefix", Name: "vision_config.depth", Rules: vision},
		{Kind: "prefix", Name: "audio_token_id", Rules: omni},
		{Kind: "prefix", Name: "video_token_id", Rules: omni},
		{Kind: "prefix", Name: "vision_start_token_id", Rules: omni},
		{Kind: "prefix", Name: "audio_config", Rules: omni},
	}
}

// TestNamingRulesAgainstPython checks every case of the table against
// Python's fnmatch and the Python re-statement of ROLL's rules.
func TestNamingRulesAgainstPython(t *testing.T) {
	cases := namingCases()
	if len(cases) < 60 {
		t.Fatalf("the table has %d cases; want at least 60", len(cases))
	}
	want := runOracle(t, cases)
	var got []any
	for _, c := range cases {
		got = append(got, goAnswer(c))
	}
	// JSON round trip so both sides have the same dynamic types.
	b, _ := json.Marshal(got)
	var gotJSON []any
	if err := json.Unmarshal(b, &gotJSON); err != nil {
		t.Fatal(err)
	}
	for i := range cases {
		if d := cmp.Diff(want[i], gotJSON[i]); d != "" {
			c, _ := json.Marshal(cases[i])
			t.Errorf("case %d %s (-python +go):\n%s", i, c, d)
		}
	}
}

// TestGlobRandomAgainstPython compares Translate with fnmatchcase on
// random patterns and names over the characters globs treat specially.
func TestGlobRandomAgainstPython(t *testing.T) {
	rng := rand.New(rand.NewSource(10))
	const alphabet = "ab.-!^]*?[[\\&|é"
	runes := []rune(alphabet)
	word := func(max int) string {
		var b strings.Builder
		for n := rng.Intn(max + 1); n > 0; n-- {
			b.WriteRune(runes[rng.Intn(len(runes))])
		}
		return b.String()
	}
	var cases []tcase
	for len(cases) < 3000 {
		pat := word(7)
		name := word(5)
		if rng.Intn(3) == 0 {
			// names built from the pattern's literal characters match more
			name = strings.NewReplacer("*", "", "?", "a", "[", "", "!", "").Replace(pat)
		}
		cases = append(cases, glob(pat, name))
	}
	want := runOracle(t, cases)
	bad, trues := 0, 0
	defer func() { t.Logf("%d of %d random cases match", trues, len(cases)) }()
	for i, c := range cases {
		if want[i] == true {
			trues++
		}
		if got := Fnmatch(c.Name, c.Pat); got != want[i] {
			t.Errorf("fnmatchcase(%q, %q) = %v, Go %v (regexp %s)", c.Name, c.Pat, want[i], got, Translate(c.Pat))
			if bad++; bad > 20 {
				t.FailNow()
			}
		}
	}
}

// TestLookupKeyRE2 checks that a key RE2 cannot compile is an error that
// names it and matches nothing, without a panic.
func TestLookupKeyRE2(t *testing.T) {
	_, err := LookupRegexp("a(?=b)")
	if err == nil || !strings.Contains(err.Error(), `"a(?=b)"`) {
		t.Fatalf("err = %v, want an error naming the key", err)
	}
	if k, ok := NewOpTable([]string{"a(?=b)", "a{}"}).Lookup("ab"); !ok || k != "a{}" {
		t.Fatalf("lookup = %q, %v; want the next key", k, ok)
	}
}

// TestGlobCacheBounded checks that the cache empties itself instead of
// growing past maxCached.
func TestGlobCacheBounded(t *testing.T) {
	for i := 0; i < maxCached+10; i++ {
		if !Fnmatch(fmt.Sprintf("n%d", i), fmt.Sprintf("n%d*", i)) {
			t.Fatal("no match")
		}
	}
	globCache.Lock()
	n := len(globCache.m)
	globCache.Unlock()
	if n > maxCached {
		t.Fatalf("cache holds %d globs, bound %d", n, maxCached)
	}
}

// FuzzTranslate checks that every pattern translates to a regexp RE2
// compiles (Python's translate never fails, so neither may ours) and that
// a pattern without metacharacters matches exactly itself.
func FuzzTranslate(f *testing.F) {
	for _, c := range namingCases() {
		if c.Kind == "glob" {
			f.Add(c.Pat, c.Name)
		}
	}
	f.Fuzz(func(t *testing.T, pat, name string) {
		if _, err := regexp.Compile(Translate(pat)); err != nil {
			t.Fatalf("Translate(%q) = %s: %v", pat, Translate(pat), err)
		}
		got := Fnmatch(name, pat)
		if !strings.ContainsAny(pat, "*?[") && got != (name == pat) {
			t.Fatalf("Fnmatch(%q, %q) = %v for a literal pattern", name, pat, got)
		}
	})
}
