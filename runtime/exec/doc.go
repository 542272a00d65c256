// Package exec runs compiled templates on checkpoints: it converts Hugging
// Face safetensors checkpoints to the Megatron-Core (MCA) checkpoints ROLL's
// mcore_adapter loads, and back, without torch.
//
// # Pipeline
//
// A conversion has three stages, and the first never touches tensor data:
//
//  1. Plan ([PlanHFToMCA], [PlanMCAToHF]). The source tensor list (names,
//     dtypes, shapes from the safetensors headers or the torch pickle) is
//     matched against the template with ROLL's rules
//     (roll-converter-spec.md §3): each name is split into a weight prefix
//     (its bucket: one decoder layer, one expert, the fused experts of a
//     layer, or the global weights) and a pure name; names in the
//     template's ignore list are skipped; the op is looked up by exact key,
//     then by the first key in registration order whose pattern ("{}" a
//     lazy wildcard, dots unescaped) matches at the start; the op claims
//     every buffered name of the bucket one of its sources matches at the
//     start; it runs once it has as many tensors as sources, gathering
//     them in declared order ("{}" captures carried into the targets).
//     Each op group is run on stand-in tensors to get its outputs' shapes,
//     which checks the shapes against the config (q rows = heads ×
//     kv_channels, k/v rows = groups × kv_channels, gate = up, experts =
//     num_moe_experts). Every name no op matches, group left incomplete,
//     tensor claimed but unused, shape mismatch, output no parallel class
//     covers, duplicate output, missing layer or expert becomes a
//     [Problem] naming the tensors, their files and the op. Alternative
//     ops (ops sharing MCA names: several HF layouts of the same weights,
//     such as fused and per-expert experts) are told apart by the HF names
//     HF -> MCA; the plan records per alternative op the layers it
//     converted, written to mca_config.json ([LayerOpsKey]), and MCA -> HF
//     converts each recorded layer with its op, so a checkpoint mixing
//     layouts comes back exactly; without the record the op table's choice
//     (the fused split op) serves every layer.
//  2. Placement (runtime/shard, the one owner of the layout rules): the
//     plan always produces the global (TP=1) MCA weights, the components
//     of stacked swiglu and gdn weights joined (shard.Stacks). Every
//     layout, the single rank file being the 1x1x1 one, goes through the
//     same path: HF → MCA, runtime/shard lays out the rank files from the
//     plan's outputs (Sharder.PlanWrite) and splits every global weight
//     into its rank pieces; MCA → HF, the rank files are checked
//     (Sharder.PlanRead: a missing rank file is an error naming it) and
//     merged group by group (Sharder.Merge: replicas must be
//     bit-identical, else the error names the weight and the rank files)
//     into the global weights, cut back into their components for the
//     inverse ops. The mca_config.json model, and the layout it records,
//     is runtime/mcaconfig; its JSON values are runtime/pyjson.
//  3. Execution ([ConvertHFToMCA], [ConvertMCAToHF]): the steps run in
//     plan order on the mapped input. The ops that only reorder rows
//     return views, whose pieces are byte ranges of the input files. A
//     tensor made of such pieces is streamed through runtime/blockio: one
//     goroutine reads 2 MiB blocks from the input files with pread (small
//     pieces, such as the rows of a row-parallel shard, gathered into one
//     block) and computes the record's CRC-32, the other writes the block
//     before it. The rows of merged row-parallel weights (MCA -> HF),
//     which follow each other in their rank file, are read through a
//     256 KiB window per file rather than one pread each. The mapping itself is never read for them, so it costs
//     no page faults and no resident memory; pages that ops do read are
//     dropped as they are consumed, so memory stays bounded (about 20 MiB)
//     whatever the model size. The disk space of every output file (all
//     shards, all rank files) is reserved (fallocate) before any tensor
//     is written, so a full disk is reported first, naming the file, the
//     bytes needed and the bytes free. Bytes an op computes (the
//     zero-centred norm, transposing expert splits) are written from the
//     op's reused arena. Output goes to a temporary folder (beside a new
//     destination, inside an existing one) and is moved into place only
//     when everything is written; Options.Force replaces only a
//     checkpoint's own files (see output.go). Temporary names record
//     their process (internal/tempname), so a later run removes those of
//     a killed one.
//
// # Files
//
// MCA output: mca_config.json ([BuildMCAConfig], with the parallel sizes),
// latest_checkpointed_iteration.txt ("1") and one
// iter_0000001/mp_rank_TT[_PPP][_EEE]/model_optim_rng.pt per rank, a
// torch.save file holding {"model": OrderedDict(name → tensor)} (or
// "model0", "model1", … per virtual stage) in the HF dtypes, which is all
// ROLL writes (no iteration, args or checkpoint_version keys). The rank
// files are written concurrently (up to 4 at a
// time), each by its own executor over the shared input mapping: a rank
// file runs only the steps whose outputs it holds, so memory stays
// bounded; rows of row-parallel shards are gathered through a 4 MiB
// staging buffer. HF output:
// model-0000N-of-0000M.safetensors shards, model.safetensors.index.json
// and config.json ([BuildHFConfig]). Tokenizer, processor and remote-code
// files are copied in both directions.
//
// # Benchmarks
//
// go test -bench . runs the conversions of a 512 MiB Llama-shaped
// checkpoint both ways against copying its files, and the header-only
// check of a 16 GB sparse checkpoint. bench/bench.sh times rolltplc
// convert against cp -r on 2 and 8 GiB checkpoints and reports the ratio
// and the peak RSS; ROLLTPL_LARGE=1 go test -run TestLargeRoundTrip round
// trips a model_optim_rng.pt over 4 GiB.
package exec
