package exec

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/ops"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestCompareRoundTripChunks: the comparer checks a lossy tensor against
// its round trip whatever the sizes of the writes, elements split across
// two included, and counts every element once; a changed byte is found
// at its offset.
func TestCompareRoundTripChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n = 1001
	orig := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint16(orig[2*i:], uint16(r.UintN(0x7F80))|uint16(r.UintN(2))<<15)
	}
	path := filepath.Join(t.TempDir(), "orig")
	if err := os.WriteFile(path, append([]byte("head"), orig...), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x, _ := tensor.New(tensor.BF16, tensor.Shape{n}, orig)
	rt, err := ops.RoundTrip(ops.KindZeroCenteredRMSNorm, x, ops.Config{})
	if err != nil {
		t.Fatal(err)
	}
	want := rt.Bytes()
	changed, ulp := ops.ULPDiff(tensor.BF16, orig, want)
	if changed == 0 {
		t.Fatal("the round trip changes nothing")
	}
	for _, chunk := range []int{1, 3, 2, 7, 2 * n} {
		for _, flip := range []int{-1, 0, 777, 2*n - 1} {
			got := append([]byte(nil), want...)
			if flip >= 0 {
				got[flip] ^= 0x80
			}
			c := &comparer{f: f, off: 4, diffAt: -1, size: 2 * n,
				cur: &LossyTensor{Kind: ops.KindZeroCenteredRMSNorm, DType: tensor.BF16}}
			for p := got; len(p) > 0; {
				k := min(chunk, len(p))
				if _, err := c.Write(p[:k]); err != nil {
					t.Fatal(err)
				}
				p = p[k:]
			}
			if c.lossyErr != nil {
				t.Fatal(c.lossyErr)
			}
			if c.diffAt != int64(flip) {
				t.Errorf("chunk %d, flip %d: difference found at %d", chunk, flip, c.diffAt)
			}
			if flip < 0 && (c.cur.Changed != changed || c.cur.MaxULP != ulp) {
				t.Errorf("chunk %d: %d changed, %d ulp; want %d, %d", chunk, c.cur.Changed, c.cur.MaxULP, changed, ulp)
			}
		}
	}
}
