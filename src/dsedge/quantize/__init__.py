"""Quantize: configs (one per method), pure primitives, the canonical QuantizedWeight, and the
handlers registered by exact config type (registry.py) that produce QuantizedWeights for a model.

The configs import without torch (`dsedge plan` reads them to do arithmetic); what needs torch
(the weights, the handlers, applying them: .apply, .qweight, .result, .lazy) is imported on first use."""
from __future__ import annotations

import importlib

from .configs import Fp16Config, Int4WeightOnlyConfig, Int8WeightOnlyConfig, LayerScheme, MixedPrecisionConfig, QuantConfig, WeightOnlyConfig
from .registry import register_handler
from .calibrated import AwqConfig, GptqConfig, SmoothQuantConfig
from .imported import ImportedConfig
from .methods import METHODS, config_from_dict, config_from_options

# name -> submodule; HANDLERS / handler_for come through .apply so that rtn's handlers are registered
_LAZY = {"LazyWeights": "lazy", "QuantizedWeight": "qweight", "QuantResult": "result", "WeightSource": "result",
         **{n: "apply" for n in ("HANDLERS", "handler_for", "target_linears", "quantize_model", "apply_fake_quant",
                                 "apply_act_fake_quant", "apply_tensors")}}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "HANDLERS", "register_handler", "ImportedConfig", "QuantConfig", "Fp16Config", "WeightOnlyConfig", "Int4WeightOnlyConfig",
           "Int8WeightOnlyConfig", "MixedPrecisionConfig", "QuantizedWeight", "QuantResult", "WeightSource", "LazyWeights",
           "config_from_options", "config_from_dict", "quantize_model", "apply_fake_quant",
           "apply_act_fake_quant", "apply_tensors", "GptqConfig", "AwqConfig", "SmoothQuantConfig", "target_linears",
           "handler_for"]
