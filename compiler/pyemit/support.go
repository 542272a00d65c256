package pyemit

import (
	"embed"
	"strings"
)

// The support module's Python code lives in support/*.py, embedded here;
// emitSupport writes the module's docstring and imports and then the
// parts the built templates need, each after the two blank lines that
// separate top-level definitions:
//
//   - base.py: is_megatron_llama and register_dist_config (always);
//   - steps.py: the helpers of ops with tensor steps;
//   - key_prefix.py: key_prefix_template, for custom key-prefix rules;
//   - generated.py: the helpers of generated template classes (after
//     ir.PythonPrelude);
//   - mtp.py: mtp_template, for templates with MTP layers.
//
// A file's leading comment lines and the blank line after them document
// the file and are not emitted. The names a part uses from the module's
// imports (torch, StackedTensors, contextmanager, Template,
// dist_converter) are imported by emitSupport; TestSupportFiles checks
// that each file compiles and uses no other undefined name.
//
//go:embed support/*.py
var supportFiles embed.FS

// supportPart returns the code of support/<name>.py without its leading
// comment, preceded by two blank lines.
func supportPart(name string) string {
	src, err := supportFiles.ReadFile("support/" + name + ".py")
	if err != nil {
		panic("pyemit: support file " + name + ".py is not embedded: " + err.Error())
	}
	return "\n\n" + stripLeadingComment(string(src))
}

// stripLeadingComment removes s's leading lines starting with "#" and one
// blank line after them.
func stripLeadingComment(s string) string {
	rest := s
	for strings.HasPrefix(rest, "#") {
		_, after, ok := strings.Cut(rest, "\n")
		if !ok {
			return ""
		}
		rest = after
	}
	if len(rest) < len(s) {
		rest = strings.TrimPrefix(rest, "\n")
	}
	return rest
}
