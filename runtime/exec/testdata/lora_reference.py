"""LoRA adapter oracle (lora-fp8.md §1.6, Oracle A re-stated in torch).

Usage: lora_reference.py MANIFEST RESULT

MANIFEST is a JSON object {"mode": "write"|"check", "cases": [...]}; each case
has id, base_mca (an MCA checkpoint written by rolltplc, whose rank files give
the per-rank shapes and layout), save (the LoRA checkpoint root), adapters
([{"name", "r", "alpha", "seed"}]), targets (MCA module names) and, for
"check", out (the PEFT export to compare).

write: for every rank file of base_mca and every targeted weight, writes the
LoRA tensors ROLL saves (SAVE/<adapter>/iter_0000001/mp_rank_*/model_optim_rng.pt,
{"model": {...}}, local layer/expert numbers, duplicated tensors identical on
every TP rank, grouped experts at rank r // top-k, plus `._extra_state`
entries), adapter_config.json, mca_config.json and the tracker; then derives,
from those rank files alone, the PEFT tensors ROLL's LoRAHFConverter
(DistConverter revert + add_mca_weight(lora_rank=r)) produces, in F32, and
saves them as SAVE/<adapter>/expected.pt.

check: compares OUT/adapter_model.safetensors (parsed by hand) with
expected.pt: same key set, dtype, shape and bytes; and adapter_config.json
with the expected fields (ROLL's r, lora_alpha, target_modules, plus the
rank_pattern / alpha_pattern fix for grouped experts).
"""
import io
import json
import os
import re
import struct
import sys
import zlib

import torch


def load_trusted(path):
    """torch.load of a file this test wrote: ROLL's rank files hold
    Transformer Engine's _extra_state as io.BytesIO, which torch >= 2.6's
    default weights_only=True load refuses; ROLL loads its own checkpoints
    with weights_only=False, and so does this oracle."""
    return torch.load(path, map_location="cpu", weights_only=False)


TARGET_RE = re.compile(r"^(.*\.(linear_qkv|linear_proj|linear_fc1|linear_fc2|router|in_proj|out_proj))\.weight(\d*)$")
COLUMN = {"linear_qkv", "linear_fc1", "in_proj"}
DUPLICATED = {"router"}  # LoraRouterParallelLinear: A [r, H], B [E, r] on every rank


def rank_dir(tp, pp, ep, PP, EP):
    s = "mp_rank_%02d" % tp
    if PP > 1:
        s += "_%03d" % pp
    if EP > 1:
        s += "_%03d" % ep
    return s


def gen(key, shape, dtype, scale=1.0):
    g = torch.Generator()
    g.manual_seed(zlib.crc32(key.encode()))
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


def layout(cfg):
    return (cfg.get("tensor_model_parallel_size", 1) or 1, cfg.get("pipeline_model_parallel_size", 1) or 1,
            cfg.get("expert_model_parallel_size", 1) or 1)


def etp1(cfg):
    """Expert tensor parallel size 1 below TP > 1 (only ETP in {1, TP} is supported here)."""
    tp = cfg.get("tensor_model_parallel_size", 1) or 1
    etp = cfg.get("expert_tensor_parallel_size")
    etp = tp if etp is None else etp
    assert etp in (1, tp), etp
    return etp == 1 and tp > 1


def write_case(c):
    base = c["base_mca"]
    cfg = json.load(open(os.path.join(base, "mca_config.json")))
    TP, PP, EP = layout(cfg)
    k = cfg.get("moe_router_topk") or 1
    for ad in c["adapters"]:
        adir = os.path.join(c["save"], ad["name"])
        r = ad["r"]
        dtype = getattr(torch, ad.get("dtype") or "float32")
        sc = ad.get("scale") or 1.0
        for tp in range(TP):
            for pp in range(PP):
                for ep in range(EP):
                    rd = rank_dir(tp, pp, ep, PP, EP)
                    sd = load_trusted(os.path.join(base, "iter_0000001", rd, "model_optim_rng.pt"))["model"]
                    out = {}
                    for name, w in sd.items():
                        m = TARGET_RE.match(name)
                        if not m or m.group(2) not in c["targets"]:
                            continue
                        stem, mod, j = m.group(1), m.group(2), m.group(3)
                        rho = r // k if j != "" else r
                        O, I = w.shape
                        an, bn = stem + ".lora_A.weight" + j, stem + ".lora_B.weight" + j
                        # non-expert weights are the same on every EP rank;
                        # with ETP = 1 expert weights are whole on every TP rank
                        expert = ".mlp.experts." in name
                        e = ep if expert else 0
                        t = 0 if expert and etp1(cfg) else tp
                        seed = "%s/%d/%d/%d/" % (ad["seed"], t, pp, e)
                        dup = "%s/-/%d/%d/" % (ad["seed"], pp, e)
                        if mod in DUPLICATED:
                            out[an] = gen(dup + an, (rho, I), dtype, sc)
                            out[bn] = gen(dup + bn, (O, rho), dtype, sc)
                        elif mod in COLUMN:
                            out[an] = gen(dup + an, (rho, I), dtype, sc)
                            out[bn] = gen(seed + bn, (O, rho), dtype, sc)
                            if j == "":
                                out[stem + ".lora_A._extra_state"] = io.BytesIO()
                        else:
                            out[an] = gen(seed + an, (rho, I), dtype, sc)
                            out[bn] = gen(dup + bn, (O, rho), dtype, sc)
                            out[stem + ".lora_B._extra_state"] = torch.empty(0, dtype=torch.uint8)
                    p = os.path.join(adir, "iter_0000001", rd)
                    os.makedirs(p, exist_ok=True)
                    torch.save({"model": out}, os.path.join(p, "model_optim_rng.pt"))
        with open(os.path.join(adir, "mca_config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        with open(os.path.join(adir, "latest_checkpointed_iteration.txt"), "w") as f:
            f.write("1")
        with open(os.path.join(adir, "adapter_config.json"), "w") as f:
            json.dump({"peft_type": "LORA", "r": r, "lora_alpha": ad["alpha"], "lora_dropout": 0.0,
                       "target_modules": c["targets"], "use_rslora": False, "bias": "none",
                       "modules_to_save": None, "task_type": "CAUSAL_LM"}, f, indent=2)
        torch.save(expected(adir, cfg, c.get("gated", False)), os.path.join(adir, "expected.pt"))


def expected(adir, cfg, gated=False):
    """Oracle A: ROLL's DistConverter(revert) + add_mca_weight(lora_rank=r), re-stated
    (gated: the qwen3_next override of get_lora_conver_op, GatedQKVConverOp)."""
    TP, PP, EP = layout(cfg)
    L = cfg["num_layers"]
    E = cfg.get("num_moe_experts") or 0
    nh, ng = cfg["num_attention_heads"], cfg.get("num_query_groups") or cfg["num_attention_heads"]
    d = cfg.get("kv_channels") or cfg["hidden_size"] // nh
    want = {}
    for pp in range(PP):
        for ep in range(EP):
            sds = [load_trusted(os.path.join(adir, "iter_0000001", rank_dir(tp, pp, ep, PP, EP), "model_optim_rng.pt"))["model"]
                   for tp in range(TP)]
            for name in sds[0]:
                if name.endswith("._extra_state"):
                    continue
                ws = [sd[name] for sd in sds]
                m = re.match(r"^decoder\.layers\.(\d+)\.(.*)\.(linear_qkv|linear_proj|linear_fc1|linear_fc2|router|in_proj|out_proj)\.lora_([AB])\.weight(\d*)$", name)
                assert m, name
                layer = int(m.group(1)) + pp * (L // PP)
                mid, mod, ab, j = m.group(2), m.group(3), m.group(4), m.group(5)
                col = mod in COLUMN
                whole = ".mlp.experts." in name and etp1(cfg)  # ETP = 1: every TP rank holds the whole expert
                if whole or mod in DUPLICATED or (col and ab == "A") or (not col and ab == "B"):
                    for w in ws[1:]:
                        assert torch.equal(w, ws[0]), "TP copies differ: " + name
                    g = ws[0]
                    parts = list(g.chunk(2, 0)) if mod == "linear_fc1" and ab == "B" else None
                elif col:
                    if mod == "in_proj":
                        # gdn class: each of the six components split over TP
                        nk, nv = cfg["linear_num_key_heads"], cfg["linear_num_value_heads"]
                        dk, dv = cfg["linear_key_head_dim"], cfg["linear_value_head_dim"]
                        sizes = [nk * dk, nk * dk, nv * dv, nv * dv, nv, nv]
                        local = [x // TP for x in sizes]
                        pieces = [torch.split(w, local, dim=0) for w in ws]
                        parts = [torch.cat([p[i] for p in pieces]) for i in range(6)]
                        g = torch.cat(parts)
                    elif mod == "linear_fc1":
                        halves = [w.chunk(2, 0) for w in ws]
                        parts = [torch.cat([h[0] for h in halves]), torch.cat([h[1] for h in halves])]
                        g = torch.cat(parts)
                    else:
                        g = torch.cat(ws, 0)
                else:
                    g = torch.cat(ws, 1)
                # HF module prefix
                if mid == "self_attention" and mod in ("in_proj", "out_proj"):
                    hp = "linear_attn."
                elif mid == "self_attention":
                    hp = "self_attn."
                elif mid == "mlp":
                    hp = "mlp."
                elif mid == "mlp.shared_experts":
                    hp = "mlp.shared_expert."
                else:
                    me = re.match(r"^mlp\.experts(?:\.local_experts\.(\d+))?$", mid)
                    assert me, mid
                    local = int(me.group(1)) if me.group(1) is not None else int(j)
                    hp = "mlp.experts.%d." % (ep * (E // EP) + local)
                pre = "base_model.model.model.layers.%d.%s" % (layer, hp)
                suf = ".lora_%s.weight" % ab
                if mod == "linear_qkv":
                    if ab == "A":
                        for p in ("q_proj", "k_proj", "v_proj"):
                            want[pre + p + suf] = g.clone()
                    elif gated:
                        # GatedQKVConverOp with hidden := rank: per group
                        # [nh/ng query heads | nh/ng gate heads | k | v]
                        rho = g.shape[1]
                        x = g.reshape(ng, 2 * nh // ng + 2, d, rho)
                        q, z, k_, v = torch.split(x, [nh // ng, nh // ng, 1, 1], dim=1)
                        want[pre + "q_proj" + suf] = torch.cat([q, z], dim=2).reshape(2 * nh * d, rho)
                        want[pre + "k_proj" + suf] = k_.reshape(ng * d, rho)
                        want[pre + "v_proj" + suf] = v.reshape(ng * d, rho)
                    else:
                        rho = g.shape[1]
                        x = g.reshape(ng, (nh // ng + 2) * d, rho)
                        q, k_, v = torch.split(x, [nh // ng * d, d, d], dim=1)
                        want[pre + "q_proj" + suf] = q.reshape(nh * d, rho)
                        want[pre + "k_proj" + suf] = k_.reshape(ng * d, rho)
                        want[pre + "v_proj" + suf] = v.reshape(ng * d, rho)
                elif mod == "linear_fc1":
                    if ab == "A":
                        want[pre + "gate_proj" + suf] = g.clone()
                        want[pre + "up_proj" + suf] = g.clone()
                    else:
                        want[pre + "gate_proj" + suf] = parts[0]
                        want[pre + "up_proj" + suf] = parts[1]
                elif mod == "in_proj":
                    if ab == "A":
                        want[pre + "in_proj_qkvz" + suf] = g.clone()
                        want[pre + "in_proj_ba" + suf] = g.clone()
                    else:
                        # NextGDNConverOp with hidden := rank: per key head
                        rho = g.shape[1]
                        nk = cfg["linear_num_key_heads"]
                        h = [x.reshape(nk, -1, rho) for x in parts]
                        want[pre + "in_proj_qkvz" + suf] = torch.cat(h[:4], dim=1).reshape(-1, rho)
                        want[pre + "in_proj_ba" + suf] = torch.cat(h[4:], dim=1).reshape(-1, rho)
                elif mod == "out_proj":
                    want[pre + "out_proj" + suf] = g
                elif mod == "router":
                    want[pre + "gate" + suf] = g
                elif mod == "linear_proj":
                    want[pre + "o_proj" + suf] = g
                else:
                    want[pre + "down_proj" + suf] = g
    return {k: v.to(torch.float32).contiguous() for k, v in want.items()}


DT = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        raw = bytearray(b[8 + n + s:8 + n + e])
        t = torch.frombuffer(raw, dtype=DT[v["dtype"]]) if raw else torch.empty(0, dtype=DT[v["dtype"]])
        out[k] = t.reshape(v["shape"])
    return out, hdr.get("__metadata__")


def check_case(c, errors):
    n = 0
    cfg = json.load(open(os.path.join(c["base_mca"], "mca_config.json")))
    k = cfg.get("moe_router_topk") or 1
    grouped = bool(cfg.get("moe_grouped_gemm"))
    for i, ad in enumerate(c["adapters"]):
        want = load_trusted(os.path.join(c["save"], ad["name"], "expected.pt"))
        od = c["out"] if (ad["name"] == "default" or len(c["adapters"]) == 1) else os.path.join(c["out"], ad["name"])
        got, meta = read_safetensors(os.path.join(od, "adapter_model.safetensors"))
        if meta != {"format": "pt"}:
            errors.append("%s: metadata %r" % (ad["name"], meta))
        if set(got) != set(want):
            errors.append("%s: keys differ: missing %s, extra %s" % (ad["name"], sorted(set(want) - set(got))[:4],
                                                                      sorted(set(got) - set(want))[:4]))
        for key in sorted(set(got) & set(want)):
            g, w = got[key], want[key]
            n += 1
            if g.dtype != w.dtype or list(g.shape) != list(w.shape) or not torch.equal(g.view(torch.int32), w.view(torch.int32)):
                errors.append("%s: %s differs: got %s %s, want %s %s" % (ad["name"], key, g.dtype, list(g.shape), w.dtype, list(w.shape)))
        conf = json.load(open(os.path.join(od, "adapter_config.json")))
        mods = sorted({re.sub(r"\.lora_[AB]\.weight$", "", x).rsplit(".", 1)[1] for x in want})
        for f, v in (("r", ad["r"]), ("lora_alpha", ad["alpha"]), ("target_modules", mods), ("peft_type", "LORA"),
                     ("inference_mode", True), ("task_type", "CAUSAL_LM"), ("use_rslora", False), ("lora_dropout", 0.0)):
            if conf.get(f) != v:
                errors.append("%s: adapter_config %s = %r, want %r" % (ad["name"], f, conf.get(f), v))
        rp, ap = {}, {}
        if grouped and k > 1:
            r = ad["r"]
            for p in ("down_proj", "gate_proj", "up_proj"):
                if any(".mlp.experts." in x and "." + p + "." in x for x in want):
                    key = r"mlp\.experts\.\d+\." + p
                    rp[key] = r // k
                    ap[key] = ad["alpha"] * (r // k) / r
        if conf.get("rank_pattern") != rp or conf.get("alpha_pattern") != ap:
            errors.append("%s: patterns %r %r, want %r %r" % (ad["name"], conf.get("rank_pattern"), conf.get("alpha_pattern"), rp, ap))
        # the pattern fix: the PEFT scale of every module is the training alpha/r
        for key, rho in rp.items():
            if abs(ap[key] / rho - ad["alpha"] / ad["r"]) > 1e-12:
                errors.append("%s: scale of %s is not alpha/r" % (ad["name"], key))
    return n


def merge_ref(W, A, B, s):
    """Oracle B (lora-fp8.md §1.6): ordered float64 sum, f64 add, f32 then dtype."""
    acc = torch.zeros(B.shape[0], A.shape[1], dtype=torch.float64)
    for k in range(B.shape[1]):
        acc += B[:, k:k + 1].double() * A[k:k + 1, :].double()
    return (W.double() + acc * s).to(torch.float32).to(W.dtype)


def read_dir(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            out.update(read_safetensors(os.path.join(d, f))[0])
    return out


def bits(t):
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def merge_case(c, errors, stats):
    """Compares c["merged"] with Oracle B applied to c["base_hf"] and the default adapter."""
    ad = c["adapters"][0]
    want_ad = load_trusted(os.path.join(c["save"], ad["name"], "expected.pt"))
    s = float(ad["alpha"]) / float(ad["r"])  # the training scale, also for grouped experts
    base = read_dir(c["base_hf"])
    got = read_dir(c["merged"])
    if set(base) != set(got):
        errors.append("merged keys differ from the base: %s" % sorted(set(base) ^ set(got))[:4])
    n = 0
    for name, W in base.items():
        stem = name[:-len(".weight")] if name.endswith(".weight") else None
        ka = "base_model.model." + (stem or "") + ".lora_A.weight"
        if stem is not None and ka in want_ad:
            A, B = want_ad[ka], want_ad["base_model.model." + stem + ".lora_B.weight"]
            want = merge_ref(W, A, B, s)
            n += 1
            plain = (W.float() + s * (B.float() @ A.float())).to(W.dtype)
            d = (bits(plain).long() - bits(want).long()).abs()
            stats["elements"] += d.numel()
            stats["over1ulp"] += int((d > 1).sum())
            stats["differ"] += int((d > 0).sum())
        else:
            want = W
        g = got.get(name)
        if g is None or g.dtype != want.dtype or list(g.shape) != list(want.shape) or not torch.equal(bits(g), bits(want)):
            errors.append("merged %s differs from the reference" % name)
    return n


def ranks_case(c, errors):
    """Compares the rank files of c["imported"] with the fixture's default adapter."""
    src = os.path.join(c["save"], c["adapters"][0]["name"], "iter_0000001")
    dst = os.path.join(c["imported"], "iter_0000001")
    if sorted(os.listdir(src)) != sorted(os.listdir(dst)):
        errors.append("rank dirs differ: %s vs %s" % (sorted(os.listdir(src)), sorted(os.listdir(dst))))
        return 0
    n = 0
    for rd in sorted(os.listdir(src)):
        a = {k: v for k, v in load_trusted(os.path.join(src, rd, "model_optim_rng.pt"))["model"].items() if not k.endswith("._extra_state")}
        b = load_trusted(os.path.join(dst, rd, "model_optim_rng.pt"))["model"]
        if set(a) != set(b):
            errors.append("%s: names differ: %s" % (rd, sorted(set(a) ^ set(b))[:4]))
        for k in sorted(set(a) & set(b)):
            n += 1
            if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or not torch.equal(bits(a[k]), bits(b[k])):
                errors.append("%s: %s differs" % (rd, k))
    conf = json.load(open(os.path.join(c["imported"], "adapter_config.json")))
    if sorted(conf["target_modules"]) != sorted(c["targets"]) or conf["r"] != c["adapters"][0]["r"]:
        errors.append("imported adapter_config: %r" % conf)
    return n


def main():
    man = json.load(open(sys.argv[1]))
    res = {"torch_version": torch.__version__, "cases": {}}
    for c in man["cases"]:
        errors = []
        n = 0
        try:
            if man["mode"] == "write":
                write_case(c)
            elif man["mode"] == "ranks":
                n = ranks_case(c, errors)
            elif man["mode"] == "merge":
                stats = {"elements": 0, "over1ulp": 0, "differ": 0}
                n = merge_case(c, errors, stats)
                if stats["over1ulp"] > 1e-5 * stats["elements"]:
                    errors.append("plain f32 formula: %(differ)d of %(elements)d elements differ, %(over1ulp)d by more than 1 ulp" % stats)
                json.dump(stats, open(os.path.join(c["merged"] + ".stats.json"), "w"))
            else:
                n = check_case(c, errors)
        except Exception as e:  # reported per case
            import traceback
            errors.append("%s: %s" % (type(e).__name__, traceback.format_exc()))
        res["cases"][c["id"]] = {"errors": errors, "files": 0, "checked": n}
    json.dump(res, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
