"""Run alibaba/ROLL's own converter code (models/converter/template.py,
dist_converter.py, convert_utils.py, unchanged) on the package
`rolltplc build` emits for testdata/mtp.rolltpl, and compare it with the
rank files the Go runtime wrote: for every rank file of the MCA checkpoint
MCA_DIR, ROLL's template (add_hf_weight) and DistConverter on the HF
checkpoint HF_DIR must produce exactly its tensors (names, dtypes, shapes,
values), MTP layers included; then ROLL's DistConverter (revert) and the
template's add_mca_weight on the Go rank files must give back every HF
tensor the template does not ignore, bit for bit.

Usage: python3 mtp_roll_check.py ROLL_CHECKOUT BUILD_DIR MODEL_TYPE HF_DIR MCA_DIR
Only ROLL's heavy imports are stubbed (megatron, transformers, packaging,
mcore_adapter's platform/utils modules). Prints ALL OK or MISMATCH.
"""
import glob, importlib, json, logging, os, shutil, struct, sys, tempfile, types
import torch

roll, build, model_type, hf_dir, mca_dir = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
tree = tempfile.mkdtemp()
src = os.path.join(roll, "mcore_adapter", "src", "mcore_adapter", "models")
pkg = os.path.join(tree, "mcore_adapter", "models")
os.makedirs(os.path.join(pkg, "converter"))
for d in ("mcore_adapter", "mcore_adapter/models", "mcore_adapter/models/converter"):
    open(os.path.join(tree, d, "__init__.py"), "w").close()
for f in ("template.py", "dist_converter.py", "convert_utils.py"):
    shutil.copy(os.path.join(src, "converter", f), os.path.join(pkg, "converter", f))
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
importlib.import_module(os.path.basename(build))

DT = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n]); body = data[8 + n:]
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[a:b]), dtype=DT[info["dtype"]]).reshape(info["shape"])
        out.append((a, name, t))
    return [(name, t) for _, name, t in sorted(out, key=lambda x: x[0])]

hf = []
for path in sorted(glob.glob(os.path.join(hf_dir, "*.safetensors"))):
    hf += read_safetensors(path)
with open(os.path.join(mca_dir, "mca_config.json")) as f:
    mca = types.SimpleNamespace(**json.load(f))
tp, pp, ep = mca.tensor_model_parallel_size, mca.pipeline_model_parallel_size, mca.expert_model_parallel_size
vpp = mca.virtual_pipeline_model_parallel_size or 1
t = T.get_template(model_type)
print("template class:", type(t).__name__)
t.set_mca_config_for_ops(mca)
full = {}
for name, w in hf:
    r = t.add_hf_weight(name, w)
    if r:
        full.update(r)
t.release()

def same(a, b):
    """Bitwise equality (the weights are random bytes, NaNs included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    bits = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.equal(a.contiguous().view(bits), b.contiguous().view(bits))

def rank_dir(r_tp, r_pp, r_ep):
    s = "mp_rank_%02d" % r_tp
    if pp > 1: s += "_%03d" % r_pp
    if ep > 1: s += "_%03d" % r_ep
    return s

ok, compared, mtp = True, 0, 0
go = {}
for r_tp in range(tp):
    for r_pp in range(pp):
        for r_ep in range(ep):
            path = os.path.join(mca_dir, "iter_0000001", rank_dir(r_tp, r_pp, r_ep), "model_optim_rng.pt")
            sd = torch.load(path, map_location="cpu")
            go[(r_tp, r_pp, r_ep)] = sd
            for v in range(vpp):
                key = "model" if vpp == 1 else "model%d" % v
                dc = D.DistConverter(mca, tensor_model_parallel_rank=r_tp, pipeline_model_parallel_rank=r_pp,
                                     expert_model_parallel_rank=r_ep, expert_tensor_parallel_rank=r_tp,
                                     virtual_pipeline_model_parallel_rank=v)
                want = {}
                for name, w in full.items():
                    r = dc(name, w)
                    if r:
                        want.update(r)
                got = sd.get(key, {})
                if sorted(got) != sorted(want):
                    ok = False
                    print("MISMATCH names", rank_dir(r_tp, r_pp, r_ep), key, "go only:", sorted(set(got) - set(want))[:8], "roll only:", sorted(set(want) - set(got))[:8])
                    continue
                for n in want:
                    if not same(got[n], want[n]):
                        ok = False
                        print("MISMATCH tensor", rank_dir(r_tp, r_pp, r_ep), key, n)
                    compared += 1
                    mtp += n.startswith("mtp.")
print("HF -> MCA: %d rank tensors equal to ROLL's (%d MTP)" % (compared, mtp))

# Back: ROLL's DistConverter gathers the TP pieces, the template maps MCA -> HF.
t = T.get_template(model_type)
t.set_mca_config_for_ops(mca)
back = {}
for r_pp in range(pp):
    for r_ep in range(ep):
        for v in range(vpp):
            key = "model" if vpp == 1 else "model%d" % v
            dc = D.DistConverter(mca, tensor_model_parallel_rank=0, pipeline_model_parallel_rank=r_pp,
                                 expert_model_parallel_rank=r_ep, virtual_pipeline_model_parallel_rank=v, revert=True)
            for name in go[(0, r_pp, r_ep)].get(key, {}):
                if r_ep > 0 and ".experts." not in name:
                    continue  # replicated across expert ranks: once
                if name.endswith("._extra_state"):
                    continue
                parts = [go[(r, r_pp, r_ep)][key][name] for r in range(tp)]
                g = dc(name, parts)
                for n, w in (g or {}).items():
                    r = t.add_mca_weight(n, w)
                    if r:
                        back.update(r)
t.release()
kept = {n: w for n, w in hf if n in back or not any(n.endswith(k) for k in t.hf_invalid_keys)}
same = back.keys() == kept.keys() and all(same(back[n], kept[n]) for n in kept)
if not same:
    print("MISMATCH back: missing", sorted(set(kept) - set(back))[:8], "extra", sorted(set(back) - set(kept))[:8])
print("MCA -> HF: %d tensors bit-exact: %s" % (len(back), same))
ok = ok and same and mtp > 0
print("ALL OK" if ok else "MISMATCH")
shutil.rmtree(tree)
sys.exit(0 if ok else 1)
