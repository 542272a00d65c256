"""Run the ConverOp classes `rolltplc build` generates for ops with tensor
steps, against minimal stand-ins for ROLL's ConverOp base contract, on the
tensors a Go test wrote; write what they return for the test to compare
with the Go runtime.

Usage: python3 run_step_ops.py BUILD_DIR CASES_JSON OUT_DIR

The stand-ins restate what ROLL's mcore_adapter converter/template.py
does for the ops the tests use (alibaba/ROLL): ConverOp normalises single
names to lists; __call__ returns None while fewer weights than names are
present, else calls hf_to_mca / mca_to_hf, which gather the weights in
name order, call _hf_to_mca / _mca_to_hf and map the results to the other
side's names (a lone Tensor or StackedTensors counts as a list of one);
RenameConverOp passes through; StackConverOp builds StackedTensors (and
unpacks one); ConcatConverOp cats, or chunks into as many parts as names;
QKVConverOp interleaves q, k, v per query group. Each __post_init__ asserts
the arity of its names, as ROLL's do.

CASES_JSON lists {"case", "model_type", "op", "mca": {...}, "inputs":
[{"name", "file", "shape"}], "backward": bool}; tensors are raw float32.
"""

import dataclasses
import importlib
import json
import os
import sys
import types
from typing import Optional

import torch


def module(name):
    m = types.ModuleType(name)
    sys.modules[name] = m
    return m


root = module("mcore_adapter")
models = module("mcore_adapter.models")
converter = module("mcore_adapter.models.converter")
template = module("mcore_adapter.models.converter.template")
dist = module("mcore_adapter.models.converter.dist_converter")
convert_utils = module("mcore_adapter.models.converter.convert_utils")
utils = module("mcore_adapter.utils")
root.models, models.converter, root.utils = models, converter, utils
converter.template, converter.dist_converter, converter.convert_utils = template, dist, convert_utils
utils.is_megatron_llama = lambda: False


@dataclasses.dataclass
class StackedTensors:
    tensors: Optional[list]
    dim: int = 0


@dataclasses.dataclass
class ConverOp:
    hf_names: object
    mca_names: object
    _mca_config: object = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        if isinstance(self.hf_names, str):
            self.hf_names = [self.hf_names]
        if isinstance(self.mca_names, str):
            self.mca_names = [self.mca_names]

    @property
    def mca_config(self):
        return self._mca_config

    @mca_config.setter
    def mca_config(self, value):
        self._mca_config = value

    def __call__(self, name_to_weight, mca_to_hf=False):
        if len(self.mca_names if mca_to_hf else self.hf_names) > len(name_to_weight):
            return None
        return self._convert(name_to_weight, mca_to_hf)

    def _convert(self, name_to_weight, mca_to_hf):
        src, dst = (self.mca_names, self.hf_names) if mca_to_hf else (self.hf_names, self.mca_names)
        weights = [name_to_weight[n] for n in src]
        out = self._mca_to_hf(weights) if mca_to_hf else self._hf_to_mca(weights)
        if isinstance(out, (torch.Tensor, StackedTensors)):
            out = [out]
        assert len(dst) == len(out), f"names: {dst}, weights: {out}"
        return dict(zip(dst, out))


@dataclasses.dataclass
class RenameConverOp(ConverOp):
    def __post_init__(self):
        super().__post_init__()
        assert len(self.hf_names) == 1 and len(self.mca_names) == 1

    def _hf_to_mca(self, weights):
        return weights

    def _mca_to_hf(self, weights):
        return weights


@dataclasses.dataclass
class ConcatConverOp(ConverOp):
    dim: int = 0

    def __post_init__(self):
        super().__post_init__()
        assert (len(self.hf_names) == 1) != (len(self.mca_names) == 1)

    def _hf_to_mca(self, weights):
        if len(weights) == 1:
            return torch.chunk(weights[0], len(self.mca_names), dim=self.dim)
        return torch.cat(weights, dim=self.dim)

    def _mca_to_hf(self, weights):
        if len(weights) == 1:
            return torch.chunk(weights[0], len(self.hf_names), dim=self.dim)
        return torch.cat(weights, dim=self.dim)


@dataclasses.dataclass
class StackConverOp(ConverOp):
    dim: int = 0

    def __post_init__(self):
        super().__post_init__()
        assert (len(self.hf_names) == 1) != (len(self.mca_names) == 1)

    def _hf_to_mca(self, weights):
        if len(weights) == 1:
            assert isinstance(weights[0], StackedTensors)
            return weights[0].tensors
        return StackedTensors(tensors=weights, dim=self.dim)

    def _mca_to_hf(self, weights):
        if len(weights) == 1:
            assert isinstance(weights[0], StackedTensors)
            return weights[0].tensors
        return StackedTensors(tensors=weights, dim=self.dim)


@dataclasses.dataclass
class QKVConverOp(ConverOp):
    hidden_size: Optional[int] = None

    def __post_init__(self):
        super().__post_init__()
        assert len(self.hf_names) == 3 and len(self.mca_names) == 1

    def _hf_to_mca(self, weights):
        h = self.hidden_size if self.hidden_size is not None else self.mca_config.hidden_size
        q, k, v = weights
        c = self.mca_config
        nh, ng, d = c.num_attention_heads, c.num_query_groups, c.kv_channels
        return torch.cat(
            [q.reshape((ng, d * nh // ng, -1)), k.reshape((ng, d, -1)), v.reshape((ng, d, -1))], dim=1
        ).reshape((-1, h))

    def _mca_to_hf(self, weights):
        h = self.hidden_size if self.hidden_size is not None else self.mca_config.hidden_size
        c = self.mca_config
        nh, ng, d = c.num_attention_heads, c.num_query_groups, c.kv_channels
        qkv = weights[0].reshape((ng, d * (nh // ng + 2), -1))
        q, k, v = torch.split(qkv, [d * nh // ng, d, d], dim=1)
        return [q.reshape((-1, h)), k.reshape((-1, h)), v.reshape((-1, h))]


templates = {}


def register_template(hf_model_type, weight_converters, **kwargs):
    templates[hf_model_type] = weight_converters


for cls in (ConverOp, RenameConverOp, ConcatConverOp, StackConverOp, QKVConverOp):
    setattr(template, cls.__name__, cls)
template.register_template = register_template
convert_utils.StackedTensors = StackedTensors


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
        return self


dist.DistParallelConfig = DistParallelConfig
dist.dist_configs = {}


def register_dist_config(name, config):
    assert name not in dist.dist_configs
    dist.dist_configs[name] = config


dist.register_dist_config = register_dist_config


def save(out_dir, prefix, results, names):
    """Write results (name -> tensor or StackedTensors) in names order."""
    listing = []
    for name in names:
        value = results[name]
        parts = value.tensors if isinstance(value, StackedTensors) else [value]
        entry = {"name": name, "stacked": isinstance(value, StackedTensors), "parts": []}
        if isinstance(value, StackedTensors):
            entry["dim"] = value.dim
        for i, t in enumerate(parts):
            f = f"{prefix}_{len(listing)}_{i}.bin"
            with open(os.path.join(out_dir, f), "wb") as fh:
                fh.write(t.contiguous().numpy().tobytes())
            entry["parts"].append({"file": f, "shape": list(t.shape)})
        listing.append(entry)
    return listing


def main():
    build, cases_path, out_dir = sys.argv[1:4]
    sys.path.insert(0, os.path.dirname(os.path.abspath(build)))
    importlib.import_module(os.path.basename(os.path.abspath(build)))
    with open(cases_path) as fh:
        cases = json.load(fh)
    report = {}
    for case in cases:
        op = templates[case["model_type"]][case["op"]]
        op.mca_config = types.SimpleNamespace(**case["mca"])
        weights = {}
        for inp in case["inputs"]:
            with open(os.path.join(out_dir, inp["file"]), "rb") as fh:
                data = bytearray(fh.read())
            weights[inp["name"]] = torch.frombuffer(data, dtype=torch.float32).reshape(inp["shape"])
        res = {"class": type(op).__name__}
        try:
            mca = op(dict(weights), mca_to_hf=False)
            res["mca"] = save(out_dir, case["case"] + "_mca", mca, op.mca_names)
            if case["backward"]:
                hf = op(dict(mca), mca_to_hf=True)
                res["hf"] = save(out_dir, case["case"] + "_hf", hf, op.hf_names)
        except Exception as e:  # reported to the Go test
            res["error"] = f"{type(e).__name__}: {e}"
        report[case["case"]] = res
    json.dump(report, sys.stdout)


main()
