// Package shard splits global Megatron-Core (MCA) weights into the rank
// files of a tensor / pipeline / virtual-pipeline / expert parallel
// layout, and merges rank files back, the way ROLL's DistConverter does
// (roll-converter-spec.md §5, §6.1). It depends on the standard library
// and runtime/tensor only; the template-specific work (HF ⇄ global MCA
// names and tensors) happens before a weight reaches this package.
//
// # Layout and rank files
//
// A [Layout] holds the parallel sizes and the few model facts placement
// depends on. Its rank files are named by [RankDir]: "mp_rank_TT", plus
// "_PPP" when PP > 1, plus "_EEE" when EP > 1; [Ranks] lists them in the
// order ROLL writes them. Each file's state dict has one key per virtual
// stage, [StageKey]: "model", or "model0" … with a virtual pipeline.
//
// # Splitting (HF → MCA)
//
// [Sharder.Split] takes one global weight, read once, and returns every
// [Piece] of it: for each (rank file, virtual stage) that holds it, the
// local name and a view of the data. Per weight (§5.4):
//
//  1. Placement. Pre-process weights go to the first stage (pp 0, vp 0),
//     post-process weights to the last (pp PP−1, vp VPP−1); the embedding
//     is also on the last stage with MTP or tied embeddings, and with tied
//     embeddings and PP > 1 it is stored there as "output_layer.weight".
//     A decoder layer goes to the stage computed from its global index
//     (§5.5: chunks of (num_layers [+1 embedding] [+1 loss]) / (PP·VPP)
//     filled in order vp·PP + pp, or Megatron's
//     pipeline_model_parallel_layout); MTP weights to the last stage;
//     other weights to every stage. An expert weight goes to EP rank
//     e div (E/EP); everything else to every EP rank.
//  2. Naming. Global layer indices become local ones (MTP indices are
//     kept), global expert indices local ones (e mod E/EP), and with
//     grouped GEMM the per-expert name becomes the TE GroupedLinear name
//     "….experts.linear_fc1.weight<k>" or the legacy GroupedMLP tensor
//     "….experts.weight1"/"weight2". With transformer_impl "local" the
//     fused TE norm names become local ones.
//  3. Tensor parallelism by class (first match wins: grouped, swiglu,
//     gdn, duplicated, column, row; ".bias" classified as its ".weight";
//     patterns are exact names or fnmatch globs): duplicated whole,
//     column rows r·n/T…, row columns, swiglu and gdn per component then
//     concatenated. Expert weights use ETP. Splits must be even.
//
// Column, duplicated, swiglu and gdn pieces are zero-copy row views of the
// input. A row split of a row-major matrix is not contiguous: by default it
// is a view with one piece per matrix row (free to make, streamed by
// [tensor.Tensor.WriteTo]); Options.ContiguousRows copies it into a buffer
// from Options.Alloc instead. Legacy grouped GEMM transposes each expert
// into its block of the shared tensor ([Piece.Offset]).
//
// # Merging (MCA → HF)
//
// [Sharder.Merge] takes the local tensors holding shares of some global
// weights and returns those weights: local → global names, TP merge by
// class, grouped names back to per-expert weights. Every other copy of a
// share (duplicated weights on all tensor ranks, dense weights on all
// expert ranks, the tied LM-head copy on the last stage, the embedding
// copy kept for MTP) must be bit-identical to the first, else the merge
// fails naming the weight and the rank files that differ; the copies are
// then dropped.
//
// # Plans
//
// [Sharder.PlanWrite] lists, before any data is read, the tensors of every
// rank file with their shapes and the slices of the global weights they
// are made of, so a writer can lay out each file and stream it.
// [Sharder.PlanRead] checks that a set of rank files is a complete
// checkpoint of the layout (a missing rank file, state-dict key or tensor
// is an error naming it) and groups the local tensors into independent
// merges.
//
// # Differences from ROLL
//
// Where ROLL fails late or writes something unreadable, this package
// reports an error up front: uneven tensor-parallel splits (ROLL's
// torch.chunk), ETP not dividing TP (the legacy rank directories have no
// ETP component; ROLL indexes ETP pieces by TP rank), MTP weights with
// mtp_num_layers 0 (ROLL drops them silently), an incomplete legacy grouped
// tensor (ROLL keeps it buffered and loses it), a TE grouped name ending in
// a digit. With ETP < TP, the tensor ranks tp ≡ r (mod ETP) all hold expert
// share r (Megatron's expert-tensor rank), which ROLL cannot write. A
// single virtual stage is always the key "model" (ROLL writes "model0" for
// an explicit VPP of 1, which its own readers reject). Rank files hold
// compact shards, not whole storages.
package shard
