package safetensors

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// allDTypes lists every dtype the package supports.
var allDTypes = []tensor.DType{
	tensor.BOOL, tensor.U8, tensor.I8, tensor.I16, tensor.I32, tensor.I64,
	tensor.F8E4M3, tensor.F8E5M2, tensor.F16, tensor.BF16, tensor.F32, tensor.F64,
}

// sample returns the little-endian bytes of n elements of dtype dt and the
// values they encode (as float64; F8 values are the raw bytes), for
// checking a reader independently of this package.
func sample(dt tensor.DType, n int) ([]byte, []float64) {
	b := make([]byte, 0, n*dt.Size())
	vals := make([]float64, 0, n)
	for i := range n {
		switch dt {
		case tensor.BOOL:
			v := i % 2
			b = append(b, byte(v))
			vals = append(vals, float64(v))
		case tensor.U8:
			v := (i*50 + 7) % 256
			b = append(b, byte(v))
			vals = append(vals, float64(v))
		case tensor.I8:
			v := int8(i%100 - 3)
			b = append(b, byte(v))
			vals = append(vals, float64(v))
		case tensor.I16:
			v := int16((i%30 - 3) * 1000)
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
			vals = append(vals, float64(v))
		case tensor.I32:
			v := int32((i - 3) * 100000)
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
			vals = append(vals, float64(v))
		case tensor.I64:
			v := int64(i-3) * 1_000_000_000_000
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
			vals = append(vals, float64(v))
		case tensor.F8E4M3, tensor.F8E5M2:
			v := byte(0x38 + i*3)
			b = append(b, v)
			vals = append(vals, float64(v))
		case tensor.F16:
			f16 := []struct {
				bits uint16
				v    float64
			}{{0x0000, 0}, {0x3800, 0.5}, {0xbe00, -1.5}, {0x4000, 2}, {0x6400, 1024}, {0xb400, -0.25}}
			e := f16[i%len(f16)]
			b = binary.LittleEndian.AppendUint16(b, e.bits)
			vals = append(vals, e.v)
		case tensor.BF16:
			fs := []float32{1, -2, 0.15625, 3.5, -0.5, 256}
			v := fs[i%len(fs)]
			b = binary.LittleEndian.AppendUint16(b, uint16(math.Float32bits(v)>>16))
			vals = append(vals, float64(v))
		case tensor.F32:
			v := float32(i)*0.25 - 1
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
			vals = append(vals, float64(v))
		case tensor.F64:
			v := float64(i) * 0.1
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
			vals = append(vals, v)
		default:
			panic("sample: unsupported dtype " + dt.String())
		}
	}
	return b, vals
}

// writeRaw writes b to a new file called name in a fresh temporary
// directory and returns its path.
func writeRaw(t testing.TB, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// rawFile builds a file from a header (used verbatim, unpadded) and
// dataLen bytes of data.
func rawFile(header string, dataLen int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	for i := range dataLen {
		b = append(b, byte(i))
	}
	return b
}
