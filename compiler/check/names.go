package check

import (
	"github.com/rolltpl/rolltpl/compiler/ir"
	"github.com/rolltpl/rolltpl/compiler/rollname"
	"github.com/rolltpl/rolltpl/lang/diag"
)

// nameRegexps reports an op name that ROLL reads as a regular expression
// (its op lookup, rollname.LookupRegexp, and its gathering,
// rollname.OpNameRegexp) but that does not compile: Python rejects it
// too, or it uses Python syntax RE2 lacks (look-arounds,
// back-references), where ROLL and the runtime would match differently.
func (c *checker) nameRegexps(t *ir.Template, op *ir.Op) {
	seen := map[string]bool{}
	for _, mode := range templateModes(t) {
		hf, mca := op.Resolved(mode)
		for _, n := range append(append([]string(nil), hf...), mca...) {
			if seen[n] {
				continue
			}
			seen[n] = true
			_, err := rollname.LookupRegexp(n)
			if err == nil {
				_, err = rollname.OpNameRegexp(n, true)
			}
			if err != nil {
				c.add(diag.Errorf(op.Span, diag.NameRegexp, "Op name is not a usable regular expression",
					"ROLL matches op names as Python regular expressions (\".\" any character, \"{}\" a wildcard); %v. Use plain name characters.", err))
				return
			}
		}
	}
}
