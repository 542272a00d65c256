package safetensors

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// mappingRSS returns the resident size in bytes of the mapping that
// contains p, from /proc/self/smaps.
func mappingRSS(t *testing.T, p []byte) int64 {
	t.Helper()
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 { // a mapping's first line: "lo-hi perms offset dev inode path"
			in = lo <= addr && addr < hi
			continue
		}
		var kb int64
		if in && strings.HasPrefix(line, "Rss:") {
			if _, err := fmt.Sscanf(line, "Rss: %d kB", &kb); err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("mapping of %#x not found in smaps", addr)
	return 0
}

// TestRelease checks that Release drops a tensor's pages from the resident
// set and that the data stays readable afterwards.
func TestRelease(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	specs := []Spec{
		{"head", tensor.U8, tensor.Shape{100}},
		{"big", tensor.BF16, tensor.Shape{16 * mib}}, // 32 MiB
		{"tail", tensor.U8, tensor.Shape{100}},
	}
	path := filepath.Join(t.TempDir(), "r.safetensors")
	writeSample(t, path, specs, nil)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	big, _ := f.Lookup("big")
	data := f.Data(big)
	sum := 0
	for i := 0; i < len(data); i += 4096 {
		sum += int(data[i])
	}
	touched := mappingRSS(t, data)
	if touched < 30*mib {
		t.Skipf("only %d bytes resident after touching 32 MiB; cannot measure", touched)
	}
	if err := f.Release(big); err != nil {
		t.Fatal(err)
	}
	released := mappingRSS(t, data)
	if released > touched-30*mib {
		t.Errorf("RSS of the mapping %d bytes after Release, %d before: want at least 30 MiB less", released, touched)
	}
	want, _ := sample(tensor.BF16, 16*mib)
	if string(want) != string(f.Data(big)) {
		t.Error("data changed after Release")
	}
	head, _ := f.Lookup("head")
	if err := f.Release(head); err != nil { // smaller than a page: nothing to do
		t.Error(err)
	}
	t.Logf("mapping RSS: %d MiB touched, %d MiB after Release", touched/mib, released/mib)
	if sum < 0 {
		t.Log(sum) // keep the loads that fault the pages in
	}
}
