#!/usr/bin/env python3
"""Run alibaba/ROLL's own converter code on Qwen3.5 checkpoints, with
ROLL's own qwen3_5/qwen3_5_moe registrations and with the modules
`rolltplc build` emits for them, and compare both with the rank files the
Go runtime wrote.

Usage: qwen3_5_roll_check.py ROLL_CHECKOUT BUILD_DIR MANIFEST.json RESULT.json

ROLL_CHECKOUT is a checkout of alibaba/ROLL; its models/converter/*.py and
models/qwen3_5*/__init__.py are copied (unchanged but for the imports of
their HF config and model classes, which need transformers and megatron)
into a temporary tree; nothing of it is in this repository. MANIFEST.json
is a list of {"id", "hf_dir", "mca_dir"} (a Go HF -> MCA conversion at
TP/PP/EP sizes without VPP). For each case:

  1. ROLL's template (add_hf_weight) and DistConverter give every rank's
     tensors from the HF tensors; the rolltpl-built module's template the
     same; both must equal the Go rank files (names, dtypes, shapes, bits);
  2. back: the TP ranks gathered per PP/EP rank, DistConverter(revert) and
     ROLL's add_mca_weight must give every HF tensor back (ROLL writes MoE
     experts one by one: stacked, they must equal the fused HF tensors).

RESULT.json maps case ids to {"checked", "errors"}.
"""
import importlib, json, logging, os, re, shutil, sys, tempfile, types, traceback

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "shard", "testdata"))
import recompute  # noqa: E402
import reference  # noqa: E402
from parallel_reference import layout_from  # noqa: E402

roll, build, manifest, result = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3], sys.argv[4]
tree = tempfile.mkdtemp()
src = os.path.join(roll, "mcore_adapter", "src", "mcore_adapter", "models")
pkg = os.path.join(tree, "mcore_adapter", "models")
for d in ("converter", "qwen3_5", "qwen3_5_moe"):
    os.makedirs(os.path.join(pkg, d))
for d in ("mcore_adapter", "mcore_adapter/models", "mcore_adapter/models/converter"):
    open(os.path.join(tree, d, "__init__.py"), "w").close()
for f in ("template.py", "dist_converter.py", "convert_utils.py"):
    shutil.copy(os.path.join(src, "converter", f), os.path.join(pkg, "converter", f))
drop = re.compile(r"^(from \.+(auto|qwen3_5)?\.?(config_|modeling_)|from \.\.auto\.|register_config\(|register_model\(|__all__)")
for d in ("qwen3_5", "qwen3_5_moe"):
    with open(os.path.join(src, d, "__init__.py")) as fh:
        lines = [l for l in fh if not drop.match(l)]
    with open(os.path.join(pkg, d, "__init__.py"), "w") as fh:
        fh.writelines(lines)


def mod(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


mod("megatron"); mod("megatron.core", mpu=types.SimpleNamespace()); mod("megatron.core.transformer")
mod("megatron.core.transformer.pipeline_parallel_layer_layout", LayerType=object, PipelineParallelLayerLayout=object)
mod("megatron.core.mpu")


class V:
    def __init__(self, s): self.s = s
    def __ge__(self, o): return False


mod("packaging"); mod("packaging.version", Version=V)
mod("transformers", AutoConfig=object, PretrainedConfig=object)
mod("transformers.dynamic_module_utils", get_class_from_dynamic_module=None)
sys.path.insert(0, tree)
sys.path.insert(0, os.path.dirname(build))
import mcore_adapter  # noqa: E402,F401
mod("mcore_adapter.platforms", current_platform=None)
mod("mcore_adapter.utils", get_logger=logging.getLogger, is_megatron_llama=lambda: False)
from mcore_adapter.models.converter import template as T, dist_converter as D  # noqa: E402
# The built package imports every model's ops; the other models' are not
# exercised here.
mod("mcore_adapter.models.qwen3_next", NextGDNConverOp=type("NextGDNConverOp", (T.ConverOp,), {}))
mod("mcore_adapter.models.qwen3_vl_moe", Qwen3VLMoeTemplate=type("Qwen3VLMoeTemplate", (T.VisionTemplate,), {}),
    SplitConverOp=type("SplitConverOp", (T.ConverOp,), {}), SplitStackConverOp=type("SplitStackConverOp", (T.ConverOp,), {}))
importlib.import_module("mcore_adapter.models.qwen3_5")
importlib.import_module("mcore_adapter.models.qwen3_5_moe")
roll_templates = {mt: T.templates[mt] for mt in ("qwen3_5", "qwen3_5_moe")}
importlib.import_module(os.path.basename(build))
ours = {mt: T.templates[mt] for mt in ("qwen3_5", "qwen3_5_moe")}
assert all(ours[mt] is not roll_templates[mt] for mt in ours), "the built package did not replace ROLL's registrations"

DEFAULTS = dict(transformer_impl="transformer_engine", moe_grouped_gemm=False, pipeline_model_parallel_layout=None,
                virtual_pipeline_model_parallel_size=None, account_for_embedding_in_pipeline_split=False,
                account_for_loss_in_pipeline_split=False, expert_model_parallel_size=1, expert_tensor_parallel_size=None,
                num_moe_experts=None, mtp_num_layers=None, moe_use_legacy_grouped_gemm=False)


# Weights whose LoRA adapters the check converts, by their lookup names.
LORA_MCA = [".self_attention.in_proj.weight", ".self_attention.linear_qkv.weight", ".self_attention.linear_proj.weight",
            ".self_attention.out_proj.weight", ".mlp.linear_fc1.weight", ".mlp.linear_fc2.weight", ".linear_fc1.weight",
            ".linear_fc2.weight", "0.linear_fc1.weight", "3.linear_fc2.weight", ".mlp.shared_experts.linear_fc1.weight"]
LORA_HF = [".linear_attn.in_proj_qkv.weight", ".self_attn.q_proj.weight", ".mlp.gate_proj.weight", "gate_up_proj.weight",
           "down_proj.weight", ".gate_proj.weight"]


def to_mca(t, mca, hf):
    t.set_mca_config_for_ops(mca)
    out = {}
    for name, w in hf.items():
        r = t.add_hf_weight(name, w)
        if r:
            out.update(r)
    t.release()
    return out


def ranks_of(mca, full, L):
    out = {}
    for tr in range(L.tp):
        for pr in range(L.pp):
            for er in range(L.ep):
                dc = D.DistConverter(mca, tensor_model_parallel_rank=tr, pipeline_model_parallel_rank=pr,
                                     expert_model_parallel_rank=er, expert_tensor_parallel_rank=tr % L.etp)
                rank = {}
                for name, w in full.items():
                    r = dc(name, w)
                    if r:
                        rank.update(r)
                out[(tr, pr, er)] = rank
    return out


def check(case):
    errors = []
    with open(os.path.join(case["mca_dir"], "mca_config.json")) as f:
        mc = json.load(f)
    lay = layout_from(mc)
    L = reference.Layout(lay)
    cfg = dict(DEFAULTS)
    cfg.update(mc)
    mca = types.SimpleNamespace(**cfg)
    hf = recompute.read_hf(case["hf_dir"])
    mt = mc["hf_model_type"]
    got, fulls = {}, {}
    for who, t in (("ROLL's", roll_templates[mt]), ("rolltpl's", ours[mt])):
        fulls[who] = to_mca(t, mca, hf)
        got[who] = ranks_of(mca, fulls[who], L)
    # hf_name_to_mca_names (what a rank loads): every name ours maps is
    # one the conversion produces. ROLL's raises on fused MTP experts,
    # drops the expert from per-expert MTP names, and maps a
    # linear-attention layer's input norm to the full-attention name (its
    # Qwen3_5Template picks the name per layer only in add_hf_weight):
    # exactly those names are ROLL's failures.
    roll_failures = []
    for who, t in (("ROLL's", roll_templates[mt]), ("rolltpl's", ours[mt])):
        t.set_mca_config_for_ops(mca)
        for n in hf:
            try:
                names = t.hf_name_to_mca_names(n) or []
            except Exception as e:  # noqa: BLE001
                if who == "ROLL's":
                    roll_failures.append(n)
                else:
                    errors.append("rolltpl's hf_name_to_mca_names(%s) raised %r" % (n, e))
                continue
            for m in names:
                # ROLL returns a {} op's MCA name as registered.
                if "{}" in m or m in fulls[who]:
                    continue
                if who == "ROLL's":
                    roll_failures.append(n)
                else:
                    errors.append("%s hf_name_to_mca_names(%s) gives %s, which the conversion does not produce" % (who, n, m))
        t.release()
    want_failures = sorted(n for n in hf if n.startswith("mtp.layers.") and ".mlp.experts." in n
                           or re.match(r"^model\.language_model\.layers\.(\d+)\.input_layernorm\.weight$", n)
                           and mca.layer_types[int(n.split(".")[3])] == "linear_attention")
    if sorted(roll_failures) != want_failures:
        errors.append("ROLL's hf_name_to_mca_names failed on %s, want %s" % (sorted(roll_failures)[:6], want_failures[:6]))
    # LoRA adapters: ROLL's get_lora_conver_op and the built class's give
    # the same op (class, names) for the adapters of every kind of weight.
    lora = {}
    for who, t in (("ROLL's", roll_templates[mt]), ("rolltpl's", ours[mt])):
        t.set_mca_config_for_ops(mca)
        lora[who] = {}
        for side, table in (("mca", t.mca_name_to_converter), ("hf", t.hf_name_to_converter)):
            names = LORA_MCA if side == "mca" else LORA_HF
            for base in names:
                for ab in ("lora_A", "lora_B"):
                    n = base.replace(".weight", "." + ab + ".weight")
                    try:
                        op = t.get_lora_conver_op(n, table, 8)
                        lora[who][(side, n)] = (type(op).__name__, list(op.hf_names), list(op.mca_names), getattr(op, "dim", None))
                    except Exception as e:  # noqa: BLE001
                        lora[who][(side, n)] = ("raises", type(e).__name__)
        t.release()
    for k in lora["ROLL's"]:
        if lora["ROLL's"][k] != lora["rolltpl's"][k]:
            errors.append("LoRA op for %s: ROLL's %s, rolltpl's %s" % (k, lora["ROLL's"][k], lora["rolltpl's"][k]))
    checked = 0
    for key, rank in got["ROLL's"].items():
        tr, pr, er = key
        path = os.path.join(case["mca_dir"], "iter_0000001", L.rank_dir(tr, pr, er), "model_optim_rng.pt")
        go = torch.load(path, map_location="cpu", weights_only=True)["model"]
        emb = "embedding.word_embeddings.weight"
        if L.tied and L.mtp_layers and L.pp > 1 and pr == L.pp - 1 and emb in go and emb not in rank:
            # rolltpl's documented departure (runtime/shard/mtp.go): the
            # MTP stage also holds the tied embedding under its own name,
            # which megatron-core's MTP layers read; ROLL writes only the
            # output_layer.weight copy.
            if not recompute.same(go[emb], rank.get("output_layer.weight", torch.empty(0))):
                errors.append("%s: the MTP stage's embedding differs from ROLL's output_layer.weight" % L.rank_dir(tr, pr, er))
            go = {k: v for k, v in go.items() if k != emb}
        for who, other in (("rolltpl's module", got["rolltpl's"][key]), ("the Go rank file", go)):
            if set(rank) != set(other):
                errors.append("%s: %s has %s extra, %s missing" % (L.rank_dir(tr, pr, er), who,
                              sorted(set(other) - set(rank))[:4], sorted(set(rank) - set(other))[:4]))
            for n in sorted(set(rank) & set(other)):
                if not recompute.same(rank[n], other[n]):
                    errors.append("%s/%s: %s differs from ROLL's" % (L.rank_dir(tr, pr, er), n, who))
                checked += 1
    # Back through ROLL's own template.
    t = roll_templates[mt]
    t.set_mca_config_for_ops(mca)
    back = {}
    for pr in range(L.pp):
        for er in range(L.ep):
            # efficient_mode: random bits hold NaNs, which fail ROLL's
            # equality check of duplicated copies (they are equal bits).
            dc = D.DistConverter(mca, tensor_model_parallel_rank=0, pipeline_model_parallel_rank=pr,
                                 expert_model_parallel_rank=er, revert=True, efficient_mode=True)
            ranks = got["ROLL's"]
            for name in ranks[(0, pr, er)]:
                n_tp = L.etp if ".mlp.experts." in name else L.tp
                full = dc(name, [ranks[(tr, pr, er)][name] for tr in range(n_tp)])
                for n, w in (full or {}).items():
                    r = t.add_mca_weight(n, w)
                    if r:
                        back.update(r)
    t.release()
    fused = re.compile(r"^(.*\.mlp\.experts\.)(gate_up_proj|down_proj)$")
    for n, w in hf.items():
        m = fused.match(n)
        if m:  # ROLL writes the experts one by one
            E = w.shape[0]
            if m.group(2) == "gate_up_proj":
                parts = [torch.cat([back.pop("%s%d.gate_proj.weight" % (m.group(1), e)),
                                    back.pop("%s%d.up_proj.weight" % (m.group(1), e))]) for e in range(E)]
            else:
                parts = [back.pop("%s%d.down_proj.weight" % (m.group(1), e)) for e in range(E)]
            b = torch.stack(parts)
        else:
            b = back.pop(n, None)
        if b is None or not recompute.same(w, b):
            errors.append("back: %s %s" % (n, "missing" if b is None else "differs"))
        checked += 1
    if back:
        errors.append("back: extra %s" % sorted(back)[:4])
    return checked, errors, roll_failures


out = {"torch_version": torch.__version__, "cases": {}}
with open(manifest) as f:
    cases = json.load(f)
for case in cases:
    try:
        checked, errors, roll_failures = check(case)
    except Exception:  # noqa: BLE001
        checked, errors, roll_failures = 0, [traceback.format_exc()], []
    out["cases"][case["id"]] = {"checked": checked, "errors": errors, "roll_failures": roll_failures}
with open(result, "w") as f:
    json.dump(out, f, indent=1)
shutil.rmtree(tree)
