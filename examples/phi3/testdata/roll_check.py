"""Run alibaba/ROLL's own converter code (models/converter/template.py,
dist_converter.py, convert_utils.py, unchanged, and ROLL's llama
registration) on the package `rolltplc build` emits for Phi-3, and compare
the rank tensors with those of ROLL's llama template on the same weights
stored apart (q/k/v, gate/up), at TP1, TP2 and TP2+PP2, MHA and GQA; then
convert back through ROLL's DistConverter (revert) and the template's
add_mca_weight and require the fused HF tensors bit for bit.

Usage: python3 roll_check.py ROLL_CHECKOUT BUILD_DIR
ROLL_CHECKOUT is a checkout of alibaba/ROLL; nothing of it is copied into
this repository. Only ROLL's heavy imports are stubbed: megatron,
transformers, packaging and mcore_adapter's platform/utils modules, none
of which the code exercised here calls. Prints ALL OK or MISMATCH.
"""
import importlib, logging, os, shutil, sys, tempfile, types
import torch

roll, build = sys.argv[1], os.path.abspath(sys.argv[2])
tree = tempfile.mkdtemp()
src = os.path.join(roll, "mcore_adapter", "src", "mcore_adapter", "models")
pkg = os.path.join(tree, "mcore_adapter", "models")
os.makedirs(os.path.join(pkg, "converter")); os.makedirs(os.path.join(pkg, "llama"))
for d in ("mcore_adapter", "mcore_adapter/models", "mcore_adapter/models/converter"):
    open(os.path.join(tree, d, "__init__.py"), "w").close()
for f in ("template.py", "dist_converter.py", "convert_utils.py"):
    shutil.copy(os.path.join(src, "converter", f), os.path.join(pkg, "converter", f))
# ROLL's llama registration without its config and model classes.
with open(os.path.join(src, "llama", "__init__.py")) as fh:
    lines = [l for l in fh if not any(w in l for w in ("register_config", "register_model", "LlamaConfig", "LlamaModel", "__all__"))]
with open(os.path.join(pkg, "llama", "__init__.py"), "w") as fh:
    fh.writelines(lines)
def mod(name, **attrs):
    m = types.ModuleType(name); m.__dict__.update(attrs); sys.modules[name] = m; return m

mod("megatron"); mod("megatron.core", mpu=types.SimpleNamespace()); mod("megatron.core.transformer")
mod("megatron.core.transformer.pipeline_parallel_layer_layout", LayerType=object, PipelineParallelLayerLayout=object)
mod("megatron.core.mpu")
class V:
    def __init__(self, s): self.s = s
    def __ge__(self, o): return False
mod("packaging"); mod("packaging.version", Version=V)
mod("transformers", AutoConfig=object); mod("transformers.dynamic_module_utils", get_class_from_dynamic_module=None)
sys.path.insert(0, tree)
sys.path.insert(0, os.path.dirname(build))
import mcore_adapter
mod("mcore_adapter.platforms", current_platform=None)
mod("mcore_adapter.utils", get_logger=logging.getLogger, is_megatron_llama=lambda: False)
from mcore_adapter.models.converter import template as T, dist_converter as D
importlib.import_module("mcore_adapter.models.llama")
importlib.import_module(os.path.basename(build))
print("phi3 template class:", type(T.get_template("phi3")).__name__, [type(o).__name__ for o in T.get_template("phi3").weight_converters][3:7])

def run(nh, ng, d, H, F, L, V_, tp, pp, dtype):
    torch.manual_seed(nh * 100 + ng)
    g = lambda *s: torch.randn(*s).to(dtype)
    hf_llama, hf_phi = {"model.embed_tokens.weight": g(V_, H), "lm_head.weight": g(V_, H), "model.norm.weight": g(H)}, {}
    for l in range(L):
        p = f"model.layers.{l}."
        q, k, v = g(nh * d, H), g(ng * d, H), g(ng * d, H)
        gate, up = g(F, H), g(F, H)
        common = {p + "input_layernorm.weight": g(H), p + "post_attention_layernorm.weight": g(H),
                  p + "self_attn.o_proj.weight": g(H, nh * d), p + "mlp.down_proj.weight": g(H, F)}
        hf_llama.update(common); hf_phi.update(common)
        hf_llama.update({p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k, p + "self_attn.v_proj.weight": v,
                         p + "mlp.gate_proj.weight": gate, p + "mlp.up_proj.weight": up})
        hf_phi.update({p + "self_attn.qkv_proj.weight": torch.cat([q, k, v]), p + "mlp.gate_up_proj.weight": torch.cat([gate, up])})
    for n in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        hf_phi[n] = hf_llama[n]
    ranks = {}
    for mt, hf in (("llama", hf_llama), ("phi3", hf_phi)):
        mca = types.SimpleNamespace(hf_model_type=mt, num_moe_experts=None, swiglu=True, moe_grouped_gemm=False,
            transformer_impl="local", pipeline_model_parallel_layout=None, num_layers=L, pipeline_model_parallel_size=pp,
            virtual_pipeline_model_parallel_size=None, account_for_embedding_in_pipeline_split=False,
            account_for_loss_in_pipeline_split=False, expert_model_parallel_size=1, tensor_model_parallel_size=tp,
            tie_embeddings_and_output_weights=False, hidden_size=H, num_attention_heads=nh, num_query_groups=ng,
            kv_channels=d, ffn_hidden_size=F, mtp_num_layers=None)
        t = T.get_template(mt); t.set_mca_config_for_ops(mca)
        for o in t.weight_converters:
            if hasattr(o, "hidden_size"): o.hidden_size = None  # QKVConverOp caches it per process
        mca_full = {}
        for name, w in hf.items():
            r = t.add_hf_weight(name, w)
            if r: mca_full.update(r)
        t.release()
        out = {}
        for tr in range(tp):
            for pr in range(pp):
                dc = D.DistConverter(mca, tensor_model_parallel_rank=tr, pipeline_model_parallel_rank=pr)
                rank = {}
                for name, w in mca_full.items():
                    r = dc(name, w)
                    if r: rank.update(r)
                out[(tr, pr)] = rank
        ranks[mt] = (out, mca, mca_full)
    (lo, _, _), (po, pmca, _) = ranks["llama"], ranks["phi3"]
    same = all(lo[k].keys() == po[k].keys() and all(torch.equal(lo[k][n], po[k][n]) for n in lo[k]) for k in lo)
    # Back: gather the TP ranks per PP rank, revert, then the phi3 template's MCA -> HF.
    t = T.get_template("phi3"); t.set_mca_config_for_ops(pmca)
    for o in t.weight_converters:
        if hasattr(o, "hidden_size"): o.hidden_size = None
    back = {}
    for pr in range(pp):
        dc = D.DistConverter(pmca, tensor_model_parallel_rank=0, pipeline_model_parallel_rank=pr, revert=True)
        for name in po[(0, pr)]:
            full = dc(name, [po[(tr, pr)][name] for tr in range(tp)])
            for n, w in (full or {}).items():
                r = t.add_mca_weight(n, w)
                if r: back.update(r)
    t.release()
    bit = back.keys() == hf_phi.keys() and all(torch.equal(back[n], hf_phi[n]) and back[n].dtype == hf_phi[n].dtype for n in hf_phi)
    print(f"nh={nh} ng={ng} tp={tp} pp={pp} {dtype}: phi3 rank tensors == ROLL llama's: {same} ({sum(len(v) for v in po.values())} tensors); MCA -> HF fused bit-exact: {bit}")
    return same and bit

ok = True
for (nh, ng, d) in ((4, 4, 3), (8, 2, 2)):  # MHA (mini-like), GQA (medium-like 4:1)
    for tp, pp in ((1, 1), (2, 1), (2, 2)):
        ok &= run(nh, ng, d, nh * d, 10, 2, 16, tp, pp, torch.bfloat16)
print("ALL OK" if ok else "MISMATCH")
shutil.rmtree(tree)
sys.exit(0 if ok else 1)
