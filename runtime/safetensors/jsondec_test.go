package safetensors

import (
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// deepSeekLikeSpecs returns the tensors of a DeepSeek-V3-shaped model
// with the given numbers of layers and routed experts: FP8 weights with
// their scale grids, BF16 norms and biases.
func deepSeekLikeSpecs(layers, experts int) []Spec {
	specs := []Spec{{"model.embed_tokens.weight", tensor.BF16, tensor.Shape{129280, 7168}}}
	fp8 := func(name string, out, in int64) {
		specs = append(specs,
			Spec{name + ".weight", tensor.F8E4M3, tensor.Shape{out, in}},
			Spec{name + ".weight_scale_inv", tensor.F32, tensor.Shape{(out + 127) / 128, (in + 127) / 128}})
	}
	for l := range layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		specs = append(specs,
			Spec{p + "input_layernorm.weight", tensor.BF16, tensor.Shape{7168}},
			Spec{p + "post_attention_layernorm.weight", tensor.BF16, tensor.Shape{7168}},
			Spec{p + "self_attn.q_a_layernorm.weight", tensor.BF16, tensor.Shape{1536}},
			Spec{p + "self_attn.kv_a_layernorm.weight", tensor.BF16, tensor.Shape{512}},
			Spec{p + "mlp.gate.weight", tensor.BF16, tensor.Shape{int64(experts), 7168}},
			Spec{p + "mlp.gate.e_score_correction_bias", tensor.F32, tensor.Shape{int64(experts)}})
		fp8(p+"self_attn.q_a_proj", 1536, 7168)
		fp8(p+"self_attn.q_b_proj", 24576, 1536)
		fp8(p+"self_attn.kv_a_proj_with_mqa", 576, 7168)
		fp8(p+"self_attn.kv_b_proj", 32768, 512)
		fp8(p+"self_attn.o_proj", 7168, 16384)
		for e := range experts {
			q := fmt.Sprintf("%smlp.experts.%d.", p, e)
			fp8(q+"gate_proj", 2048, 7168)
			fp8(q+"up_proj", 2048, 7168)
			fp8(q+"down_proj", 7168, 2048)
		}
		fp8(p+"mlp.shared_experts.gate_proj", 2048, 7168)
		fp8(p+"mlp.shared_experts.up_proj", 2048, 7168)
		fp8(p+"mlp.shared_experts.down_proj", 7168, 2048)
	}
	return specs
}

// realHeader returns the JSON header (without the length prefix) and the
// data size of a file of specs as the writer lays it out.
func realHeader(t testing.TB, specs []Spec, md map[string]string) ([]byte, int64) {
	t.Helper()
	hdr, tensors, err := encodeHeader(specs, md)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, ti := range tensors {
		size += ti.Size
	}
	return hdr[8:], size
}

// nested returns k nested arrays around 0.
func nested(k int) string { return strings.Repeat("[", k) + "0" + strings.Repeat("]", k) }

// u8 is a valid entry of a 1-byte U8 tensor at [0, 1].
const u8 = `{"dtype":"U8","shape":[1],"data_offsets":[0,1]}`

// headerEdgeCases are headers that probe the decoder's grammar and
// string rules, each with the data length that makes a well-formed one
// valid.
var headerEdgeCases = []struct {
	header  string
	dataLen int64
}{
	{`{}`, 0},
	{`{}   `, 0},
	{"{}\n\t\r ", 0},
	{`{}x`, 0},
	{`{}{}`, 0},
	{`{},`, 0},
	{`{`, 0},
	{`{"`, 0},
	{`{"a"`, 0},
	{`{"a":`, 0},
	{`{"a" 1}`, 0},
	{`{1:2}`, 0},
	{`{,}`, 0},
	{`{"a":1,}`, 0},
	{`{"a":1 "b":2}`, 0},
	{"\ufeff{}", 0},
	{` { "w" : { "dtype" : "U8" , "shape" : [ 1 ] , "data_offsets" : [ 0 , 1 ] } } `, 1},
	{"{ \"w\"\n:\r" + u8 + "\t}", 1},
	{`{"w":` + u8 + `}`, 1},
	{`{"w":` + u8 + `,"w":` + u8 + `}`, 1},
	{`{"a":` + u8 + `,"\u0061":` + u8 + `}`, 1},
	{`{"\ud800":` + u8 + `,"\udc00":` + u8 + `}`, 1},
	{`{"\ud83d\ude00":` + u8 + `}`, 1},
	{`{"\uD83D\uDE00x":` + u8 + `}`, 1},
	{`{"\ud83d":` + u8 + `}`, 1},
	{`{"\ude00\ud83d":` + u8 + `}`, 1},
	{`{"\ud83dx":` + u8 + `}`, 1},
	{`{"\ud83d\u0041":` + u8 + `}`, 1},
	{`{"\ud83d\ud83d\ude00":` + u8 + `}`, 1},
	{`{"\ud83d\u00":` + u8 + `}`, 1},
	{`{"\u00e9\u0000\"\\\/\b\f\n\r\t":` + u8 + `}`, 1},
	{`{"é€😀 plain":` + u8 + `}`, 1},
	{"{\"\xef\xbf\xbd\":" + u8 + "}", 1},
	{`{"a\x":` + u8 + `}`, 1},
	{`{"a\'":` + u8 + `}`, 1},
	{`{"a\u12":` + u8 + `}`, 1},
	{`{"a\uZZZZ":` + u8 + `}`, 1},
	{"{\"a\tb\":" + u8 + "}", 1},
	{"{\"a\x7fb\":" + u8 + "}", 1},
	{`{"a\`, 0},
	{`{"a\u`, 0},
	{`{"w":{"dtype":"B\u0046\u0031\u0036","shape":[1],"data_offsets":[0,2]}}`, 2},
	{`{"w":{"dtype":"bf16","shape":[1],"data_offsets":[0,2]}}`, 2},
	{`{"w":{"dtype":"","shape":[1],"data_offsets":[0,2]}}`, 2},
	{`{"\u005f_metadata__":{"a":"b"}}`, 0},
	{`{"__metadata__":{"k":"v\n\t\"\\\/\b\f\r\u00e9"},"w":` + u8 + `}`, 1},
	{`{"__metadata__":null}`, 0},
	{`{"__metadata__":nul}`, 0},
	{`{"__metadata__":nullx}`, 0},
	{`{"__metadata__":7}`, 0},
	{`{"__metadata__":"x"}`, 0},
	{`{"__metadata__":true}`, 0},
	{`{"__metadata__":{"a":null}}`, 0},
	{`{"__metadata__":{"a":"1","b":[}}`, 0},
	{`{"__metadata__":{"a":"1"},"__metadata__":null}`, 0},
	{`{"__metadata__":{"a":"1","\u0061":"2"}}`, 0},
	{`{"w":null}`, 0},
	{`{"w":[]}`, 0},
	{`{"w":"x"}`, 0},
	{`{"w":true}`, 0},
	{`{"w":-1.5e3}`, 0},
	{`{"w":{}}`, 0},
	{`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":{"x":[1,{"y":null}],"x":2}}}`, 1},
	{`{"w":{"extra":1,"extra":2,"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"dtype":"U8","shape":[1],"data_offsets":[0,1],"c":0}}`, 1},
	{`{"w":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"dtype":"U8","shape":[1],"data_offsets":[0,1],"k":0}}`, 1},
	{`{"w":{"dtype":"U8","shape":[-0],"data_offsets":[-0,0]}}`, 0},
	{`{"w":{"dtype":"U8","shape":[0.0],"data_offsets":[0,0]}}`, 0},
	{`{"w":{"dtype":"U8","shape":[1e2],"data_offsets":[0,100]}}`, 100},
	{`{"w":{"dtype":"U8","shape":[1E+2],"data_offsets":[0,100]}}`, 100},
	{`{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[9223372036854775807],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[123456789012345678901234567890123456789012345],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[0000],"data_offsets":[0,0]}}`, 0},
	{`{"w":{"dtype":"U8","shape":[01],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[1.],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[.5],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[-],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[+1],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[1e],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[1,],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[,1],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[1 2],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[true],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[false],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[null],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[tru],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[{}],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":{},"data_offsets":[0,1]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[1],"data_offsets":[]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1,-2]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,"1"]}}`, 1},
	{`{"w":{"dtype":"U8","shape":[1],"data_offsets":null}}`, 1},
	{`{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]},"x":[}`, 1},
	{`{"w":{"dtype":7,"shape":[1],"data_offsets":[0,1]},"x":1 1}`, 1},
	{`{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, 4},
	{`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":` + nested(maxJSONDepth-2) + `}}`, 1},
	{`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":` + nested(maxJSONDepth-1) + `}}`, 1},
	{`{"w":{"dtype":"U8","shape":` + nested(maxJSONDepth) + `,"data_offsets":[0,1]}}`, 1},
	{`{"w":` + strings.Repeat(`{"x":`, maxJSONDepth) + `0` + strings.Repeat(`}`, maxJSONDepth) + `}`, 1},
}

// headerSeeds returns header texts with data lengths for the
// differential fuzz target: the headers of real-looking files (including
// a DeepSeek-V3-shaped shard), the edge cases and the headers of
// badFiles.
func headerSeeds(t testing.TB) (headers [][]byte, dataLens []int64) {
	add := func(h []byte, n int64) {
		headers = append(headers, h)
		dataLens = append(dataLens, n)
	}
	for _, tc := range []struct {
		specs []Spec
		md    map[string]string
	}{
		{nil, nil},
		{roundTripSpecs(), map[string]string{"format": "pt", "note": "é\"\n"}},
		{deepSeekLikeSpecs(1, 4), map[string]string{"format": "pt"}},
		{[]Spec{{"a\"é\u2028😀\x00", tensor.U8, tensor.Shape{3}}, {"b", tensor.U8, tensor.Shape{0}}, {"c", tensor.F16, nil}}, map[string]string{}},
	} {
		h, n := realHeader(t, tc.specs, tc.md)
		add(h, n)
	}
	for _, tc := range headerEdgeCases {
		add([]byte(tc.header), tc.dataLen)
	}
	for _, bf := range badFiles {
		if len(bf.file) >= 8 {
			add(bf.file[8:min(len(bf.file), 8+int(uint32(bf.file[0])))], 0)
		}
	}
	return headers, dataLens
}

// FuzzDecodeHeader compares the single-pass header decoder with the
// encoding/json decoding it replaced (oracle_test.go): the same error
// message for every header, and the same tensors (in document order,
// before validation), metadata and index by name for every header both
// accept; then the same result for the whole parse of a file with
// dataLen bytes of data.
func FuzzDecodeHeader(f *testing.F) {
	headers, dataLens := headerSeeds(f)
	for i, h := range headers {
		f.Add(h, dataLens[i])
	}
	f.Fuzz(func(t *testing.T, raw []byte, dataLen int64) {
		dataLen = max(0, min(dataLen, 1<<50))
		size := 8 + int64(len(raw)) + dataLen
		if utf8.Valid(raw) && len(raw) > 0 && raw[0] == '{' {
			want, wantErr := oracleDecodeHeader("h", raw, size)
			got := &Header{Path: "h", HeaderLen: int64(len(raw)), FileSize: size}
			gotErr := got.decode(raw)
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("decode error\n got %v\nwant %v", gotErr, wantErr)
			}
			if wantErr == nil {
				if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(Header{})); diff != "" {
					t.Fatalf("decoded header (-encoding/json +decoder):\n%s", diff)
				}
				if len(got.byName) != len(got.Tensors) {
					t.Fatalf("%d names indexed for %d tensors", len(got.byName), len(got.Tensors))
				}
				for i, ti := range got.Tensors {
					if j, ok := got.byName[ti.Name]; !ok || j != i {
						t.Fatalf("byName[%q] = %d, %v, want %d", ti.Name, j, ok, i)
					}
				}
			}
		}
		want, wantErr := oracleParseHeader("h", raw, size)
		got, gotErr := parseHeader("h", raw, size)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("parse error\n got %v\nwant %v", gotErr, wantErr)
		}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(Header{})); diff != "" {
			t.Fatalf("parsed header (-encoding/json +decoder):\n%s", diff)
		}
	})
}

// indexEdgeCases probe the index decoder.
var indexEdgeCases = []string{
	``,
	` `,
	`[]`,
	`"x"`,
	`null`,
	`{}`,
	`{"weight_map":{}}`,
	` {"weight_map":{"a":"s"}} `,
	"\n{\"weight_map\":{\"a\":\"s\"}}\n",
	`{"weight_map":{"a":"s"}}x`,
	`{"weight_map":{"a":"s"},}`,
	`{"weight_map":{"a":"s","a":"t"}}`,
	`{"weight_map":{"a":"s","\u0061":"s"}}`,
	`{"weight_map":{"a":"s"},"weight_map":{"b":"s"}}`,
	`{"weight_map":{"a":1}}`,
	`{"weight_map":{"a":null}}`,
	`{"weight_map":null}`,
	`{"weight_map":["s"]}`,
	`{"weight_map":{"\ud83d\ude00":"s\u00e9","b\\":"s\u00e9","c":"t"}}`,
	`{"metadata":null,"weight_map":{"a":"s"}}`,
	`{"metadata":{},"weight_map":{"a":"s"}}`,
	`{"metadata":{"total_size":12},"weight_map":{"a":"s"}}`,
	`{"metadata":{"total_size":1.5e10},"weight_map":{"a":"s"}}`,
	`{"metadata":{"total_size":123.0},"weight_map":{"a":"s"}}`,
	`{"metadata":{"total_size":123.5},"weight_map":{"a":"s"}}`,
	`{"metadata":{"total_size":-1},"weight_map":{"a":"s"}}`,
	`{"metadata":{"total_size":-0},"weight_map":{"a":"s"}}`,
	`{"metadata":{"total_size":1e300},"weight_map":{"a":"s"}}`,
	`{"metadata":{"total_size":9223372036854775808},"weight_map":{"a":"s"}}`,
	`{"metadata":{"total_size":9007199254740993.0},"weight_map":{"a":"s"}}`,
	`{"metadata":{"total_size":"12"},"weight_map":{"a":"s"}}`,
	`{"metadata":{"total_size":null},"weight_map":{"a":"s"}}`,
	`{"metadata":{"total_size":1,"total_size":2},"weight_map":{"a":"s"}}`,
	`{"metadata":{"format":"pt","nested":{"a":[1,2,{"b":null}]}},"weight_map":{"a":"s"}}`,
	`{"metadata":{},"metadata":{},"weight_map":{"a":"s"}}`,
	`{"other":[1,{"x":"y"}],"other2":true,"weight_map":{"a":"s"}}`,
	`{"other":1,"other":2,"weight_map":{"a":"s"}}`,
	`{"weight_map":{"a":"s"},"metadata":{"total_size":-1},"x":[}`,
	`{"weight_map":{"a":"s"},"x":` + nested(maxJSONDepth-1) + `}`,
	`{"weight_map":{"a":"s"},"x":` + nested(maxJSONDepth) + `}`,
	"{\"weight_map\":{\"a\":\"s\xff\"}}",
}

// FuzzDecodeIndex compares the single-pass index decoder with the
// encoding/json decoding it replaced: the same error message, or the same
// total size and weight map.
func FuzzDecodeIndex(f *testing.F) {
	for _, s := range indexEdgeCases {
		f.Add([]byte(s))
	}
	wm := map[string]string{}
	for i, sp := range deepSeekLikeSpecs(2, 4) {
		wm[sp.Name] = fmt.Sprintf("model-%05d-of-00003.safetensors", i%3+1)
	}
	wm["é\"\\ \u2028😀"] = "model-00001-of-00003.safetensors"
	path := f.TempDir() + "/" + IndexFileName
	if err := WriteIndex(path, wm, 1234567); err != nil {
		f.Fatal(err)
	}
	f.Add(readFile(f, path))
	f.Fuzz(func(t *testing.T, raw []byte) {
		want, wantErr := oracleParseIndex("ix", raw)
		got, gotErr := parseIndex("ix", raw)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("error\n got %v\nwant %v", gotErr, wantErr)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("index (-encoding/json +decoder):\n%s", diff)
		}
	})
}

// TestDecoderValues pins decoded values the fuzz targets only compare
// with the oracle: escapes and surrogates, "-0", the nesting limit.
func TestDecoderValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header string
		names  []string // in document order
		err    string
	}{
		{header: `{"\ud83d\ude00":` + u8 + `}`, names: []string{"😀"}},
		{header: `{"\ud83d":` + u8 + `}`, names: []string{"\uFFFD"}},
		{header: `{"\ud83d\u0041":` + u8 + `}`, names: []string{"\uFFFDA"}},
		{header: `{"\ude00\ud83d\ude00":` + u8 + `}`, names: []string{"\uFFFD😀"}},
		{header: `{"\u00e9\u0000\"\\\/\b\f\n\r\t":` + u8 + `}`, names: []string{"é\x00\"\\/\b\f\n\r\t"}},
		{header: `{"\ud800":` + u8 + `,"\udc00":` + u8 + `}`, err: "h: tensor \"\ufffd\": appears more than once in the header"},
		{header: `{"\u005f_metadata__":{"a":"1"},"__metadata__":{}}`, err: `h: "__metadata__" appears more than once in the header`},
		{header: `{"w":{"dtype":"U8","shape":[-0],"data_offsets":[-0,0]}}`, names: []string{"w"}},
		{header: `{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":` + nested(maxJSONDepth-2) + `}}`, names: []string{"w"}},
		{header: `{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":` + nested(maxJSONDepth-1) + `}}`,
			err: "h: header is not valid JSON: invalid character '[' exceeded max depth (at offset 10063)"},
		{header: `{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]},"x":[}`,
			err: "h: header is not valid JSON: invalid character '}' looking for beginning of value (at offset 68)"},
	}
	for _, tc := range tests {
		h := &Header{Path: "h"}
		err := h.decode([]byte(tc.header))
		if fmt.Sprint(err) != fmt.Sprint(tc.err) && !(err == nil && tc.err == "") {
			t.Errorf("%.60s: error %v, want %s", tc.header, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		var names []string
		for _, ti := range h.Tensors {
			names = append(names, ti.Name)
			if ti.Shape == nil {
				t.Errorf("%.60s: tensor %q has a nil shape, want a non-nil one", tc.header, ti.Name)
			}
		}
		if diff := cmp.Diff(tc.names, names); diff != "" {
			t.Errorf("%.60s: names (-want +got):\n%s", tc.header, diff)
		}
	}
}

// TestShapesDoNotAlias checks that the shapes decoded into one shared
// array cannot be changed through each other by append.
func TestShapesDoNotAlias(t *testing.T) {
	t.Parallel()
	h := &Header{Path: "h"}
	if err := h.decode([]byte(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`)); err != nil {
		t.Fatal(err)
	}
	_ = append(h.Tensors[0].Shape, 7)
	if got := h.Tensors[1].Shape; !cmp.Equal(got, tensor.Shape{2}) {
		t.Errorf("appending to the first shape changed the second to %v", got)
	}
}

// BenchmarkParseHeader parses the header of a 46,741-tensor
// DeepSeek-V3-shaped file (30 layers of 256 FP8 experts with their scale
// grids) with the single-pass decoder and, for comparison, with the
// encoding/json decoding it replaced.
func BenchmarkParseHeader(b *testing.B) {
	raw, dataLen := realHeader(b, deepSeekLikeSpecs(30, 256), map[string]string{"format": "pt"})
	size := 8 + int64(len(raw)) + dataLen
	h, err := parseHeader("h", raw, size)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d tensors, %d header bytes", len(h.Tensors), len(raw))
	for _, bc := range []struct {
		name  string
		parse func(string, []byte, int64) (*Header, error)
	}{{"decoder", parseHeader}, {"encoding-json", oracleParseHeader}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.parse("h", raw, size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseIndex parses the index of a DeepSeek-V3-sized checkpoint
// (90k tensors in 163 shards) with the single-pass decoder and with the
// encoding/json decoding it replaced.
func BenchmarkParseIndex(b *testing.B) {
	wm := map[string]string{}
	for i, sp := range deepSeekLikeSpecs(58, 256) {
		wm[sp.Name] = fmt.Sprintf("model-%05d-of-000163.safetensors", i%163+1)
	}
	path := b.TempDir() + "/" + IndexFileName
	if err := WriteIndex(path, wm, 1234567); err != nil {
		b.Fatal(err)
	}
	raw := readFile(b, path)
	b.Logf("%d tensors, %d index bytes", len(wm), len(raw))
	for _, bc := range []struct {
		name  string
		parse func(string, []byte) (*Index, error)
	}{{"decoder", parseIndex}, {"encoding-json", oracleParseIndex}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.parse("ix", raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// readFile returns the contents of path.
func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDTypeTable checks that the decoder knows every dtype spelling.
func TestDTypeTable(t *testing.T) {
	t.Parallel()
	for _, want := range allDTypes {
		if got, ok := dtype([]byte(want.String())); !ok || got != want {
			t.Errorf("dtype(%q) = %v, %v, want %v", want.String(), got, ok, want)
		}
	}
	if len(dtypes) != len(allDTypes) {
		t.Errorf("%d dtype spellings, want %d", len(dtypes), len(allDTypes))
	}
}

// TestHasSpecial checks the eight-byte test of str against the byte
// table for every pair of adjacent bytes at every position (borrows
// between bytes are where such bit tricks go wrong).
func TestHasSpecial(t *testing.T) {
	t.Parallel()
	for i := range 7 {
		for b1 := range 256 {
			for b2 := range 256 {
				w := []byte("abcdefgh")
				w[i], w[i+1] = byte(b1), byte(b2)
				want := false
				for _, c := range w {
					want = want || strSpecial[c]
				}
				if got := hasSpecial(binary.LittleEndian.Uint64(w)); got != want {
					t.Fatalf("hasSpecial(%q) = %v, want %v", w, got, want)
				}
			}
		}
	}
}

// TestSkipSyntax checks that skip itself reports a syntax error inside the
// value it skips (not only a later check of what follows), and consumes
// exactly a valid value.
func TestSkipSyntax(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{`{"a":1 x}`, `[1 x]`, `{"a":1,}`, `[1,]`, `{"a" 1}`, `{1:1}`, `[`, `{`, `{"a":[1}`,
		`{"a":{"b":2 "c":3}}`, `[[1] [2]]`, `"abc`, `tru`, `-`, `1.`, `{"a":nul}`, `]`, `}`, ``} {
		d := &decoder{b: []byte(doc)}
		if err := d.skip(); err != errSyntax {
			t.Errorf("skip(%s) = %v, want errSyntax", doc, err)
		}
	}
	for _, doc := range []string{`{}`, `[]`, `{"a":[1,{"b":null}],"a":true}`, `[ 1 , "x" , -0.5e+3 , false ]`, `"a\u00e9"`, `0`, `null`} {
		d := &decoder{b: []byte(doc + ` x`)}
		if err := d.skip(); err != nil || d.i != len(doc) || d.depth != 0 {
			t.Errorf("skip(%s) = %v at %d (depth %d), want nil at %d", doc, err, d.i, d.depth, len(doc))
		}
	}
}
