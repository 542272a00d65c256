#!/usr/bin/env python3
"""Recompute MCA checkpoints written by rolltpl from their HF sources, with torch.

Usage: recompute.py MANIFEST.json RESULT.json

MANIFEST.json is a list of cases written by runtime/exec's torch test:

    {"id": ..., "hf_dir": DIR, "pt": PATH, "config": {...},
     "ignored": [HF names], "dropped": [HF names],
     "steps": [{"kind": K, "params": {...}, "inputs": [HF names],
                "outputs": [{"name": MCA name, "class": C}, ...]}]}

For every case the script

  1. loads the .pt with torch.load, and again with weights_only=True;
  2. checks that the state dict is exactly {"model": {...}} and that its
     tensor names are exactly the outputs of the steps;
  3. reads the HF safetensors files itself (no safetensors package) and
     checks that every HF tensor is an input of exactly one step, or is
     ignored or dropped;
  4. with "resave": PATH, saves the loaded state dict again with torch.save
     at PATH, for the Go test to read a file torch itself wrote;
  5. recomputes every MCA tensor from the HF inputs with torch, using the
     op formulas of roll-converter-spec.md §2 (written from the spec, not
     from the Go code) and the TP=1 placement of §5.6 (swiglu and gdn
     stacks concatenated), and compares it bit for bit (dtype, shape and
     the raw bits).

RESULT.json maps case ids to {"checked": N, "errors": [...]} plus
"torch_version".
"""

import json
import os
import struct
import sys
import traceback

import numpy
import torch

DTYPES = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}
# Same-size integer types used to move and compare raw bits.
INTS = {1: (torch.uint8, numpy.uint8), 2: (torch.int16, numpy.int16), 4: (torch.int32, numpy.int32), 8: (torch.int64, numpy.int64)}


def read_safetensors(path):
    """Return {name: tensor} of a safetensors file (copies the bytes)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = DTYPES[info["dtype"]]
        b, e = info["data_offsets"]
        size = torch.empty((), dtype=dtype).element_size()
        tint, nint = INTS[size]
        arr = numpy.frombuffer(raw[base + b : base + e], dtype=nint).copy()
        out[name] = torch.from_numpy(arr).view(dtype).reshape(info["shape"])
    return out


def read_hf(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for fn in files:
        out.update(read_safetensors(os.path.join(d, fn)))
    return out


def bits(t):
    size = t.element_size()
    return t.contiguous().view(INTS[size][0]) if t.dtype != torch.bool else t.to(torch.uint8)


def same(a, b):
    return a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) and torch.equal(bits(a), bits(b))


class Stacked:
    def __init__(self, tensors, dim=0):
        self.tensors = list(tensors)
        self.dim = dim


# --- op formulas (HF -> MCA), roll-converter-spec.md §2 ---------------------


def qkv(cfg, q, k, v, hidden=None):
    ng = cfg["num_query_groups"]
    H = hidden or cfg["hidden_size"] or q.shape[-1]
    return torch.cat([q.reshape(ng, -1, H), k.reshape(ng, -1, H), v.reshape(ng, -1, H)], dim=1).reshape(-1, H)


def qkv_bias(cfg, q, k, v):
    ng = cfg["num_query_groups"]
    return torch.cat([q.reshape(ng, -1), k.reshape(ng, -1), v.reshape(ng, -1)], dim=1).reshape(-1)


def gated_qkv(cfg, q, k, v, hidden=None):
    nh, ng, d = cfg["num_attention_heads"], cfg["num_query_groups"], cfg["kv_channels"]
    H = hidden or cfg["hidden_size"] or q.shape[-1]
    g = nh // ng
    q = q.reshape(ng, g, 2 * d, H)
    qq, zz = torch.split(q, [d, d], dim=2)
    kk = k.reshape(ng, 1, d, H)
    vv = v.reshape(ng, 1, d, H)
    return torch.cat([qq, zz, kk, vv], dim=1).reshape(-1, H)


def gdn_sizes(cfg):
    nk, nv = cfg["linear_num_key_heads"], cfg["linear_num_value_heads"]
    dk, dv = cfg["linear_key_head_dim"], cfg["linear_value_head_dim"]
    return nk, nv, dk, dv, nk * dk, nv * dv


def apply_op(kind, params, cfg, inputs, n_out):
    if kind == "rename":
        return [inputs[0]]
    if kind == "copy":
        return [inputs[0]] * n_out
    if kind == "concat":
        dim = params.get("dim", 0)
        if len(inputs) == 1:
            return list(torch.chunk(inputs[0], n_out, dim=dim))
        return [torch.cat(inputs, dim=dim)]
    if kind == "stack":
        return [Stacked(inputs, params.get("dim", 0))]
    if kind == "qkv":
        return [qkv(cfg, *inputs, hidden=params.get("hidden_size"))]
    if kind == "qkv_bias":
        return [qkv_bias(cfg, *inputs)]
    if kind == "gated_qkv":
        return [gated_qkv(cfg, *inputs, hidden=params.get("hidden_size"))]
    if kind == "zero_centered_rmsnorm":
        return [inputs[0] - 1]
    if kind == "gdn_conv1d":
        nk, nv, dk, dv, QK, V = gdn_sizes(cfg)
        return [Stacked(torch.split(inputs[0], [QK, QK, V], dim=0))]
    if kind == "next_gdn":
        nk, nv, dk, dv, QK, V = gdn_sizes(cfg)
        rho = nv // nk
        qkvz, ba = inputs
        H = qkvz.shape[-1]
        q, k, v, z = torch.split(qkvz.reshape(nk, -1, H), [dk, dk, rho * dv, rho * dv], dim=1)
        b, a = torch.split(ba.reshape(nk, -1, H), [rho, rho], dim=1)
        return [Stacked([x.reshape(-1, H) for x in (q, k, v, z, b, a)])]
    if kind == "qwen3_5_gdn":
        nk, nv, dk, dv, QK, V = gdn_sizes(cfg)
        qkv_, z, b, a = inputs
        q, k, v = torch.split(qkv_, [QK, QK, V], dim=0)
        return [Stacked([q, k, v, z.reshape(V, -1), b.reshape(nv, -1), a.reshape(nv, -1)])]
    if kind in ("split_experts", "split_stack_experts"):
        x = inputs[0]
        if params.get("transpose"):
            x = x.transpose(1, 2).contiguous()
        experts = list(torch.unbind(x, dim=0))
        if kind == "split_stack_experts":
            return [Stacked(torch.chunk(e, 2, dim=0)) for e in experts]
        return experts
    raise ValueError("unknown op kind %r" % kind)


def place(value, cls):
    """TP=1 placement (§5.6): swiglu/gdn stacks are concatenated."""
    if isinstance(value, Stacked):
        if cls not in ("swiglu", "gdn"):
            raise ValueError("a stacked result for a %s weight" % cls)
        return torch.cat(value.tensors, dim=value.dim)
    return value


def check_case(case):
    errors = []
    sd = torch.load(case["pt"], map_location="cpu")
    sd_safe = torch.load(case["pt"], map_location="cpu", weights_only=True)
    for label, obj in (("torch.load", sd), ("weights_only", sd_safe)):
        if not isinstance(obj, dict) or list(obj.keys()) != ["model"]:
            errors.append("%s: top level is %r, want a dict with the single key 'model'" % (label, type(obj)))
            return 0, errors
    model, model_safe = sd["model"], sd_safe["model"]
    want = [o["name"] for s in case["steps"] for o in s["outputs"]]
    if list(model.keys()) != want:
        errors.append("state dict names differ from the plan: extra %s, missing %s" % (
            sorted(set(model) - set(want))[:5], sorted(set(want) - set(model))[:5]))
    for name in model:
        if not same(model[name], model_safe[name]):
            errors.append("%s: torch.load and weights_only=True disagree" % name)

    if case.get("resave"):
        os.makedirs(os.path.dirname(case["resave"]), exist_ok=True)
        torch.save(sd, case["resave"])

    hf = read_hf(case["hf_dir"])
    seen = {}
    for s in case["steps"]:
        for n in s["inputs"]:
            seen[n] = seen.get(n, 0) + 1
    for n in case["ignored"] + case["dropped"]:
        seen[n] = seen.get(n, 0) + 1
    for n in hf:
        if seen.get(n, 0) != 1:
            errors.append("HF tensor %s is consumed %d times" % (n, seen.get(n, 0)))
    for n in seen:
        if n not in hf:
            errors.append("plan input %s is not in the HF checkpoint" % n)

    cfg = case["config"]
    checked = 0
    for s in case["steps"]:
        try:
            results = apply_op(s["kind"], s.get("params", {}), cfg, [hf[n] for n in s["inputs"]], len(s["outputs"]))
        except Exception as e:  # noqa: BLE001
            errors.append("%s %s: %s" % (s["kind"], s["inputs"], e))
            continue
        if len(results) != len(s["outputs"]):
            errors.append("%s %s: %d results for %d outputs" % (s["kind"], s["inputs"], len(results), len(s["outputs"])))
            continue
        for r, o in zip(results, s["outputs"]):
            got = model.get(o["name"])
            if got is None:
                continue
            want_t = place(r, o["class"])
            if not same(want_t, got):
                errors.append("%s: %s%s from %s differs from torch's %s%s" % (
                    o["name"], got.dtype, tuple(got.shape), s["kind"], want_t.dtype, tuple(want_t.shape)))
            checked += 1
    return checked, errors


def main():
    manifest, result = sys.argv[1], sys.argv[2]
    with open(manifest) as f:
        cases = json.load(f)
    out = {"torch_version": torch.__version__, "cases": {}}
    for case in cases:
        try:
            checked, errors = check_case(case)
        except Exception:  # noqa: BLE001
            checked, errors = 0, [traceback.format_exc()]
        out["cases"][case["id"]] = {"checked": checked, "errors": errors}
    with open(result, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
