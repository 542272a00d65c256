package exec

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/fp8"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// TestDecodeViews reads the pieces of FP8 views the ways the writer
// does, against the whole weight dequantized at once: every rank's part
// of a row-parallel split at TP 2 and 3, whose rows are read alone when
// they skip more than maxSkip codes (N = 40000) and through a read-ahead
// window when they do not (N = 600); contiguous runs crossing windows;
// and more weights interleaved than there are windows, so that windows
// are taken over and read again. The codes are read from a file at an
// offset, the way a safetensors shard holds them.
func TestDecodeViews(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(3, 4))
	type weight struct {
		in   inputData
		want []byte
	}
	newWeight := func(name string, rows, n int64, out tensor.DType) weight {
		shape := tensor.Shape{rows, n}
		block := [2]int64{128, 128}
		l := fp8.NewLayout(shape, block)
		codes := make([]byte, rows*n)
		for k := range codes {
			for codes[k] = byte(r.Uint32()); tensor.E4M3IsNaN(codes[k]); codes[k] = byte(r.Uint32()) {
			}
		}
		grid, _ := fp8.Grid(shape, block)
		scales := make([]float32, grid.NumElements())
		for k := range scales {
			scales[k] = 1 / float32(1+r.IntN(1000))
		}
		path := filepath.Join(dir, name)
		const off = 1234
		if err := os.WriteFile(path, append(make([]byte, off), codes...), 0o644); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, len(codes)*out.Size())
		if err := l.Dequantize(name, want, out, codes, 0, scales); err != nil {
			t.Fatal(err)
		}
		d := &deqInput{name: name, layout: l, scaleName: name + "_scale_inv", scaleDT: tensor.F32, grid: grid, scales: fp8.EncodeScales(tensor.F32, scales), out: out}
		return weight{in: inputData{data: codes, path: path, off: off, deq: d}, want: want}
	}
	ex := &executor{files: map[string]*os.File{}}
	defer ex.close()
	for _, c := range []struct {
		rows, n int64
		out     tensor.DType
	}{{300, 40000, tensor.BF16}, {900, 600, tensor.F32}, {50, 3000, tensor.F16}} {
		w := newWeight("w", c.rows, c.n, c.out)
		size := int64(c.out.Size())
		for _, tp := range []int64{2, 3} {
			ex.releaseDeq()
			buf := ex.inputBytes(w.in)
			for rank := range tp {
				lo, hi := rank*c.n/tp, (rank+1)*c.n/tp
				var pieces [][]byte
				var want []byte
				for i := range c.rows {
					pieces = append(pieces, buf[(i*c.n+lo)*size:(i*c.n+hi)*size])
					want = append(want, w.want[(i*c.n+lo)*size:(i*c.n+hi)*size]...)
				}
				got := make([]byte, len(want))
				if err := ex.readPieces(got, pieces); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("[%d, %d] %v, TP %d, rank %d: the row-parallel part differs", c.rows, c.n, c.out, tp, rank)
				}
			}
		}
		// Contiguous runs of 100003 elements.
		ex.releaseDeq()
		buf := ex.inputBytes(w.in)
		got := make([]byte, len(buf))
		for e := int64(0); e < int64(len(buf)); e += 100003 * size {
			end := min(int64(len(buf)), e+100003*size)
			if err := ex.readPieces(got[e:end], [][]byte{buf[e:end]}); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, w.want) {
			t.Fatalf("[%d, %d] %v: contiguous runs differ", c.rows, c.n, c.out)
		}
	}
	// 11 weights read row by row in turn: windows are taken over.
	ex.releaseDeq()
	var ws []weight
	var bufs [][]byte
	for k := range maxCodeWindows + 3 {
		w := newWeight(string(rune('a'+k)), 40, 700, tensor.BF16)
		ws = append(ws, w)
		bufs = append(bufs, ex.inputBytes(w.in))
	}
	got := make([][]byte, len(ws))
	for i := range 40 {
		for k := range ws {
			row := make([]byte, 2*700)
			if err := ex.readPieces(row, [][]byte{bufs[k][i*1400 : (i+1)*1400]}); err != nil {
				t.Fatal(err)
			}
			got[k] = append(got[k], row...)
		}
	}
	for k := range ws {
		if !bytes.Equal(got[k], ws[k].want) {
			t.Fatalf("weight %d of %d interleaved differs", k, len(ws))
		}
	}
	if len(ex.windowsFP8) != maxCodeWindows {
		t.Errorf("%d windows, want at most %d", len(ex.windowsFP8), maxCodeWindows)
	}
	// Once decoded in place, a view is plain memory.
	if err := ex.materialize(); err != nil {
		t.Fatal(err)
	}
	for k := range ws {
		if !bytes.Equal(bufs[k], ws[k].want) {
			t.Fatalf("weight %d decoded in place differs", k)
		}
		if v, _ := ex.viewOf(bufs[k]); v != nil {
			t.Fatalf("weight %d: still a view once decoded", k)
		}
	}
}
