package torchsave

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rolltpl/rolltpl/lang/langtest"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// fuzzSeeds returns the seed inputs of FuzzReader: a small valid file we
// write, a protocol 4 pickle, and truncated and bit-flipped variants.
func fuzzSeeds(t testing.TB) map[string][]byte {
	root := dict(
		"model", &Dict{Ordered: true, Items: []Item{
			{"w", ts(tensor.BF16, 2, 3)},
			{"b", ts(tensor.F8E4M3, 3)},
			{"s", ts(tensor.I64)},
			{"e", ts(tensor.F32, 0)},
		}, Attrs: dict("_metadata", stateDict("", dict("version", int64(1))))},
		"iteration", int64(1<<40),
		"checkpoint_version", 3.0,
		"l", &List{Items: []any{true, nil, Tuple{int64(-1), "x"}}},
	)
	path := filepath.Join(t.TempDir(), "seed.pt")
	writeFile(t, path, root, fillData(t, root), nil)
	valid, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// Protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL.
	body := []byte("}\x94(\x8c\x01a\x94\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94\x8c\x01b\x94h\x01u.")
	p4 := append([]byte("\x80\x04\x95"), binary.LittleEndian.AppendUint64(nil, uint64(len(body)))...)
	p4 = append(p4, body...)
	proto4 := buildZip(rec{"archive/data.pkl", p4}, rec{"archive/version", []byte("3\n")})

	// Objects of unmodelled classes: {"args": argparse.Namespace(lr=0.5)}
	// through NEWOBJ and BUILD, and a REDUCE of a bare global.
	objects := buildZip(rec{"archive/data.pkl", []byte("\x80\x02}q\x00(X\x04\x00\x00\x00argsq\x01cargparse\nNamespace\nq\x02)\x81q\x03}q\x04X\x02\x00\x00\x00lrq\x05G?\xe0\x00\x00\x00\x00\x00\x00sbX\x01\x00\x00\x00bc_io\nBytesIO\n)Ru.")},
		rec{"archive/version", []byte("3\n")})

	seeds := map[string][]byte{"valid": valid, "proto4": proto4, "objects": objects}
	for _, n := range []int{1, 21, 22, 23, 57, 77, len(valid) / 2, 200, 64} {
		seeds["truncated-"+strconv.Itoa(n)] = valid[:len(valid)-n]
	}
	pkl := bytes.Index(valid, []byte{opProto, 2})
	cd := bytes.LastIndex(valid, []byte("PK\x01\x02"))
	for i, at := range []int{pkl + 2, pkl + 10, pkl + 40, pkl + 120, 26, 28, cd + 20, cd + 28, cd + 42, len(valid) - 6, len(valid) - 10, len(valid) - 30} {
		b := bytes.Clone(valid)
		b[at] ^= 1 << (i % 8)
		seeds[fmt.Sprintf("flip-%d", at)] = b
	}
	return seeds
}

func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// parseData has no recover: a panic fails the fuzzer.
		tf, err := parseData("fuzz.pt", data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for _, tt := range tf.Tensors() {
			if n := tt.Shape.NumElements() * int64(tt.DType.Size()); int64(len(tt.Data)) != n {
				t.Fatalf("%s: %d bytes of data for %v %v", tt.Name, len(tt.Data), tt.DType, tt.Shape)
			}
		}
		tf.VerifyCRC()
	})
}

// TestFuzzCorpus checks that the committed seed corpus is current; with
// ROLLTPL_UPDATE=1 it rewrites it.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	seeds := fuzzSeeds(t)
	for _, name := range []string{"valid", "proto4", "objects"} {
		if _, err := parseData(name, seeds[name]); err != nil {
			t.Errorf("seed %s: %v", name, err)
		}
	}
	update := langtest.Update()
	if update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range seeds {
		want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		path := filepath.Join(dir, "seed-"+name)
		if update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s is stale or missing; rerun with %s=1", path, langtest.UpdateEnv)
		}
	}
}
