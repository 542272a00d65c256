// Package torchsave writes and reads the zip-based file format of
// torch.save, as used by Megatron "legacy" checkpoints such as ROLL's
// iter_0000001/mp_rank_XX/model_optim_rng.pt ({"model": state dict}, or
// "model0", "model1", ... per virtual pipeline stage).
//
// # Values
//
// The pickled value tree uses these Go types:
//
//	Python                      Go
//	None                        nil
//	bool                        bool
//	int                         int64 (the writer also takes int and int32)
//	float                       float64 (the writer also takes float32)
//	str                         string
//	dict, OrderedDict           *Dict (Ordered set for OrderedDict)
//	list                        *List
//	tuple                       Tuple
//	torch.Tensor                TensorSpec (writer), *Tensor (reader)
//
// Dict keys are None, bool, integers, floats or strings. Tensors are
// addressed by their path in the tree, keys joined by "/":
// "model/decoder.layers.0.mlp.linear_fc1.weight". One tensor under several
// keys (torch.save memoizes it; the writer does so for a *TensorSpec found
// twice) is stored once and listed by [File.Tensors] under every key.
//
// # Writer
//
// [Create] takes the whole structure up front, with [TensorSpec] leaves
// (dtype and shape only). It writes data.pkl at once; the bytes of each
// tensor then follow in the order of [Writer.Tensors], through
// [Writer.WriteTensor] (one tensor as any number of slices) or
// [Writer.Write] (an io.Writer over all tensors). Bytes go from the caller's
// slices straight to the file, in write(2) calls of at most 64 MiB, while
// their CRC-32 is computed; nothing is concatenated or buffered.
// [Writer.Copy] is the path for bytes that live in another file: a
// runtime/blockio pipe reads them in 2 MiB blocks and checksums each on a
// second goroutine while the block before it is written. The space of all
// tensor records is reserved (fallocate) when the Writer is created.
// [Writer.Close] writes the central directory and renames the temporary
// file (path.tmp-HOST-PID-START-RANDOM) to path; [RemoveStaleTemps]
// removes those of writers that died on this host.
//
// The file has the layout torch 2.x's torch.save(obj, path) writes:
//
//   - every record is stored (method 0) in one folder named after the file
//     without its extension, as torch names it when saving to a path;
//   - records in torch's order: data.pkl, .format_version ("1"),
//     .storage_alignment ("64"), byteorder ("little"), data/0, data/1, ...
//     (one record per tensor, numbered in pickle order), version ("3\n");
//   - the data of every record starts at a multiple of 64 bytes, padded by
//     an extra field 0x4246 ("FB") of 'Z' bytes as torch's writer does;
//   - a zip64 end-of-central-directory record and locator are always
//     written, as torch does; records of 4 GiB or more and offsets beyond
//     4 GiB use zip64 extra fields.
//
// data.pkl is what Python's pickler writes at protocol 2 under torch.save
// for the same tree, memo operations included: tensors are
// torch._utils._rebuild_tensor_v2 with a ('storage', torch.<Type>Storage,
// key, 'cpu', numel) persistent id; F8 tensors use _rebuild_tensor_v3 with a
// torch.storage.UntypedStorage, as torch ≥ 2.1 does. It is byte-for-byte identical
// to torch's output whenever the Python tree holds no string object twice
// (torch's own "storage" and "cpu" constants excepted); a tree built from
// interned Python strings (say, "version" in every _metadata entry) differs
// only in memo operations, and loads to the same value.
//
// Differences from torch's files: sizes and CRCs are in the local headers
// (torch's miniz writes data descriptors), the central directory carries no
// padding extra, and .data/serialization_id is not written: no loader needs
// it, and torch 1.13 never wrote it.
//
// torch 1.13 loads these files with and without weights_only=True, except
// F8 tensors (1.13 has no float8) and, under weights_only=True, floats
// outside tensors (its restricted unpickler lacks BINFLOAT).
//
// # Reader
//
// [Open] maps the file with mmap, parses the zip central directory (zip64
// included), and requires every record to be stored, unencrypted and in
// one folder, with data.pkl and version present and byteorder, if present,
// "little". data.pkl is read by a restricted unpickler that runs no code:
// it knows the protocol 2 opcodes torch emits plus the protocol 4 framing
// ones, and models only the globals torch uses for state dicts
// (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and _v3,
// torch._utils._rebuild_parameter, torch.<Type>Storage,
// torch.storage.UntypedStorage (or torch.UntypedStorage) and torch
// dtypes). A value of any other class
// (Megatron's argparse.Namespace of training arguments, NumPy random
// state, Transformer Engine's io.BytesIO extra state) comes back as an
// [*Object] recording its class, arguments and state, never imported or
// called. Tensors come back as [*Tensor] whose Data
// is a slice of the mapping (no copy). Views into a shared storage are
// supported; non-contiguous tensors are an error naming the tensor. All
// errors are [*Error] values naming the file and, where they apply, the
// record and the tensor.
package torchsave
