#!/usr/bin/env python3
"""Torch reference for runtime/shard: the tensor every rank file must hold.

Written from the formulas of roll-converter-spec.md §5 (placement §5.4-5.5,
tensor-parallel rules §5.6, experts and grouped GEMM §5.7, renames §5.8),
§3.3 (MCA prefixes) and §6.1 (rank directory names), with real torch ops
(torch.chunk, torch.cat, torch.split, Tensor.t, torch.stack, Tensor.view).
It is an independent implementation, not a port of the Go code or of ROLL.

Usage: reference.py DIR

DIR/manifest.json:
  {"models": {id: [{"name", "dtype", "shape", "offset", "nbytes",
                    "components": null | [{"shape", "offset", "nbytes"}]}]},
   "cases": [{"id", "model", "layout": {...}, "classification": {...}}]}
DIR/inputs.bin holds the raw little-endian tensor bytes.

Writes DIR/results.bin and DIR/results.json:
  {"torch_version", "cases": {id: {"error": str} |
       {"files": {rank_dir: {state_dict_key: [{"name", "dtype", "shape",
                                                "offset", "nbytes"}]}}}}}
"""

import fnmatch
import json
import os
import re
import sys

import torch

DTYPES = {
    "BF16": (torch.bfloat16, torch.int16),
    "F16": (torch.float16, torch.int16),
    "F32": (torch.float32, torch.int32),
}

EMB = "embedding.word_embeddings.weight"
LM_HEAD = "output_layer.weight"


def tensor_from(buf, dtype, shape, offset, nbytes):
    raw = bytearray(buf[offset:offset + nbytes])
    return torch.frombuffer(raw, dtype=DTYPES[dtype][0]).reshape(shape)


def tensor_bytes(t, dtype):
    return t.contiguous().view(DTYPES[dtype][1]).numpy().tobytes()


# ---------------------------------------------------------------- layout


def parse_pipeline_layout(s):
    """Megatron pipeline_model_parallel_layout: commas are cosmetic,
    "(...)*n" repeats a group, "x*n" a character, "|" separates stages."""
    s = s.replace(",", "")
    s = re.sub(r"\(([^)]+)\)\*(\d+)", lambda m: m.group(1) * int(m.group(2)), s)
    s = re.sub(r"(.)\*(\d+)", lambda m: m.group(1) * int(m.group(2)), s)
    stages = s.split("|")
    for st in stages:
        for c in st:
            if c not in "ELtm":
                raise ValueError("bad layout character %r" % c)
    return stages


class Layout:
    def __init__(self, d):
        self.tp = d.get("TP") or 1
        self.pp = d.get("PP") or 1
        self.ep = d.get("EP") or 1
        self.etp = d.get("ETP") or self.tp
        self.num_layers = d["NumLayers"]
        self.num_experts = d.get("NumExperts") or 0
        self.mtp_layers = d.get("MTPNumLayers") or 0
        self.tied = bool(d.get("TiedEmbeddings"))
        self.swiglu = bool(d.get("Swiglu"))
        self.grouped = bool(d.get("MoEGroupedGEMM"))
        self.te_grouped = bool(d.get("TEGroupedMoE"))
        self.local_impl = d.get("TransformerImpl") == "local"
        self.megatron_llama = bool(d.get("MegatronLlama"))
        self.qk = (d.get("LinearNumKeyHeads") or 0) * (d.get("LinearKeyHeadDim") or 0)
        self.v = (d.get("LinearNumValueHeads") or 0) * (d.get("LinearValueHeadDim") or 0)
        self.nv = d.get("LinearNumValueHeads") or 0
        self.per_ep = self.num_experts // self.ep if self.num_experts else 0
        layout = d.get("PipelineLayout") or ""
        if layout:
            stages = parse_pipeline_layout(layout)
            assert len(stages) % self.pp == 0
            self.vpp = len(stages) // self.pp
            # stage s = vp * PP + pp; layers fill stages in s order
            self.counts = [st.count("t") for st in stages]
        else:
            self.vpp = d.get("VPP") or 1
            n_stages = self.pp * self.vpp
            emb = 1 if d.get("AccountForEmbedding") else 0
            loss = 1 if d.get("AccountForLoss") else 0
            total = self.num_layers + emb + loss
            assert total % n_stages == 0
            per = total // n_stages
            self.counts = [per] * n_stages
            self.counts[0] -= emb
            self.counts[-1] -= loss
        self.offsets = []
        off = 0
        for c in self.counts:
            self.offsets.append(off)
            off += c
        assert off == self.num_layers, (off, self.num_layers)

    def layer_stage(self, g):
        """(pp, vp, local) of global decoder layer g."""
        for s, (off, cnt) in enumerate(zip(self.offsets, self.counts)):
            if off <= g < off + cnt:
                return s % self.pp, s // self.pp, g - off
        raise ValueError("layer %d on no stage" % g)

    def first(self, pp, vp):
        return pp == 0 and vp == 0

    def last(self, pp, vp):
        return pp == self.pp - 1 and vp == self.vpp - 1

    def rank_dir(self, tp, pp, ep):
        s = "mp_rank_%02d" % tp
        if self.pp > 1:
            s += "_%03d" % pp
        if self.ep > 1:
            s += "_%03d" % ep
        return s

    def key(self, vp):
        return "model%d" % vp if self.vpp > 1 else "model"


# ---------------------------------------------------------------- names

RE_LAYER = re.compile(r"^decoder\.layers\.(\d+)(?=\.|$)")
RE_EXPERT = re.compile(r"^decoder\.layers\.\d+\.mlp\.experts\.local_experts\.(\d+)(?=\.|$)")
RE_MTP_LAYER = re.compile(r"^mtp\.layers\.(\d+)(?=\.|$)")
RE_MTP_EXPERT = re.compile(r"^mtp\.layers\.\d+\.mtp_model_layer\.mlp\.experts\.local_experts\.(\d+)(?=\.|$)")


def parse(name):
    """(mtp, layer, expert, pure) of an MCA name (§3.3)."""
    if name.startswith("mtp.layers."):
        m = RE_MTP_EXPERT.match(name)
        if m:
            return True, int(RE_MTP_LAYER.match(name).group(1)), int(m.group(1)), name[m.end():].replace(".mtp_model_layer", "")
        m = RE_MTP_LAYER.match(name)
        return True, int(m.group(1)), None, name[m.end():].replace(".mtp_model_layer", "")
    m = RE_EXPERT.match(name)
    if m:
        return False, int(RE_LAYER.match(name).group(1)), int(m.group(1)), name[m.end():]
    m = RE_LAYER.match(name)
    if m:
        return False, int(m.group(1)), None, name[m.end():]
    return False, None, None, name


def build(pure, mtp, layer, expert):
    if not pure.startswith("."):
        return pure
    if not mtp:
        if expert is not None:
            return "decoder.layers.%d.mlp.experts.local_experts.%d%s" % (layer, expert, pure)
        return "decoder.layers.%d%s" % (layer, pure)
    if expert is not None:
        pure = ".mtp_model_layer.mlp.experts.local_experts.%d%s" % (expert, pure)
    inner = ""
    if ".mtp_model_layer" not in pure and any(k in pure for k in ("self_attention", "mlp", "input_layernorm")):
        inner = ".mtp_model_layer"
    return "mtp.layers.%d%s%s" % (layer, inner, pure)


# ---------------------------------------------------------------- classes


def merged_classification(c, L):
    lists = {k: list(c.get(k) or []) for k in
             ("PreProcess", "PostProcess", "Duplicated", "Column", "Row", "Swiglu", "GDN")}
    maps = {k: dict((e["From"], e["To"]) for e in (c.get(k) or [])) for k in
            ("GroupedDuplicated", "GroupedColumn", "GroupedRow", "TEToLocal")}
    if L.grouped and L.te_grouped:
        maps["GroupedColumn"].update({".linear_fc1.weight": ".mlp.experts.linear_fc1.weight",
                                      ".linear_fc1.lora_B.weight": ".mlp.experts.linear_fc1.lora_B.weight"})
        maps["GroupedRow"].update({".linear_fc2.weight": ".mlp.experts.linear_fc2.weight",
                                   ".linear_fc2.lora_A.weight": ".mlp.experts.linear_fc2.lora_A.weight"})
        maps["GroupedDuplicated"].update({".linear_fc1.lora_A.weight": ".mlp.experts.linear_fc1.lora_A.weight",
                                          ".linear_fc2.lora_B.weight": ".mlp.experts.linear_fc2.lora_B.weight"})
    if L.megatron_llama:
        lists["Duplicated"].append(".input_layernorm.weight")
        maps["GroupedColumn"][".linear_fc1.weight"] = ".mlp.weight1"
        maps["GroupedRow"][".linear_fc2.weight"] = ".mlp.weight2"
    return lists, maps


def matches(name, patterns):
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def classify(pure, lists, maps, L):
    if pure.endswith(".bias"):
        pure = pure.replace(".bias", ".weight")
    if L.grouped:
        for cls in ("GroupedDuplicated", "GroupedColumn", "GroupedRow"):
            m = maps[cls]
            if matches(pure, list(m.keys()) + list(m.values())):
                return cls
    if L.swiglu and matches(pure, lists["Swiglu"]):
        return "Swiglu"
    for cls in ("GDN", "Duplicated", "Column", "Row"):
        if matches(pure, lists[cls]):
            return cls
    raise ValueError("unclassified " + pure)


# ---------------------------------------------------------------- split


def components(w, cls, name, L):
    """The components tensor parallelism splits one by one."""
    if w["components"] is not None:
        return w["components"]
    t = w["tensor"]
    if cls == "Swiglu":
        return list(torch.chunk(t, 2, dim=0))
    if "in_proj" in name:
        sizes = [L.qk, L.qk, L.v, L.v, L.nv, L.nv]
    else:
        sizes = [L.qk, L.qk, L.v]
    return list(torch.split(t, sizes, dim=0))


def tp_share(w, cls, T, r, name, L):
    full = w["tensor"]
    if cls == "Duplicated":
        return full
    if cls == "Column":
        parts = torch.chunk(full, T, dim=0)
        assert len(parts) == T
        return parts[r]
    if cls == "Row":
        parts = torch.chunk(full, T, dim=1)
        assert len(parts) == T
        return parts[r]
    if cls in ("Swiglu", "GDN"):
        return torch.cat([torch.chunk(c, T, dim=0)[r] for c in components(w, cls, name, L)], dim=0)
    raise ValueError(cls)


def on_pipeline(name, pp, vp, lists, L):
    if name.startswith("mtp."):
        return L.mtp_layers > 0 and L.last(pp, vp)
    if matches(name, lists["PreProcess"]):
        if name == EMB and (L.mtp_layers > 0 or L.tied) and L.last(pp, vp):
            return True
        return L.first(pp, vp)
    if matches(name, lists["PostProcess"]):
        return L.last(pp, vp)
    mtp, layer, _, _ = parse(name)
    if layer is None:
        return True
    lpp, lvp, _ = L.layer_stage(layer)
    return (lpp, lvp) == (pp, vp)


def stage_names(name, pp, vp, L):
    """The names a global weight takes on stage (pp, vp): tied embeddings
    with PP > 1 are the last stage's LM head, and with MTP layers also its
    embedding (megatron-core's MTP stage has both; ROLL writes only the LM
    head)."""
    if L.tied and L.pp > 1 and L.last(pp, vp) and name == EMB:
        return [LM_HEAD, EMB] if L.mtp_layers > 0 else [LM_HEAD]
    return [name]


def shard(case, weights):
    L = Layout(case["layout"])
    lists, maps = merged_classification(case["classification"], L)
    te_to_local = maps["TEToLocal"]
    grouped_map = {}
    for cls in ("GroupedDuplicated", "GroupedColumn", "GroupedRow"):
        grouped_map.update(maps[cls])
    files = {}  # (rank_dir, key) -> {local name: tensor}
    grouped = {}  # (rank_dir, key, local name, is_fc2) -> {k: transposed share}

    for w in weights:
        for vp in range(L.vpp):
            for pp, name in ((pp, n) for pp in range(L.pp) for n in stage_names(w["name"], pp, vp, L)):
                if not on_pipeline(name, pp, vp, lists, L):
                    continue
                mtp, layer, expert, pure = parse(name)
                if layer is not None and not mtp:
                    layer = L.layer_stage(layer)[2]
                cls = classify(pure, lists, maps, L)
                if L.local_impl:
                    pure = te_to_local.get(pure, pure)
                is_expert = expert is not None
                T = L.etp if is_expert else L.tp
                local_expert = expert % L.per_ep if is_expert else None
                legacy = False
                if cls in ("GroupedColumn", "GroupedRow"):
                    gname = build(grouped_map[pure], mtp, layer, None)
                    if L.te_grouped:
                        local = gname + str(local_expert)
                    else:
                        local = gname
                        legacy = True
                    split_cls = "Row" if cls == "GroupedRow" else ("Swiglu" if L.swiglu else "Column")
                else:
                    local = build(pure, mtp, layer, local_expert)
                    split_cls = cls
                for ep in range(L.ep):
                    if is_expert and expert // L.per_ep != ep:
                        continue
                    for tp in range(L.tp):
                        # Expert shares are indexed by the expert-tensor rank,
                        # tp mod ETP.
                        r = tp % T if is_expert else tp
                        share = tp_share(w, split_cls, T, r, name, L)
                        key = (L.rank_dir(tp, pp, ep), L.key(vp))
                        if legacy:
                            g = grouped.setdefault(key + (local, cls == "GroupedRow"), {})
                            g[local_expert] = share.t().contiguous()
                        else:
                            d = files.setdefault(key, {})
                            assert local not in d, (key, local)
                            d[local] = share

    for (rank_dir, key, local, is_fc2), shares in grouped.items():
        assert sorted(shares) == list(range(L.per_ep)), (local, sorted(shares))
        stacked = torch.stack([shares[k] for k in range(L.per_ep)], dim=0)
        hidden = stacked.shape[2] if is_fc2 else stacked.shape[1]
        view = stacked.view(-1, hidden) if is_fc2 else stacked.view(hidden, -1)
        files.setdefault((rank_dir, key), {})[local] = view
    return files


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(d, "inputs.bin"), "rb") as f:
        buf = f.read()

    models = {}
    for mid, specs in manifest["models"].items():
        ws = []
        for s in specs:
            comps = None
            if s.get("components"):
                comps = [tensor_from(buf, s["dtype"], c["shape"], c["offset"], c["nbytes"]) for c in s["components"]]
                t = torch.cat(comps, dim=0)
            else:
                t = tensor_from(buf, s["dtype"], s["shape"], s["offset"], s["nbytes"])
            ws.append({"name": s["name"], "dtype": s["dtype"], "tensor": t, "components": comps})
        models[mid] = ws

    out = {"torch_version": torch.__version__, "cases": {}}
    blob = bytearray()
    for case in manifest["cases"]:
        ws = models[case["model"]]
        try:
            files = shard(case, ws)
        except Exception as e:  # reported, the Go test fails on it
            out["cases"][case["id"]] = {"error": "%s: %s" % (type(e).__name__, e)}
            continue
        res = {}
        for (rank_dir, key), tensors in sorted(files.items()):
            entries = []
            for local, t in tensors.items():
                dt = [k for k, v in DTYPES.items() if v[0] == t.dtype][0]
                data = tensor_bytes(t, dt)
                entries.append({"name": local, "dtype": dt, "shape": list(t.shape),
                                "offset": len(blob), "nbytes": len(data)})
                blob += data
            res.setdefault(rank_dir, {})[key] = entries
        out["cases"][case["id"]] = {"files": res}
    with open(os.path.join(d, "results.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
