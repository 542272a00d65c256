package exec

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/fp8"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestDequantizeAll: the concurrent runs give the bytes of one run, and
// the error names the first bad element.
func TestDequantizeAll(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	shape := tensor.Shape{1000, 3000} // 3 MB of codes: 2 or more runs
	l := fp8.NewLayout(shape, [2]int64{128, 128})
	codes := make([]byte, shape.NumElements())
	for i := range codes {
		codes[i] = byte(i*31) & 0x7E
	}
	scales := make([]float32, l.GM*l.GN)
	for i := range scales {
		scales[i] = float32(i+1) / 1024
	}
	one := make([]byte, 2*len(codes))
	if err := l.Dequantize("w", one, tensor.BF16, codes, 0, scales); err != nil {
		t.Fatal(err)
	}
	all := make([]byte, 2*len(codes))
	if err := dequantizeAll(l, "w", all, tensor.BF16, codes, 0, scales); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one, all) {
		t.Fatal("concurrent dequantization differs")
	}
	// A run starting mid-weight (a block of the dequantize command).
	part := make([]byte, 2*(2_000_000-700_001))
	if err := dequantizeAll(l, "w", part, tensor.BF16, codes[700_001:2_000_000], 700_001, scales); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(part, one[2*700_001:2*2_000_000]) {
		t.Fatal("concurrent dequantization of a run differs")
	}
	codes[2_900_000], codes[2_000_001] = 0xFF, 0x7F
	err := dequantizeAll(l, "w", all, tensor.BF16, codes, 0, scales)
	if err == nil || !strings.Contains(err.Error(), "NaN code 0x7F at [666, 2001]") {
		t.Errorf("error %v, want the first NaN (0x7F at [666, 2001])", err)
	}
}
