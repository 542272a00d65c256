// Package safetensors reads and writes Hugging Face safetensors files and
// the model.safetensors.index.json index of sharded checkpoints.
//
// # File layout
//
// A safetensors file is an 8-byte little-endian length N, an N-byte UTF-8
// JSON object (the header), then the data region holding every tensor's
// bytes, row-major and little-endian. Each header entry is
//
//	"name": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [BEGIN, END]}
//
// with offsets relative to the start of the data region; the optional key
// "__metadata__" maps strings to strings.
//
// # Reading
//
// [Open] maps the file read-only with mmap and validates the header; tensor
// bytes are handed out as zero-copy sub-slices of the mapping by
// [File.Data], and [File.Release] drops the pages of a tensor that has been
// consumed so that streaming through a file larger than memory keeps the
// resident set small. [ReadHeader] validates the same header with ordinary
// reads and never touches the data region.
//
// Validation mirrors the reference Rust implementation (huggingface/safetensors,
// Metadata::validate): the header is at most 100 MB, valid UTF-8, starts
// with '{' and is a JSON object without duplicate keys; every tensor has a
// known dtype, a shape of non-negative integers and data_offsets [BEGIN, END]
// with END-BEGIN equal to the element count times the dtype size. Sorted by
// offset, the tensors must cover the data region exactly: the first starts
// at 0, each starts where the previous one ended, and the last ends at the
// end of the file. Holes, overlaps and trailing bytes are all errors (the
// reference rejects them to prevent polyglot files). Unknown keys inside a
// tensor entry are ignored, as the reference does. Every validation error
// is a [*FormatError] naming the file and, where there is one, the tensor
// or the offset.
//
// Headers and indexes are decoded in one pass by a decoder for exactly
// their grammar (tens of thousands of tensors take milliseconds), with the
// rules of encoding/json for strings and syntax: a syntax error is
// reported with encoding/json's message and offset, ahead of any other
// problem.
//
// The dtypes are those of [tensor.DType]: BOOL, U8, I8, I16, I32, I64,
// F8_E4M3, F8_E5M2, F16, BF16, F32 and F64. Files using any other dtype
// (U16, U32, U64, C64, F8_E8M0, the FNUZ and sub-byte types) are rejected
// as "unknown dtype".
//
// # Writing
//
// [NewWriter] computes the whole header from the tensor list ([Spec]: name,
// dtype, shape) before any data is known, writes it, and then accepts the
// tensors' bytes strictly in the given order, each tensor as one or more
// ordered slices, so nothing is ever concatenated in memory. Tensors are
// laid out in the order given; [SortSpecs] reproduces the order the
// reference writer uses (descending dtype alignment, then name). The header
// is encoded like serde_json does it in the reference writer: no
// whitespace, "__metadata__" first, then the tensors in offset order, and
// padded with spaces to a multiple of 8 bytes.
//
// # Sharded checkpoints
//
// [ReadIndex] and [WriteIndex] handle model.safetensors.index.json;
// [OpenSharded] opens a model directory with either a single
// model.safetensors or an index and its shards.
package safetensors
