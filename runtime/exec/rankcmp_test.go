package exec_test

import (
	"bytes"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/torchsave"
)

// compareRankDirs compares the rank files of two MCA checkpoints, got and
// want, rank by rank: the same rank directories, and in each rank file
// the same tensors (names, dtypes, shapes, bytes) in the same order, every
// record's CRC-32 checked in both. It reads the data through the files
// in small pieces rather than through torchsave's mapping (whose touched
// pages stay resident until Close), so comparing real-size checkpoints
// costs little memory. count reports the tensors it compared for which
// it returns true.
func compareRankDirs(t *testing.T, got, want string, count func(name string) bool) (n int) {
	t.Helper()
	gotFiles, wantFiles := rankFiles(t, got), rankFiles(t, want)
	if len(gotFiles) != len(wantFiles) || len(wantFiles) == 0 {
		t.Fatalf("%d rank files, the reference has %d", len(gotFiles), len(wantFiles))
	}
	for i, wp := range wantFiles {
		gp := gotFiles[i]
		rank := filepath.Base(filepath.Dir(wp))
		if g := filepath.Base(filepath.Dir(gp)); g != rank {
			t.Errorf("rank directory %s, the reference has %s", g, rank)
			continue
		}
		n += compareRankFiles(t, rank, gp, wp, count)
	}
	return n
}

// compareRankFiles compares one rank file with its reference (see
// compareRankDirs).
func compareRankFiles(t *testing.T, rank, got, want string, count func(name string) bool) (n int) {
	t.Helper()
	g, gts := openRankStreaming(t, got)
	w, wts := openRankStreaming(t, want)
	if len(gts) != len(wts) {
		t.Errorf("%s: %d tensors, the reference has %d", rank, len(gts), len(wts))
		return 0
	}
	for i, wt := range wts {
		gt := gts[i]
		if gt.Name != wt.Name || gt.DType != wt.DType || !gt.Shape.Equal(wt.Shape) {
			t.Errorf("%s tensor %d: %s %v%v, the reference has %s %v%v", rank, i, gt.Name, gt.DType, gt.Shape, wt.Name, wt.DType, wt.Shape)
			continue
		}
		same, err := sameBytes(io.NewSectionReader(g, gt.off, gt.size), io.NewSectionReader(w, wt.off, wt.size))
		if err != nil {
			t.Fatalf("%s tensor %s: %v", rank, gt.Name, err)
		}
		if !same || gt.size != wt.size {
			t.Errorf("%s tensor %d (%s): the bytes differ from the reference", rank, i, gt.Name)
		}
		if count != nil && count(gt.Name) {
			n++
		}
	}
	return n
}

// streamedTensor is a tensor of a rank file with where its bytes are.
type streamedTensor struct {
	*torchsave.Tensor
	off, size int64
}

// openRankStreaming parses the torch file at path, checks the CRC-32 of
// every record by reading the file (as torchsave's VerifyCRC does on the
// mapping) and returns the file, open for reading until the test ends,
// and its tensors in file order with the offsets of their bytes.
func openRankStreaming(t *testing.T, path string) (*os.File, []streamedTensor) {
	t.Helper()
	tf, err := torchsave.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tf.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	recs := map[string]torchsave.Record{}
	for _, r := range tf.Records() {
		recs[r.Name] = r
		h := crc32.NewIEEE()
		if _, err := io.Copy(h, io.NewSectionReader(f, r.Offset, r.Size)); err != nil {
			t.Fatalf("%s: record %s: %v", path, r.Name, err)
		}
		if h.Sum32() != r.CRC32 {
			t.Errorf("%s: record %s: CRC-32 mismatch: computed %08x, stored %08x", path, r.Name, h.Sum32(), r.CRC32)
		}
	}
	var out []streamedTensor
	for _, x := range tf.Tensors() {
		r, ok := recs["data/"+x.Storage]
		if !ok {
			t.Fatalf("%s: tensor %s: no record data/%s", path, x.Name, x.Storage)
		}
		es := int64(x.DType.Size())
		st := streamedTensor{Tensor: x, off: r.Offset + x.StorageOffset*es, size: int64(len(x.Data))}
		if st.off+st.size > r.Offset+r.Size {
			t.Fatalf("%s: tensor %s runs past its record", path, x.Name)
		}
		out = append(out, st)
	}
	return f, out
}

// sameBytes reports whether a and b hold the same bytes, reading both in
// pieces of 1 MiB.
func sameBytes(a, b io.Reader) (bool, error) {
	const piece = 1 << 20
	x, y := make([]byte, piece), make([]byte, piece)
	for {
		n, errA := io.ReadFull(a, x)
		m, errB := io.ReadFull(b, y)
		if n != m || !bytes.Equal(x[:n], y[:m]) {
			return false, nil
		}
		doneA := errA == io.EOF || errA == io.ErrUnexpectedEOF
		doneB := errB == io.EOF || errB == io.ErrUnexpectedEOF
		if errA != nil && !doneA {
			return false, errA
		}
		if errB != nil && !doneB {
			return false, errB
		}
		if doneA || doneB {
			return doneA == doneB, nil
		}
	}
}
