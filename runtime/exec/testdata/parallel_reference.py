#!/usr/bin/env python3
"""Check the rank files of a parallel HF -> MCA conversion against torch.

Usage: parallel_reference.py MANIFEST.json RESULT.json

MANIFEST.json is a list of cases written by runtime/exec's
TestParallelTorchReference:

    {"id": ..., "hf_dir": DIR, "mca_dir": DIR, "config": {...},
     "steps": [{"kind", "params", "inputs", "outputs": [{"name", "class"}]}],
     "classification": {PreProcess, ..., TEToLocal}}

For every case the script

  1. reads the HF safetensors and computes every global MCA weight with the
     op formulas of roll-converter-spec.md §2 (testdata/recompute.py);
  2. computes what every (rank file, state-dict key) must hold from those
     weights with the §5 formulas of runtime/shard/testdata/reference.py,
     driven by the parallel sizes and model facts read here from the
     case's mca_config.json;
  3. loads every rank file under iter_0000001 with
     torch.load(weights_only=True) and compares the rank files, their
     state-dict keys, tensor names, dtypes, shapes and raw bits.

RESULT.json maps case ids to {"checked": N, "files": N, "errors": [...]}
plus "torch_version".
"""

import json
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "shard", "testdata"))

import torch  # noqa: E402

import recompute  # noqa: E402
import reference  # noqa: E402


def layout_from(mc):
    """The reference.Layout fields from mca_config.json (§5.3)."""
    grouped = bool(mc.get("moe_grouped_gemm"))
    impl = mc.get("transformer_impl") or "transformer_engine"
    return {
        "TP": mc.get("tensor_model_parallel_size") or 1,
        "PP": mc.get("pipeline_model_parallel_size") or 1,
        "VPP": mc.get("virtual_pipeline_model_parallel_size") or 1,
        "EP": mc.get("expert_model_parallel_size") or 1,
        "ETP": mc.get("expert_tensor_parallel_size"),
        "AccountForEmbedding": bool(mc.get("account_for_embedding_in_pipeline_split")),
        "AccountForLoss": bool(mc.get("account_for_loss_in_pipeline_split")),
        "PipelineLayout": mc.get("pipeline_model_parallel_layout") or "",
        "NumLayers": mc["num_layers"],
        "NumExperts": mc.get("num_moe_experts") or 0,
        "MTPNumLayers": mc.get("mtp_num_layers") or 0,
        "TiedEmbeddings": bool(mc.get("tie_embeddings_and_output_weights")),
        "Swiglu": bool(mc.get("swiglu")),
        "MoEGroupedGEMM": grouped,
        "TEGroupedMoE": grouped and not mc.get("moe_use_legacy_grouped_gemm") and impl != "local",
        "TransformerImpl": impl,
        "LinearNumKeyHeads": mc.get("linear_num_key_heads") or 0,
        "LinearNumValueHeads": mc.get("linear_num_value_heads") or 0,
        "LinearKeyHeadDim": mc.get("linear_key_head_dim") or 0,
        "LinearValueHeadDim": mc.get("linear_value_head_dim") or 0,
    }


def global_weights(case):
    """The global (TP=1) MCA weights, in plan order, from the HF tensors."""
    hf = recompute.read_hf(case["hf_dir"])
    out = []
    for s in case["steps"]:
        results = recompute.apply_op(s["kind"], s.get("params", {}), case["config"],
                                     [hf[n] for n in s["inputs"]], len(s["outputs"]))
        if len(results) != len(s["outputs"]):
            raise ValueError("%s %s: %d results for %d outputs" % (s["kind"], s["inputs"], len(results), len(s["outputs"])))
        for r, o in zip(results, s["outputs"]):
            comps = None
            if isinstance(r, recompute.Stacked) and r.dim == 0:
                comps = [c.contiguous() for c in r.tensors]
            t = recompute.place(r, o["class"]).contiguous()
            out.append({"name": o["name"], "tensor": t, "components": comps})
    return out


def check_case(case):
    errors = []
    with open(os.path.join(case["mca_dir"], "mca_config.json")) as f:
        mc = json.load(f)
    layout = layout_from(mc)
    want = reference.shard({"layout": layout, "classification": case["classification"]}, global_weights(case))
    L = reference.Layout(layout)
    keys = [L.key(vp) for vp in range(L.vpp)]
    want_dirs = sorted({d for d, _ in want})
    iter_dir = os.path.join(case["mca_dir"], "iter_0000001")
    got_dirs = sorted(os.listdir(iter_dir))
    if got_dirs != want_dirs:
        errors.append("rank directories %s, the formulas give %s" % (got_dirs, want_dirs))
    checked = 0
    for d in got_dirs:
        path = os.path.join(iter_dir, d, "model_optim_rng.pt")
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(sd, dict) or list(sd.keys()) != keys:
            errors.append("%s: top-level keys %s, want %s" % (d, list(sd.keys()) if isinstance(sd, dict) else type(sd), keys))
            continue
        for k in keys:
            got = sd[k]
            exp = want.get((d, k), {})
            if set(got) != set(exp):
                errors.append("%s/%s: extra %s, missing %s" % (d, k, sorted(set(got) - set(exp))[:5], sorted(set(exp) - set(got))[:5]))
            for name in sorted(set(got) & set(exp)):
                a, b = got[name], exp[name]
                if not isinstance(a, torch.Tensor):
                    errors.append("%s/%s/%s: a %s, not a tensor" % (d, k, name, type(a)))
                elif not recompute.same(a, b):
                    errors.append("%s/%s/%s: %s%s differs from the formulas' %s%s" % (
                        d, k, name, a.dtype, tuple(a.shape), b.dtype, tuple(b.shape)))
                checked += 1
    return checked, len(got_dirs), errors


def main():
    manifest, result = sys.argv[1], sys.argv[2]
    with open(manifest) as f:
        cases = json.load(f)
    out = {"torch_version": torch.__version__, "cases": {}}
    for case in cases:
        try:
            checked, files, errors = check_case(case)
        except Exception:  # noqa: BLE001
            checked, files, errors = 0, 0, [traceback.format_exc()]
        out["cases"][case["id"]] = {"checked": checked, "files": files, "errors": errors}
    with open(result, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
