# Part of _rolltpl_support.py (compiler/pyemit/support.go): the template
# class of a template with its own HF config key-prefix rules. Uses ROLL's
# Template, which the module imports when a template needs this.

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
