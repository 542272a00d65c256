package exec

import (
	"bytes"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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

// TestDeqCache: concurrent users of a weight share one decoding; unused
// weights beyond the budget are evicted, used ones never.
func TestDeqCache(t *testing.T) {
	var c deqCache
	var fills atomic.Int32
	fill := func(b []byte) error { fills.Add(1); b[0] = 7; return nil }
	var wg sync.WaitGroup
	var mu sync.Mutex
	var releases []func()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, rel, err := c.get(1, 1<<20, fill)
			if err != nil || b[0] != 7 {
				t.Errorf("get: %v, %d", err, b[0])
			}
			mu.Lock()
			releases = append(releases, rel)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if fills.Load() != 1 {
		t.Errorf("%d fills for one weight", fills.Load())
	}
	for _, r := range releases {
		r()
	}
	if c.idle != 1<<20 || len(c.entries) != 1 {
		t.Errorf("idle %d, %d entries after release", c.idle, len(c.entries))
	}
	// Fill past the budget: the least recently used go, the held one stays.
	_, hold, _ := c.get(2, 64<<20, fill)
	for i := 3; i < 3+8; i++ {
		_, rel, _ := c.get(i, 64<<20, fill)
		rel()
	}
	if c.idle > deqBudget {
		t.Errorf("idle %d beyond the budget", c.idle)
	}
	if _, ok := c.entries[2]; !ok {
		t.Errorf("a weight in use was evicted")
	}
	if _, ok := c.entries[1]; ok {
		t.Errorf("the least recently used weight was kept")
	}
	hold()
	c.free()
	if len(c.entries) != 0 || c.idle != 0 {
		t.Errorf("free left %d entries, %d idle bytes", len(c.entries), c.idle)
	}
}
