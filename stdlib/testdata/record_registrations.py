"""Import a package built by `rolltplc build` against recording stand-ins for
mcore_adapter's template and dist_converter modules, and print what it
registered as JSON, in the shape of shared/testdata/roll-templates.json.

Usage: python3 record_registrations.py BUILD_DIR MODE
MODE is "core" (is_megatron_llama() false) or "megatron_llama" (true).

The stand-ins follow ROLL's semantics as roll-converter-spec.md states them:
ConverOp normalises a single name to a list; StackConverOp and ConcatConverOp
default dim to 0; QKVConverOp and GatedQKVConverOp default hidden_size to
None; VisionTemplate prefixes config keys with "text_config."; DistParallelConfig
merges like merge_configs; register_dist_config asserts on duplicates. Every
ROLL model type is pre-registered, as importing mcore_adapter.models does, so
that re-registration is exercised.
"""

import dataclasses
import importlib
import json
import os
import sys
import types

ROLL_TYPES = [
    "deepseek_v3", "glm4_moe", "llama", "mistral", "mixtral", "qwen2", "qwen2_5_vl", "qwen2_moe", "qwen2_vl",
    "qwen3", "qwen3_5", "qwen3_5_moe", "qwen3_moe", "qwen3_next", "qwen3_omni_moe", "qwen3_vl", "qwen3_vl_moe",
    "seed_oss",
]


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
    extra = {}

    def __init__(self, hf_names, mca_names, **kwargs):
        self.hf_names = [hf_names] if isinstance(hf_names, str) else list(hf_names)
        self.mca_names = [mca_names] if isinstance(mca_names, str) else list(mca_names)
        unknown = set(kwargs) - set(self.extra)
        assert not unknown, f"{type(self).__name__} got unexpected arguments {unknown}"
        self.fields = {**self.extra, **kwargs}

    def record(self):
        rec = {"op": type(self).__name__, "hf_names": self.hf_names, "mca_names": self.mca_names, **self.fields}
        if type(self).__module__ != __name__:
            rec["module"] = type(self).__module__
        return rec


def op_class(name, base=ConverOp, **extra):
    cls = type(name, (base,), {"extra": extra})
    setattr(template, name, cls)
    return cls


for name in ["RenameConverOp", "CopyConverOp", "DropConverOp", "QKVBiasConverOp", "GDNConv1dConverOp",
             "ZeroCenteredRMSNormConverOp"]:
    op_class(name)
op_class("StackConverOp", dim=0)
op_class("ConcatConverOp", dim=0)
op_class("GatedQKVConverOp", op_class("QKVConverOp", hidden_size=None), hidden_size=None)

# Ops ROLL defines beside a model's template (the support module imports
# them from these modules).
for mod_name, classes in {
    "qwen3_next": ["NextGDNConverOp"],
    "qwen3_5": ["Qwen3_5_GDNConverOp"],
    "qwen3_vl_moe": ["SplitConverOp", "SplitStackConverOp"],
    "qwen3_5_moe": ["SplitConverOp", "SplitStackConverOp"],
}.items():
    mod = module("mcore_adapter.models." + mod_name)
    setattr(models, mod_name, mod)
    for cls_name in classes:
        setattr(mod, cls_name, type(cls_name, (ConverOp,), {"extra": {}, "__module__": mod.__name__}))


class Template:
    def __init__(self, hf_model_type, hf_layer_prefix, config_hf_to_mca, weight_converters, constant_mca_config,
                 constant_hf_config, hf_invalid_keys, hf_moe_prefix=None, config_mca_to_hf=None, **other):
        self.hf_model_type = hf_model_type
        self.hf_layer_prefix = hf_layer_prefix
        self.hf_moe_prefix = hf_moe_prefix
        self.config_hf_to_mca = config_hf_to_mca
        self.weight_converters = weight_converters
        self.constant_mca_config = constant_mca_config
        self.constant_hf_config = constant_hf_config
        self.hf_invalid_keys = hf_invalid_keys
        self.config_mca_to_hf = config_mca_to_hf
        self.other = other

    def adjust_config_hf_to_mca(self):
        return self.config_hf_to_mca


class VisionTemplate(Template):
    def adjust_config_hf_to_mca(self):
        keep = {k for k in self.config_hf_to_mca if k.endswith("_token_id")} | {"vision_config", "tie_word_embeddings"}
        return {(k if k in keep else "text_config." + k): v for k, v in self.config_hf_to_mca.items()}


template.Template, template.VisionTemplate = Template, VisionTemplate

# Template classes ROLL defines beside a model (they gather fused experts
# back in add_mca_weight; only the class is recorded here).
for mod_name, cls_name, base in [("qwen3_vl_moe", "Qwen3VLMoeTemplate", VisionTemplate),
                                  ("qwen3_next", "Qwen3NextTemplate", Template)]:
    setattr(sys.modules["mcore_adapter.models." + mod_name], cls_name,
            type(cls_name, (base,), {"__module__": "mcore_adapter.models." + mod_name}))
template.templates = {t: None for t in ROLL_TYPES}


def register_template(hf_model_type, config_hf_to_mca, weight_converters, hf_layer_prefix, hf_invalid_keys=[],
                      template_class=Template, constant_mca_config={}, constant_hf_config={}, **kwargs):
    template.templates[hf_model_type] = template_class(
        hf_model_type=hf_model_type, hf_layer_prefix=hf_layer_prefix, hf_invalid_keys=hf_invalid_keys,
        config_hf_to_mca=config_hf_to_mca, constant_mca_config=constant_mca_config,
        constant_hf_config=constant_hf_config, weight_converters=weight_converters, **kwargs)


template.register_template = register_template


@dataclasses.dataclass
class DistParallelConfig:
    pre_process_weights: list = dataclasses.field(default_factory=list)
    post_process_weights: list = dataclasses.field(default_factory=list)
    duplicated_weights: list = dataclasses.field(default_factory=list)
    column_parallel_weights: list = dataclasses.field(default_factory=list)
    row_parallel_weights: list = dataclasses.field(default_factory=list)
    swiglu_weights: list = dataclasses.field(default_factory=list)
    gdn_weights: list = dataclasses.field(default_factory=list)
    grouped_duplicated_map: dict = dataclasses.field(default_factory=dict)
    grouped_column_map: dict = dataclasses.field(default_factory=dict)
    grouped_row_map: dict = dataclasses.field(default_factory=dict)
    te_to_local_key_map: dict = dataclasses.field(default_factory=dict)

    def merge_configs(self, other):
        if other is None:
            return self
        kw = {}
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            kw[f.name] = a + b if isinstance(a, list) else {**a, **b}
        return DistParallelConfig(**kw)


dist.DistParallelConfig = DistParallelConfig
dist.dist_configs = {t: DistParallelConfig() for t in ROLL_TYPES}


def register_dist_config(names, config):
    if not isinstance(names, list):
        names = [names]
    for name in names:
        assert name not in dist.dist_configs, f"{name} already registered"
        dist.dist_configs[name] = config


dist.register_dist_config = register_dist_config

build_dir = os.path.abspath(sys.argv[1])
sys.path.insert(0, os.path.dirname(build_dir))
pkg = importlib.import_module(os.path.basename(build_dir))
support = importlib.import_module(os.path.basename(build_dir) + "._rolltpl_support")

out = {"templates": {}, "dist_configs": {}, "named_dist_configs": {}}
for name in pkg.__all__:
    t = template.templates[name]
    out["templates"][name] = {
        "template_class": type(t).__name__,
        "hf_layer_prefix": t.hf_layer_prefix,
        "hf_moe_prefix": t.hf_moe_prefix,
        "hf_invalid_keys": t.hf_invalid_keys,
        "config_hf_to_mca": t.config_hf_to_mca,
        "config_hf_to_mca_effective": t.adjust_config_hf_to_mca(),
        "config_mca_to_hf": t.config_mca_to_hf,
        "constant_mca_config": t.constant_mca_config,
        "constant_hf_config": t.constant_hf_config,
        "other_kwargs": t.other,
        "weight_converters": [op.record() for op in t.weight_converters],
    }
    out["dist_configs"][name] = dataclasses.asdict(dist.dist_configs[name])
for var in dir(support):
    if isinstance(getattr(support, var), DistParallelConfig):
        out["named_dist_configs"][var] = dataclasses.asdict(getattr(support, var))
json.dump(out, sys.stdout, indent=1, sort_keys=True)
