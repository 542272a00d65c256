package cli

import (
	"fmt"
	"math"
	"math/big"
	"strings"
)

// sizeUnits are the units parseSize accepts, longest suffix first:
// decimal as transformers' max_shard_size ("5GB"), binary with "iB".
var sizeUnits = []struct {
	suffix string
	mul    int64
}{{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}

// sizeHelp describes the accepted sizes, for error messages.
const sizeHelp = "want a whole number of bytes, or a decimal number with a unit (KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. 5GB or 1.5GiB"

// parseSize parses a size such as 5GB, 500MB, 2.5GiB or a byte count. The
// number is plain decimal digits with an optional fraction (no sign,
// exponent, hex, NaN or Inf); the unit is case-insensitive. The size is
// computed exactly and must be a whole number of bytes, at least 1 and at
// most math.MaxInt64: "0.5" or "0.9B" (a fraction of a byte) is an error,
// "0.5KB" is 500 bytes.
func parseSize(s string) (int64, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	var mul int64 = 1
	for _, unit := range sizeUnits {
		if strings.HasSuffix(u, unit.suffix) {
			u, mul = strings.TrimSpace(strings.TrimSuffix(u, unit.suffix)), unit.mul
			break
		}
	}
	if strings.HasPrefix(u, "-") {
		return 0, fmt.Errorf("%q is negative: a size must be at least 1 byte", s)
	}
	whole, frac, hasFrac := strings.Cut(u, ".")
	if !digits(whole) || hasFrac && !digits(frac) || len(u) > 40 {
		return 0, fmt.Errorf("%q is not a size: %s", s, sizeHelp)
	}
	// (whole.frac × mul) as the fraction (whole·10^len(frac) + frac) × mul / 10^len(frac).
	num, ok := new(big.Int).SetString(whole+frac, 10)
	if !ok {
		return 0, fmt.Errorf("%q is not a size: %s", s, sizeHelp)
	}
	num.Mul(num, big.NewInt(mul))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	switch {
	case r.Sign() != 0:
		return 0, fmt.Errorf("%q is %s bytes, not a whole number of bytes", s, new(big.Rat).SetFrac(num, den).FloatString(len(frac)))
	case q.Sign() == 0:
		return 0, fmt.Errorf("%q is 0 bytes: a size must be at least 1 byte", s)
	case !q.IsInt64():
		return 0, fmt.Errorf("%q is too large (at most %d bytes)", s, int64(math.MaxInt64))
	}
	return q.Int64(), nil
}

// digits reports whether s is one or more ASCII decimal digits.
func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
