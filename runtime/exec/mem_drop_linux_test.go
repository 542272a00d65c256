package exec

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// touched sums the bytes mapTouched reads, so that the reads happen.
var touched byte

// mapTouched maps a new file of n bytes read-only and shared, as the
// readers map their inputs, reads every page and returns the mapping.
func mapTouched(t *testing.T, n int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "input")
	if err := os.WriteFile(path, make([]byte, n), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := syscall.Mmap(int(f.Fd()), 0, n, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(b) })
	for i := 0; i < n; i += int(pageSize) {
		touched += b[i]
	}
	return b
}

// residentKiB returns how much of the mapping starting at b is resident
// (its Rss line in /proc/self/smaps).
func residentKiB(t *testing.T, b []byte) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	head := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	sc := bufio.NewScanner(f)
	found := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, head) {
			found = true
		} else if found && strings.HasPrefix(line, "Rss:") {
			kb, err := strconv.Atoi(strings.Fields(line)[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatalf("mapping at %s not in /proc/self/smaps", head)
	return 0
}

// TestDropGathersSmallRanges checks that finished input ranges of at
// least dropSmall bytes are dropped at once, that smaller ones are
// gathered per input file until they add up to dropSmall and then dropped
// together with the pages between them, and that a range outside the
// input mappings is dropped at once.
func TestDropGathersSmallRanges(t *testing.T) {
	const mib = 1 << 20
	a, b := mapTouched(t, 8*mib), mapTouched(t, 4*mib)
	outside := mapTouched(t, 1*mib)
	as, ae := addrRange(a)
	bs, be := addrRange(b)
	ex := &executor{spans: [][2]uintptr{{as, ae}, {bs, be}}}
	// The kernel may map a file's pages in larger folios and drop a
	// whole folio's mapping for part of it: a drop frees at least the
	// pages asked for.
	steps := []struct {
		what       string
		drop       func()
		minA, minB int // KiB dropped at least from a and b, none if 0
	}{
		{"a 2 MiB range", func() { ex.drop(as, as+2*mib) }, 2048, 0},
		{"small ranges in both files, 960 KiB", func() {
			for i := range 10 { // a: [3 MiB, 3 MiB + 1.25 MiB)
				s := as + 3*mib + uintptr(i)*128<<10
				ex.drop(s, s+64<<10)
			}
			for i := range 5 { // b: [1 MiB, 1 MiB + 576 KiB)
				s := bs + 1*mib + uintptr(i)*128<<10
				ex.drop(s, s+64<<10)
			}
		}, 0, 0},
		{"one more small range in a: 1 MiB gathered", func() {
			s := as + 5*mib
			ex.drop(s, s+64<<10)
		}, 2048 + 64, 576}, // a: [3 MiB, 5 MiB + 64 KiB) with the pages between
	}
	prevA, prevB := residentKiB(t, a), residentKiB(t, b)
	for _, st := range steps {
		st.drop()
		gotA, gotB := residentKiB(t, a), residentKiB(t, b)
		for _, c := range []struct {
			file           string
			prev, got, min int
		}{{"a", prevA, gotA, st.minA}, {"b", prevB, gotB, st.minB}} {
			if c.min == 0 && c.got != c.prev {
				t.Errorf("after %s: %d KiB resident in %s, want %d (nothing dropped yet)", st.what, c.got, c.file, c.prev)
			}
			if c.min > 0 && c.prev-c.got < c.min {
				t.Errorf("after %s: %d KiB resident in %s, was %d, want at least %d KiB dropped", st.what, c.got, c.file, c.prev, c.min)
			}
		}
		prevA, prevB = gotA, gotB
	}
	o, _ := addrRange(outside)
	before := residentKiB(t, outside)
	ex.drop(o, o+64<<10)
	if got := residentKiB(t, outside); before-got < 64 {
		t.Errorf("a small range outside the inputs: %d KiB resident, was %d, want it dropped at once", got, before)
	}
}
