# Part of _rolltpl_support.py, the support module rolltplc build writes
# beside the templates (compiler/pyemit/support.go): always emitted.
# Uses dist_converter, which the module imports.

try:
    from mcore_adapter.utils import is_megatron_llama
except ImportError:  # an mcore_adapter without the helper

    def is_megatron_llama():
        """Whether the installed Megatron is megatron-llama-core."""
        from importlib.metadata import distributions

        return any(dist.metadata.get("Name") == "megatron-llama-core" for dist in distributions())


def register_dist_config(name, config):
    """Register config for name, replacing an earlier registration."""
    dist_converter.dist_configs.pop(name, None)
    dist_converter.register_dist_config(name, config)
