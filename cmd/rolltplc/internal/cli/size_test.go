package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSize(t *testing.T) {
	type result struct {
		N   int64
		Err string // a substring of the error; "" for none
	}
	for _, tc := range []struct {
		in   string
		want result
	}{
		{"5GB", result{N: 5e9}},
		{"500mb", result{N: 5e8}},
		{"1GiB", result{N: 1 << 30}},
		{"1024", result{N: 1024}},
		{"2.5 GB", result{N: 2.5e9}},
		{"1.5GiB", result{N: 3 << 29}},
		{"0.5KB", result{N: 500}},
		{"7B", result{N: 7}},
		{"1", result{N: 1}},
		{" 20KB ", result{N: 20000}},
		{"9223372036854775807", result{N: 1<<63 - 1}},
		// Not a number of bytes at all.
		{"NaN", result{Err: `"NaN" is not a size`}},
		{"Inf", result{Err: `"Inf" is not a size`}},
		{"+Inf", result{Err: `"+Inf" is not a size`}},
		{"1e400", result{Err: `"1e400" is not a size`}},
		{"1e9", result{Err: `"1e9" is not a size`}},
		{"0x10", result{Err: `"0x10" is not a size`}},
		{"", result{Err: `"" is not a size`}},
		{"GB", result{Err: `"GB" is not a size`}},
		{".5GB", result{Err: `".5GB" is not a size`}},
		{"5.GB", result{Err: `"5.GB" is not a size`}},
		{"1_000", result{Err: `"1_000" is not a size`}},
		{"5 PB", result{Err: `"5 PB" is not a size`}},
		{"x", result{Err: `"x" is not a size`}},
		// Fractions of a byte.
		{"0.5", result{Err: `"0.5" is 0.5 bytes, not a whole number`}},
		{"0.9B", result{Err: `"0.9B" is 0.9 bytes, not a whole number`}},
		{"0.3KiB", result{Err: `"0.3KiB" is 307.2 bytes, not a whole number`}},
		// Not positive, or too large.
		{"-1", result{Err: `"-1" is negative`}},
		{"-1GB", result{Err: `"-1GB" is negative`}},
		{"0", result{Err: `"0" is 0 bytes`}},
		{"0.0GB", result{Err: `"0.0GB" is 0 bytes`}},
		{"9223372036854775808", result{Err: "is too large"}},
		{"10000000TB", result{Err: "is too large"}},
		{strings.Repeat("9", 100), result{Err: "is not a size"}},
	} {
		n, err := parseSize(tc.in)
		got := result{N: n}
		if err != nil {
			got = result{Err: tc.want.Err}
			if !strings.Contains(err.Error(), tc.want.Err) || tc.want.Err == "" {
				got.Err = err.Error()
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("parseSize(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}
