"""dsedge: quantize, export and check DeepSeek checkpoints for TensorRT edge targets.

Attributes are imported lazily so that `dsedge --help` does not pay for torch.
"""
__version__ = "0.1.0"

_LAZY = {
    "build": "api", "BuildResult": "api", "compare": "api", "gate": "api",
    "generate": "run", "Runner": "run",
    "flash": "deploy", "rollback": "deploy", "devices_status": "deploy", "bench": "deploy",
    "Fp16Config": "quantize", "Int4WeightOnlyConfig": "quantize", "Int8WeightOnlyConfig": "quantize",
    "config_from_options": "quantize",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


__all__ = ["__version__", *_LAZY]
