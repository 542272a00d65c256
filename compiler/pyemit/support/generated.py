# Part of _rolltpl_support.py (compiler/pyemit/support.go): the helpers
# of generated template classes (per-layer names, computed config),
# emitted after compiler/ir's PythonPrelude (_rt_field).

def _rt_namespace(values):
    """An object whose attributes are values' keys (a config as a dict)."""
    import types

    return types.SimpleNamespace(**values)


def _rt_recorded_hf(mca_config):
    """The HF config an MCA config records in hf_config_json, as an object."""
    import json

    text = getattr(mca_config, "hf_config_json", None)
    return _rt_namespace(json.loads(text) if text else {})


def _rt_layer_index(name, layer_prefix):
    """The layer index of an HF weight name, or None for a global name."""
    if not name.startswith(layer_prefix):
        return None
    digits = name[len(layer_prefix) :].split(".", 1)[0]
    return int(digits) if digits.isdigit() else None
