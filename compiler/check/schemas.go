package check

import "github.com/rolltpl/rolltpl/compiler/ir"

// skippable reports whether a config.json may lack the HF key of e when
// the template's schema does not declare it (a user's schema inferred
// from one config, or a key of another transformers generation such as
// rope_parameters in a v4 config): ROLL skips a missing HF key and leaves
// the MCA key at its default, which is harmless unless the runtime needs
// the MCA key (ir.MCARule.Required: num_layers, hidden_size, ...).
func skippable(e ir.ConfigEntry) bool {
	r, ok := ir.MCARuleFor(e.MCA)
	return !ok || !r.Required
}
