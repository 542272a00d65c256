"""Run alibaba/ROLL's own deepseek_v3 and glm4_moe templates (their
__init__.py with the hand-written DeepSeekV3Template / Glm4MoeTemplate,
unchanged but for the config/model-class registrations) and the modules
`rolltplc build` emits for the same types, through ROLL's converter code
(template.py, dist_converter.py, convert_utils.py), on the same random
weights, and compare:

  1. convert_hf_to_mca_config_kws (the computed config) key by key;
  2. the global MCA tensors add_hf_weight gives (names, dtypes, bits);
  3. the rank tensors ROLL's DistConverter gives at each layout;
  4. MCA -> HF: revert + add_mca_weight, every HF tensor back bit for bit
     (for both), and convert_mca_to_hf_config key by key.

GLM-4.5's q/k norms are left out (ROLL has no op for them). Cases with
"mtp": true hold an MTP layer: ROLL's own classes must fail on it (their
.transformer_layer names break ROLL's DistConverter) and the built module
must convert it under megatron-core's names and back bit for bit.

Usage: python3 roll_deepseek_glm_check.py ROLL_CHECKOUT BUILD_DIR CASES.json
CASES.json: [{"id", "model_type", "config", "tensors": [[name, dtype, shape]], "mtp"}].
ROLL_CHECKOUT is a checkout of alibaba/ROLL; nothing of it is copied into
this repository. Only ROLL's heavy imports are stubbed (megatron,
transformers, packaging, mcore_adapter's platform/utils modules and its
config/model classes), none of which the code exercised here calls.
Prints ALL OK or MISMATCH.
"""
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
import types

import torch

roll, build, cases_path = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
TYPES = ("deepseek_v3", "glm4_moe")
tree = tempfile.mkdtemp()
src = os.path.join(roll, "mcore_adapter", "src", "mcore_adapter", "models")
pkg = os.path.join(tree, "mcore_adapter", "models")
os.makedirs(os.path.join(pkg, "converter"))
for d in ("mcore_adapter", "mcore_adapter/models", "mcore_adapter/models/converter"):
    open(os.path.join(tree, d, "__init__.py"), "w").close()
for f in ("template.py", "dist_converter.py", "convert_utils.py"):
    shutil.copy(os.path.join(src, "converter", f), os.path.join(pkg, "converter", f))
SKIP = ("register_config", "register_model", "MLAMcaModelConfig", "McaModelConfig", "McaGPTModel",
        "DeepSeekV3Model", "__all__")
for mt in TYPES:
    os.makedirs(os.path.join(pkg, mt))
    with open(os.path.join(src, mt, "__init__.py")) as fh:
        lines = [l for l in fh if not any(w in l for w in SKIP)]
    with open(os.path.join(pkg, mt, "__init__.py"), "w") as fh:
        fh.writelines(lines)


def mod(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


stage = {"last": True}
mpu = types.SimpleNamespace(is_pipeline_last_stage=lambda: stage["last"])
mod("megatron")
mod("megatron.core", mpu=mpu)
mod("megatron.core.transformer")
mod("megatron.core.transformer.pipeline_parallel_layer_layout", LayerType=object, PipelineParallelLayerLayout=object)
mod("megatron.core.mpu")


class V:
    def __init__(self, s):
        self.s = s

    def __ge__(self, o):
        return False


mod("packaging")
mod("packaging.version", Version=V)
mod("transformers", AutoConfig=types.SimpleNamespace(for_model=lambda **kw: kw))
mod("transformers.dynamic_module_utils", get_class_from_dynamic_module=None)
sys.path.insert(0, tree)
sys.path.insert(0, os.path.dirname(build))
import mcore_adapter  # noqa: E402,F401

mod("mcore_adapter.platforms", current_platform=None)
mod("mcore_adapter.utils", get_logger=logging.getLogger, is_megatron_llama=lambda: False)
from mcore_adapter.models.converter import dist_converter as D  # noqa: E402
from mcore_adapter.models.converter import template as T  # noqa: E402

for mt in TYPES:
    importlib.import_module("mcore_adapter.models." + mt)
impls = {"roll": ({mt: T.templates.pop(mt) for mt in TYPES}, {mt: D.dist_configs.pop(mt) for mt in TYPES})}
importlib.import_module(os.path.basename(build))
impls["rolltpl"] = ({mt: T.templates[mt] for mt in TYPES}, {mt: D.dist_configs[mt] for mt in TYPES})
print("classes:", {k: {mt: type(v[0][mt]).__name__ for mt in TYPES} for k, v in impls.items()})

DT = {"BF16": torch.bfloat16, "F32": torch.float32, "F16": torch.float16}
LAYOUTS = ((1, 1, 1), (2, 1, 1), (1, 2, 1), (2, 1, 2), (2, 2, 2))


class HFConfig(types.SimpleNamespace):
    def to_json_string(self):
        return json.dumps({k: v for k, v in self.__dict__.items() if k != "name_or_path"})


def eq(x, y):
    """Bit equality of tensors, or of ROLL's StackedTensors part by part."""
    if hasattr(x, "tensors") or hasattr(y, "tensors"):
        xs, ys = getattr(x, "tensors", None), getattr(y, "tensors", None)
        return (xs is not None and ys is not None and len(xs) == len(ys) and x.dim == y.dim
                and all(eq(a, b) for a, b in zip(xs, ys)))
    return x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)


def same(a, b):
    return a.keys() == b.keys() and all(eq(a[n], b[n]) for n in a)


def convert(impl, mt, hf, cfg, tp, pp, ep, transformer_impl="transformer_engine"):
    """HF -> MCA ranks -> HF with one implementation; returns the pieces."""
    tmpls, dists = impls[impl]
    D.dist_configs[mt] = dists[mt]
    t = tmpls[mt]
    kws = t.convert_hf_to_mca_config_kws(HFConfig(name_or_path="/x", **cfg))
    mca = types.SimpleNamespace(**kws)
    mca.__dict__.update(hf_model_type=mt, moe_grouped_gemm=False, transformer_impl=transformer_impl,
                        pipeline_model_parallel_layout=None, pipeline_model_parallel_size=pp,
                        virtual_pipeline_model_parallel_size=None, account_for_embedding_in_pipeline_split=False,
                        account_for_loss_in_pipeline_split=False, expert_model_parallel_size=ep,
                        expert_tensor_parallel_size=tp, tensor_model_parallel_size=tp,
                        tie_embeddings_and_output_weights=bool(cfg.get("tie_word_embeddings")),
                        mtp_num_layers=kws.get("mtp_num_layers") or None, num_query_groups=kws.get("num_query_groups"))
    t.set_mca_config_for_ops(mca)
    for o in t.weight_converters:
        if hasattr(o, "hidden_size"):
            o.hidden_size = None  # QKVConverOp caches it per process
    full = {}
    for name, w in hf.items():
        r = t.add_hf_weight(name, w)
        if r:
            full.update(r)
    t.release()
    ranks = {}
    for tr in range(tp):
        for pr in range(pp):
            for er in range(ep):
                dc = D.DistConverter(mca, tensor_model_parallel_rank=tr, pipeline_model_parallel_rank=pr,
                                     expert_model_parallel_rank=er, expert_tensor_parallel_rank=tr)
                rank = {}
                for name, w in full.items():
                    r = dc(name, w)
                    if r:
                        rank.update(r)
                ranks[(tr, pr, er)] = rank
    back = {}
    for pr in range(pp):
        stage["last"] = pr == pp - 1
        for er in range(ep):
            dc = D.DistConverter(mca, tensor_model_parallel_rank=0, pipeline_model_parallel_rank=pr,
                                 expert_model_parallel_rank=er, revert=True)
            for name in ranks[(0, pr, er)]:
                got = dc(name, [ranks[(tr, pr, er)][name] for tr in range(tp)])
                for n, w in (got or {}).items():
                    r = t.add_mca_weight(n, w)
                    if r:
                        back.update(r)
    t.release()
    stage["last"] = True
    hf_back = t.convert_mca_to_hf_config(mca)
    return kws, full, ranks, back, hf_back


def check_mtp(case, hf, cfg):
    """A checkpoint with MTP layers: ROLL's own class fails on it; the
    built module converts it under ROLL's converter, MTP layers named as
    megatron-core does, and back bit for bit (the shared embedding and
    head copies of the MTP layer are ignored, as hf_invalid_keys says)."""
    mt, good = case["model_type"], True
    L = cfg["num_hidden_layers"]
    want_back = {n: w for n, w in hf.items()
                 if not n.startswith("model.layers.%d.embed_tokens." % L) and ".shared_head.head." not in n}
    for tp, pp, ep in LAYOUTS:
        try:
            convert("roll", mt, hf, cfg, tp, pp, ep)
            roll_fails = "converted"
        except Exception as e:  # noqa: BLE001
            roll_fails = type(e).__name__
        T.templates[mt].prefix_name_to_weight = {}
        impls["roll"][0][mt].prefix_name_to_weight = {}
        _, _, ranks, back, _ = convert("rolltpl", mt, hf, cfg, tp, pp, ep)
        names = {n for r in ranks.values() for n in r}
        inner = any(n.startswith("mtp.layers.0.mtp_model_layer.") for n in names)
        block = "mtp.layers.0.eh_proj.weight" in names
        back_ok = same(back, want_back)
        print(f"{case['id']} with MTP tp={tp} pp={pp} ep={ep}: ROLL's class: {roll_fails}; built module: "
              f"mtp.layers.0.mtp_model_layer.* {inner}, mtp.layers.0.eh_proj {block}, HF back {back_ok}")
        good &= roll_fails != "converted" and inner and block and back_ok
    return good


def check_local(case, hf, cfg):
    """Megatron's local (non-TE) layers: ROLL's own glm4_moe class fails
    MCA -> HF (its dist config's te_to_local map renames the MoE layers'
    pre_mlp_layernorm to the dense layers' fused name, which its
    add_mca_weight cannot map back); the built module converts it back bit
    for bit."""
    mt = case["model_type"]
    try:
        convert("roll", mt, hf, cfg, 2, 1, 2, "local")
        roll_fails = "converted"
    except Exception as e:  # noqa: BLE001
        roll_fails = type(e).__name__
    for impl in impls:
        impls[impl][0][mt].prefix_name_to_weight = {}
    _, _, _, back, _ = convert("rolltpl", mt, hf, cfg, 2, 1, 2, "local")
    back_ok = same(back, hf)
    print(f"{case['id']} transformer_impl=local tp=2 ep=2: ROLL's class: {roll_fails}; built module: HF back {back_ok}")
    return roll_fails != "converted" and back_ok


ok = True
with open(cases_path) as fh:
    cases = json.load(fh)
for case in cases:
    mt, cfg = case["model_type"], dict(case["config"])
    if case.get("mtp"):
        torch.manual_seed(len(case["id"]))
        hf = {name: torch.randn(*shape).to(DT[dt]) for name, dt, shape in case["tensors"]}
        cfg.pop("auto_map", None)
        ok &= check_mtp(case, hf, cfg)
        continue
    cfg.pop("auto_map", None)  # remote code: ROLL would load the config class from the Hub
    torch.manual_seed(len(case["id"]))
    hf = {}
    for name, dt, shape in case["tensors"]:
        hf[name] = torch.randn(*shape).to(DT[dt])
    for tp, pp, ep in LAYOUTS:
        res = {impl: convert(impl, mt, hf, cfg, tp, pp, ep) for impl in impls}
        (rk, rf, rr, rb, rh), (ok_, of, orr, ob, oh) = res["roll"], res["rolltpl"]
        drop = ("hf_config_json", "name_or_path")
        cfg_same = {k: v for k, v in rk.items() if k not in drop} == {k: v for k, v in ok_.items() if k not in drop}
        if not cfg_same:
            diff = sorted(k for k in set(rk) | set(ok_) if rk.get(k, "<absent>") != ok_.get(k, "<absent>"))
            print("  config differs:", [(k, rk.get(k, "<absent>"), ok_.get(k, "<absent>")) for k in diff])
        full_same = same(rf, of)
        if not full_same:
            print("  global MCA differs: only ROLL", sorted(set(rf) - set(of))[:5], "only rolltpl", sorted(set(of) - set(rf))[:5])
        ranks_same = rr.keys() == orr.keys() and all(same(rr[k], orr[k]) for k in rr)
        back_roll, back_ours = same(rb, hf), same(ob, hf)
        hfcfg_same = {k: v for k, v in rh.items() if k != "name_or_path"} == {k: v for k, v in oh.items() if k != "name_or_path"}
        if not hfcfg_same:
            print("  HF config back differs:", sorted(k for k in set(rh) | set(oh) if rh.get(k) != oh.get(k)))
        n = sum(len(v) for v in orr.values())
        print(f"{case['id']} tp={tp} pp={pp} ep={ep}: config {cfg_same}, global MCA {full_same} ({len(of)}), "
              f"ranks {ranks_same} ({n}), HF back ROLL {back_roll} rolltpl {back_ours}, HF config back {hfcfg_same}")
        ok &= cfg_same and full_same and ranks_same and back_roll and back_ours and hfcfg_same
    if mt == "glm4_moe":
        ok &= check_local(case, hf, cfg)
print("ALL OK" if ok else "MISMATCH")
shutil.rmtree(tree)
sys.exit(0 if ok else 1)
