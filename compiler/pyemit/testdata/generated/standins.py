"""Minimal stand-ins for ROLL's mcore_adapter template contract, to run a
generated Template subclass without ROLL.

Usage: python3 standins.py BUILD_DIR MODE < request.json

The base Template follows ROLL's template.py (alibaba/ROLL
mcore_adapter/src/mcore_adapter/models/converter/template.py): __post_init__
builds the name-to-op tables, get_conver_op is ROLL's lookup, add_hf_weight
and add_mca_weight buffer weights per prefix and call the op,
convert_hf_to_mca_config_kws and convert_mca_to_hf_config apply the config
maps and constants (returning the keyword dicts instead of config objects).
ConverOps rename (every op of the test template is a rename). Weights are
torch tensors when torch is installed.

The request holds the HF config, the MCA config the Go runtime built, the
HF weight names and the MCA weight names; the output (JSON) the MCA names
each HF weight converts to, the HF names each MCA weight converts back to,
the MCA keyword arguments and the rebuilt HF config.
"""

import importlib
import json
import re
import sys
import types

try:
    import torch

    def weight(i):
        return torch.full((2,), float(i))

except ImportError:  # the names do not depend on the weights

    def weight(i):
        return [float(i)]


def module(name):
    m = types.ModuleType(name)
    sys.modules[name] = m
    return m


mode = sys.argv[2]
root = module("mcore_adapter")
models = module("mcore_adapter.models")
converter = module("mcore_adapter.models.converter")
template = module("mcore_adapter.models.converter.template")
dist = module("mcore_adapter.models.converter.dist_converter")
utils = module("mcore_adapter.utils")
root.models, models.converter, root.utils = models, converter, utils
converter.template, converter.dist_converter = template, dist
utils.is_megatron_llama = lambda: mode == "megatron_llama"


class ConverOp:
    def __init__(self, hf_names, mca_names, _mca_config=None, **kwargs):
        self.hf_names = [hf_names] if isinstance(hf_names, str) else list(hf_names)
        self.mca_names = [mca_names] if isinstance(mca_names, str) else list(mca_names)
        self.mca_config = _mca_config
        for k, v in kwargs.items():
            setattr(self, k, v)

    def is_required_name(self, name, mca_name):
        return name in (self.mca_names if mca_name else self.hf_names)

    def __call__(self, name_to_weight, mca_to_hf=False):
        src, dst = (self.mca_names, self.hf_names) if mca_to_hf else (self.hf_names, self.mca_names)
        if set(name_to_weight) != set(src):
            return None
        return {d: name_to_weight[s] for s, d in zip(src, dst)}


for name in ["RenameConverOp", "CopyConverOp", "StackConverOp", "QKVConverOp", "DropConverOp"]:
    setattr(template, name, type(name, (ConverOp,), {}))


def split_hf(name, prefix):
    if name.startswith(prefix):
        idx, _, rest = name[len(prefix):].partition(".")
        return prefix + idx, "." + rest
    return "", name


def split_mca(name):
    m = re.match(r"^(decoder\.layers\.\d+)(\..*)$", name)
    return (m.group(1), m.group(2)) if m else ("", name)


class Template:
    def __init__(self, hf_model_type, hf_layer_prefix, config_hf_to_mca, weight_converters,
                 constant_mca_config=None, hf_invalid_keys=(), hf_moe_prefix=None, **kwargs):
        self.hf_model_type = hf_model_type
        self.hf_layer_prefix = hf_layer_prefix
        self.config_hf_to_mca = config_hf_to_mca
        self.weight_converters = weight_converters
        self.constant_mca_config = constant_mca_config or {}
        self.constant_hf_config = {}
        self.hf_invalid_keys = list(hf_invalid_keys)
        self.__post_init__()

    def __post_init__(self):
        self.config_mca_to_hf = {v: k for k, v in self.config_hf_to_mca.items()}
        self.hf_name_to_converter = {}
        self.mca_name_to_converter = {}
        for c in self.weight_converters:
            for n in c.hf_names:
                self.hf_name_to_converter[n] = c
            for n in c.mca_names:
                self.mca_name_to_converter[n] = c
        self.prefix_name_to_weight = {}

    def set_mca_config_for_ops(self, mca_config):
        self.mca_config = mca_config
        for c in self.weight_converters:
            c.mca_config = mca_config

    def get_conver_op(self, name, pattern_to_conver_ops):
        if name in pattern_to_conver_ops:
            return pattern_to_conver_ops[name]
        for pattern in pattern_to_conver_ops.keys():
            if re.match(pattern.replace("{}", "(.*?)"), name):
                return pattern_to_conver_ops[pattern]
        raise ValueError(f"can not find conver op for {name}")

    def _add(self, prefix, original, weight, table, mca):
        buf = self.prefix_name_to_weight.setdefault(prefix, {})
        buf[original] = weight
        op = self.get_conver_op(original, table)
        ready = {n: buf.pop(n) for n in list(buf) if op.is_required_name(n, mca_name=mca)}
        res = op(ready, mca_to_hf=mca)
        if res is None:
            buf.update(ready)
        return res

    def add_hf_weight(self, name, weight):
        prefix, original = split_hf(name, self.hf_layer_prefix)
        if original in self.hf_invalid_keys:
            return None
        res = self._add(prefix, original, weight, self.hf_name_to_converter, False)
        if res is None:
            return None
        mca_prefix = "decoder.layers." + prefix[len(self.hf_layer_prefix):] if prefix else ""
        return {mca_prefix + n: w for n, w in res.items()}

    def hf_name_to_mca_names(self, hf_name):
        prefix, original = split_hf(hf_name, self.hf_layer_prefix)
        if original in self.hf_invalid_keys:
            return None
        op = self.get_conver_op(original, self.hf_name_to_converter)
        mca_prefix = "decoder.layers." + prefix[len(self.hf_layer_prefix):] if prefix else ""
        return [mca_prefix + n for n in op.mca_names]

    def add_mca_weight(self, name, weight, **kwargs):
        prefix, original = split_mca(name)
        res = self._add(prefix, original, weight, self.mca_name_to_converter, True)
        if res is None:
            return None
        hf_prefix = self.hf_layer_prefix + prefix[len("decoder.layers."):] if prefix else ""
        return {hf_prefix + n: w for n, w in res.items()}

    def convert_hf_to_mca_config_kws(self, hf_config, **kw_args):
        for k, v in self.config_hf_to_mca.items():
            if hasattr(hf_config, k):
                kw_args[v] = getattr(hf_config, k)
        kw_args["hf_model_type"] = self.hf_model_type
        return {**kw_args, **self.constant_mca_config}

    def convert_mca_to_hf_config(self, mca_config, **kw_args):
        config_dict = json.loads(mca_config.hf_config_json)
        for k, v in self.config_mca_to_hf.items():
            if hasattr(mca_config, k):
                config_dict[v] = getattr(mca_config, k)
        kw_args.update(self.constant_hf_config)
        kw_args = {**config_dict, **kw_args}
        kw_args["model_type"] = self.hf_model_type
        return kw_args


templates = {}


def register_template(hf_model_type, template_class=Template, **kwargs):
    templates[hf_model_type] = template_class(hf_model_type=hf_model_type, **kwargs)


template.Template, template.register_template, template.templates = Template, register_template, templates


class DistParallelConfig:
    def __init__(self, **kwargs):
        self.fields = kwargs

    def merge_configs(self, other):
        return self


dist.DistParallelConfig = DistParallelConfig
dist.dist_configs = {}
dist.register_dist_config = lambda name, config: dist.dist_configs.__setitem__(name, config)

sys.path.insert(0, sys.argv[1].rsplit("/", 1)[0])
pkg = importlib.import_module(sys.argv[1].rsplit("/", 1)[1])
req = json.load(sys.stdin)
tmpl = templates[req["model_type"]]

hf_config = types.SimpleNamespace(**req["hf_config"])
kws = tmpl.convert_hf_to_mca_config_kws(hf_config)
mca_config = types.SimpleNamespace(**req["mca_config"])
tmpl.set_mca_config_for_ops(mca_config)
to_mca = {}
for i, name in enumerate(req["hf_names"]):
    res = tmpl.add_hf_weight(name, weight(i))
    to_mca[name] = sorted(res) if res else []
# What a rank would load for each HF name (ROLL's hf_name_to_mca_names).
names = {name: sorted(tmpl.hf_name_to_mca_names(name) or []) for name in req["hf_names"]}
to_hf = {}
for i, name in enumerate(req["mca_names"]):
    res = tmpl.add_mca_weight(name, weight(i))
    to_hf[name] = sorted(res) if res else []
hf_back = tmpl.convert_mca_to_hf_config(mca_config)
print(json.dumps({"to_mca": to_mca, "names": names, "to_hf": to_hf, "kws": kws, "hf_config": hf_back}))
