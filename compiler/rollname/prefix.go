package rollname

// PrefixRule is one HF config key-prefix rule (ROLL's VisionTemplate and
// Qwen3OmniMoeTemplate adjust_config_hf_to_mca): every key none of whose
// Unless globs matches gets Prefix.
type PrefixRule struct {
	Prefix string
	Unless []string
}

// PrefixKey applies key-prefix rules to an HF config key: the first rule
// none of whose Unless globs (fnmatch, whole key) matches the key
// prefixes it; with no such rule the key is unchanged.
func PrefixKey(key string, rules []PrefixRule) string {
	for _, r := range rules {
		if !anyFnmatch(key, r.Unless) {
			return r.Prefix + key
		}
	}
	return key
}

// anyFnmatch is any(fnmatchcase(key, p) for p in patterns).
func anyFnmatch(key string, patterns []string) bool {
	for _, p := range patterns {
		if Fnmatch(key, p) {
			return true
		}
	}
	return false
}
