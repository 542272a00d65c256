#!/usr/bin/env python3
"""Reference implementation of ROLL's weight conversion ops in torch.

Written from the formulas of roll-converter-spec.md §2 (not from ROLL's
code) to cross-check the Go implementation in runtime/ops byte for byte.

Usage: torch_reference.py MANIFEST.json RESULTS.json

The manifest lists cases. Each case names an op kind, a direction
("hf_to_mca" or "mca_to_hf"), a dtype (safetensors spelling), the config
values and op parameters, and its inputs. An input is either a plain tensor
{"file": NAME, "shape": [...]} (raw little-endian bytes, row-major, in the
manifest's directory) or a stacked tensor {"stacked": {"dim": D,
"components": [plain, ...]}}. The script writes every result tensor to a
file "<case id>.out<i>[.<j>].bin" in the same directory and RESULTS.json
maps each case id to {"outputs": [...]} in the input notation, or to
{"error": MESSAGE}.
"""

import json
import os
import sys
import traceback

import numpy
import torch

DTYPES = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
}
# Same-size integer types used to move raw bits in and out of torch.
BITS = {2: (torch.int16, numpy.int16), 4: (torch.int32, numpy.int32), 8: (torch.int64, numpy.int64)}


class Stacked:
    """ROLL's StackedTensors: components concatenated along dim."""

    def __init__(self, tensors, dim=0):
        self.tensors = list(tensors)
        self.dim = dim


def load_plain(d, spec, dtype):
    with open(os.path.join(d, spec["file"]), "rb") as f:
        raw = f.read()
    size = torch.empty((), dtype=dtype).element_size()
    tint, nint = BITS[size]
    arr = numpy.frombuffer(raw, dtype=nint).copy()
    return torch.from_numpy(arr).view(dtype).reshape(spec["shape"])


def load(d, spec, dtype):
    if "stacked" in spec:
        s = spec["stacked"]
        return Stacked([load_plain(d, c, dtype) for c in s["components"]], s["dim"])
    return load_plain(d, spec, dtype)


def save_plain(d, name, t):
    t = t.contiguous()
    tint, _ = BITS[t.element_size()]
    data = t.reshape(-1).view(tint).numpy().tobytes() if t.numel() else b""
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    return {"file": name, "shape": list(t.shape)}


def save(d, name, v):
    if isinstance(v, Stacked):
        comps = [save_plain(d, "%s.%d.bin" % (name, j), t) for j, t in enumerate(v.tensors)]
        return {"stacked": {"dim": v.dim, "components": comps}}
    return save_plain(d, name + ".bin", v)


# ---------------------------------------------------------------------------
# Ops. Each takes (inputs, cfg, op) and returns the list of results.
# cfg: config values (hidden_size, num_attention_heads, num_query_groups,
# kv_channels, linear_*, num_moe_experts); op: num_hf, num_mca, dim,
# transpose, hidden_size.


def counts(op, direction):
    if direction == "hf_to_mca":
        return op["num_hf"], op["num_mca"]
    return op["num_mca"], op["num_hf"]


def rename(x, cfg, op, direction):
    return [x[0]]


def copy_op(x, cfg, op, direction):
    _, n = counts(op, direction)
    return [x[0]] * n


def concat(x, cfg, op, direction):
    _, n = counts(op, direction)
    if len(x) == 1:
        return list(torch.chunk(x[0], n, dim=op["dim"]))
    return [torch.cat(x, dim=op["dim"])]


def stack(x, cfg, op, direction):
    if len(x) == 1:
        return list(x[0].tensors)
    return [Stacked(x, op["dim"])]


def drop(x, cfg, op, direction):
    return []


def hidden(cfg, op):
    return op.get("hidden_size") or cfg.get("hidden_size")


def qkv_hf_to_mca(x, cfg, op, direction, bias=False):
    nh, ng, d = cfg["num_attention_heads"], cfg["num_query_groups"], cfg["kv_channels"]
    g = nh // ng
    q, k, v = x
    if bias:
        fused = torch.cat([q.view(ng, g * d), k.view(ng, d), v.view(ng, d)], dim=1)
        return [fused.reshape(-1)]
    h = hidden(cfg, op)
    fused = torch.cat([q.reshape(ng, g * d, h), k.reshape(ng, d, h), v.reshape(ng, d, h)], dim=1)
    return [fused.reshape(-1, h)]


def qkv_mca_to_hf(x, cfg, op, direction, bias=False):
    nh, ng, d = cfg["num_attention_heads"], cfg["num_query_groups"], cfg["kv_channels"]
    g = nh // ng
    w = x[0]
    if bias:
        q, k, v = torch.split(w.view(ng, (g + 2) * d), [g * d, d, d], dim=1)
        return [q.reshape(-1), k.reshape(-1), v.reshape(-1)]
    h = hidden(cfg, op)
    q, k, v = torch.split(w.view(ng, (g + 2) * d, -1), [g * d, d, d], dim=1)
    return [q.reshape(-1, h), k.reshape(-1, h), v.reshape(-1, h)]


def gated_hf_to_mca(x, cfg, op, direction):
    nh, ng, d = cfg["num_attention_heads"], cfg["num_query_groups"], cfg["kv_channels"]
    g = nh // ng
    h = hidden(cfg, op)
    q, k, v = x
    qq, zz = torch.split(q.reshape(ng, g, 2 * d, h), [d, d], dim=2)
    fused = torch.cat([qq, zz, k.reshape(ng, 1, d, h), v.reshape(ng, 1, d, h)], dim=1)
    return [fused.reshape(-1, h)]


def gated_mca_to_hf(x, cfg, op, direction):
    nh, ng, d = cfg["num_attention_heads"], cfg["num_query_groups"], cfg["kv_channels"]
    g = nh // ng
    h = hidden(cfg, op)
    qq, zz, k, v = torch.split(x[0].reshape(ng, 2 * g + 2, d, -1), [g, g, 1, 1], dim=1)
    q = torch.cat([qq, zz], dim=2)
    return [q.reshape(-1, h), k.reshape(-1, h), v.reshape(-1, h)]


def norm_hf_to_mca(x, cfg, op, direction):
    return [x[0] - 1]


def norm_mca_to_hf(x, cfg, op, direction):
    return [x[0] + 1]


def gdn_sizes(cfg):
    nk, nv = cfg["linear_num_key_heads"], cfg["linear_num_value_heads"]
    dk, dv = cfg["linear_key_head_dim"], cfg["linear_value_head_dim"]
    return nk, nv, dk, dv, nk * dk, nv * dv


def conv1d_hf_to_mca(x, cfg, op, direction):
    _, _, _, _, qk, vv = gdn_sizes(cfg)
    return [Stacked(torch.split(x[0], [qk, qk, vv], dim=0), 0)]


def conv1d_mca_to_hf(x, cfg, op, direction):
    return [torch.cat(x[0].tensors, dim=0)]


def next_gdn_hf_to_mca(x, cfg, op, direction):
    nk, nv, dk, dv, qk, vv = gdn_sizes(cfg)
    h = cfg["hidden_size"]
    rho = nv // nk
    qkvz, ba = x
    q, k, v, z = torch.split(qkvz.reshape(nk, 2 * dk + 2 * rho * dv, h), [dk, dk, rho * dv, rho * dv], dim=1)
    b, a = torch.split(ba.reshape(nk, 2 * rho, h), [rho, rho], dim=1)
    return [Stacked([t.reshape(-1, h) for t in (q, k, v, z, b, a)], 0)]


def next_gdn_mca_to_hf(x, cfg, op, direction):
    nk = cfg["linear_num_key_heads"]
    h = cfg["hidden_size"]
    q, k, v, z, b, a = [t.reshape(nk, -1, h) for t in x[0].tensors]
    return [torch.cat([q, k, v, z], dim=1).reshape(-1, h), torch.cat([b, a], dim=1).reshape(-1, h)]


def q35_gdn_hf_to_mca(x, cfg, op, direction):
    nk, nv, dk, dv, qk, vv = gdn_sizes(cfg)
    qkv, z, b, a = x
    q, k, v = torch.split(qkv, [qk, qk, vv], dim=0)
    return [Stacked([q, k, v, z.reshape(vv, -1), b.reshape(nv, -1), a.reshape(nv, -1)], 0)]


def q35_gdn_mca_to_hf(x, cfg, op, direction):
    q, k, v, z, b, a = x[0].tensors
    return [torch.cat([q, k, v], dim=0), z, b, a]


def split_hf_to_mca(x, cfg, op, direction, stack_halves=False):
    w = x[0]
    if op["transpose"]:
        w = w.transpose(1, 2).contiguous()
    out = []
    for e in torch.unbind(w, dim=0):
        if stack_halves:
            out.append(Stacked(torch.chunk(e, 2, dim=0), 0))
        else:
            out.append(e)
    return out


def split_mca_to_hf(x, cfg, op, direction):
    experts = [torch.cat(t.tensors, dim=t.dim) if isinstance(t, Stacked) else t for t in x]
    w = torch.stack(experts, dim=0)
    if op["transpose"]:
        w = w.transpose(1, 2).contiguous()
    return [w]


OPS = {
    "rename": (rename, rename),
    "copy": (copy_op, copy_op),
    "concat": (concat, concat),
    "stack": (stack, stack),
    "drop": (drop, drop),
    "qkv": (qkv_hf_to_mca, qkv_mca_to_hf),
    "qkv_bias": (
        lambda *a: qkv_hf_to_mca(*a, bias=True),
        lambda *a: qkv_mca_to_hf(*a, bias=True),
    ),
    "gated_qkv": (gated_hf_to_mca, gated_mca_to_hf),
    "zero_centered_rmsnorm": (norm_hf_to_mca, norm_mca_to_hf),
    "gdn_conv1d": (conv1d_hf_to_mca, conv1d_mca_to_hf),
    "next_gdn": (next_gdn_hf_to_mca, next_gdn_mca_to_hf),
    "qwen3_5_gdn": (q35_gdn_hf_to_mca, q35_gdn_mca_to_hf),
    "split_experts": (split_hf_to_mca, split_mca_to_hf),
    "split_stack_experts": (lambda *a: split_hf_to_mca(*a, stack_halves=True), split_mca_to_hf),
}


def main():
    manifest_path, results_path = sys.argv[1], sys.argv[2]
    d = os.path.dirname(os.path.abspath(manifest_path))
    with open(manifest_path) as f:
        manifest = json.load(f)
    torch.set_num_threads(1)
    results = {"torch_version": torch.__version__, "cases": {}}
    for case in manifest["cases"]:
        cid = case["id"]
        try:
            dtype = DTYPES[case["dtype"]]
            inputs = [load(d, spec, dtype) for spec in case["inputs"]]
            fwd, rev = OPS[case["kind"]]
            fn = fwd if case["dir"] == "hf_to_mca" else rev
            outs = fn(inputs, case["config"], case["op"], case["dir"])
            results["cases"][cid] = {
                "outputs": [save(d, "%s.out%d" % (case["file_prefix"], i), v) for i, v in enumerate(outs)]
            }
        except Exception:  # reported per case; the Go test fails on it
            results["cases"][cid] = {"error": traceback.format_exc()}
    with open(results_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
