"""Quantize: configs (one per method), pure primitives, the canonical QuantizedWeight, and a
registry from config type to the handler that produces QuantizedWeights for a model."""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import ConfigError
from .configs import (METHODS, Fp16Config, Int4WeightOnlyConfig, Int8WeightOnlyConfig, QuantConfig,
                      WeightOnlyConfig, config_from_dict, config_from_options)
from .lazy import LazyWeights, spec_of
from .qweight import QuantizedWeight
from .rtn import quantize_rtn
from . import calibrated
from .calibrated import AwqConfig, GptqConfig, SmoothQuantConfig

# config type -> handler(config, source, linear names, calibration) -> {name: QuantizedWeight}
# `source.tensor(key)` reads one float tensor; `source.model()` gives the whole PyTorch model
# (calibrated methods only). Weight-only handlers return a LazyWeights and need no model.
HANDLERS: dict[type, Callable] = {
    Fp16Config: lambda config, source, names, calib=None: {},
    WeightOnlyConfig: quantize_rtn,
    **calibrated.HANDLERS,
}
METHODS.update({c.method: c for c in calibrated.CALIBRATED_CONFIGS})


def handler_for(config: QuantConfig) -> Callable:
    for cls in type(config).__mro__:
        if cls in HANDLERS:
            return HANDLERS[cls]
    raise KeyError(f"no handler registered for {type(config).__name__}")


@dataclass
class WeightSource:
    tensor: Callable[[str], torch.Tensor]              # state-dict key -> float tensor
    model: Callable[[], torch.nn.Module] | None = None  # the whole model, for calibrated methods


@dataclass
class QuantResult:
    config: QuantConfig
    weights: Mapping[str, QuantizedWeight] = field(default_factory=dict)  # module name -> weight
    seconds: float = 0.0
    # float tensors the method changed that are not quantized linears (smoothed / AWQ-scaled norm
    # weights, scaled biases), state-dict name -> tensor: the exporter reads these instead of the checkpoint's
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    # module name -> static per-tensor symmetric INT8 scale of the linear's input (SmoothQuant W8A8)
    act_scales: dict[str, float] = field(default_factory=dict)
    # MoE, calibrated methods: router module -> calibration tokens routed to each expert
    expert_tokens: dict[str, list[int]] | None = None

    def spec(self, module: str) -> dict:
        """bits / group / symmetry / permutation of one weight, without computing it when lazy."""
        if isinstance(self.weights, LazyWeights):
            return self.weights.spec(module)
        return spec_of(self.weights[module])

    @property
    def total_seconds(self) -> float:
        """Quantization time including what lazy weights spent when they were used."""
        return self.seconds + getattr(self.weights, "seconds", 0.0)


# Methods that quantize MoE checkpoints (each expert as its own linear). GPTQ and AWQ run through
# llm-compressor, which linearizes transformers' fused experts and calibrates every expert on every
# token; AWQ's norm scales are compensated in the router (backends/llmcompressor.py). SmoothQuant's
# static activation scales per expert are not done.
MOE_METHODS = ("fp16", "rtn", "int8", "gptq", "awq")


def target_linears(spec, n_layers: int, config: QuantConfig, arch_config: dict | None = None) -> list[str]:
    """Names of the linears the config quantizes: every decoder-block linear (+ lm_head if asked).
    arch_config: config.json, for architectures whose blocks differ by layer (MoE)."""
    names = spec.block_linears(n_layers, arch_config)
    if getattr(config, "quantize_lm_head", False):
        names.append(spec.head)
    return names


def quantize_model(config: QuantConfig, source: WeightSource, spec, n_layers: int,
                   in_features: Callable[[str], int], calib=None, arch_config: dict | None = None) -> QuantResult:
    names = target_linears(spec, n_layers, config, arch_config)
    if spec.moe is not None and config.method not in MOE_METHODS:
        raise ConfigError(f"--method {config.method} is not available for {spec.name} (MoE) yet",
                          f"use --method {', '.join(m for m in MOE_METHODS if m != 'fp16')} for this architecture")
    if spec.moe is not None and getattr(config, "backend", "llmcompressor") != "llmcompressor":
        raise ConfigError(f"--backend {config.backend} does not quantize {spec.name} (MoE) in dsedge yet",
                          "drop --backend (llm-compressor handles the experts)")
    config.validate_for({n: in_features(n) for n in names})
    t0 = time.perf_counter()
    with torch.no_grad():
        out = handler_for(config)(config, source, names, calib)
    # weight-only handlers return the weights; calibrated ones a QuantResult (weights + tensors + act_scales)
    res = out if isinstance(out, QuantResult) else QuantResult(config, out)
    res.config, res.seconds = config, time.perf_counter() - t0
    return res


@torch.no_grad()
def apply_fake_quant(model, weights: Mapping[str, QuantizedWeight], only=None):
    """Replace each quantized linear's weight by its dequantized value, in place.
    `only`: restrict to the modules present in a (truncated) model."""
    for name in weights:
        slot = _weight_slot(model, name)
        if slot is None or (only is not None and slot[0] not in only):
            continue
        slot[1].copy_(weights[name].dequantize(slot[1].dtype))
    return model


def _weight_slot(model, name: str):
    """(owning module's name, the tensor holding linear `name`'s weight) in a transformers model,
    or None when the model lacks it. An MoE expert linear (`...experts.3.up_proj`, DeepSeek's
    on-disk name) is its rows of transformers' fused 3-D parameter (ArchSpec.moe)."""
    from ..load.archs import ARCHITECTURES

    spec = ARCHITECTURES.get((getattr(model.config, "architectures", None) or [""])[0])
    fused = spec.moe.fused_slice(name) if spec is not None and spec.moe is not None else None
    try:
        if fused is None:
            return name, model.get_submodule(name).weight
        param, e, part, parts = fused
        owner, attr = param.rsplit(".", 1)
        w = getattr(model.get_submodule(owner), attr)[e]                  # (parts * rows, cols)
        return owner, w.chunk(parts, dim=0)[part]
    except AttributeError:
        return None


def apply_act_fake_quant(model, act_scales: Mapping[str, float], only=None) -> list:
    """Quantize-dequantize each listed linear's input with its static INT8 scale (symmetric,
    [-128, 127], round half to even), as the graph's QuantizeLinear/DequantizeLinear pair does.
    Returns the hook handles (call .remove() on each to undo)."""
    handles = []
    for name, s in act_scales.items():
        if only is not None and name not in only:
            continue

        def pre(module, args, s=float(s)):
            x = args[0]
            return (torch.clamp(torch.round(x / s), -128, 127) * s).to(x.dtype), *args[1:]
        handles.append(model.get_submodule(name).register_forward_pre_hook(pre))
    return handles


@torch.no_grad()
def apply_tensors(model, tensors: Mapping[str, torch.Tensor]):
    """Copy the float tensors a method changed (QuantResult.tensors) into the model, in place."""
    params = dict(model.named_parameters())
    for key, t in tensors.items():
        if key in params:
            params[key].copy_(t.to(params[key].dtype))
    return model


__all__ = ["METHODS", "HANDLERS", "QuantConfig", "Fp16Config", "WeightOnlyConfig", "Int4WeightOnlyConfig",
           "Int8WeightOnlyConfig", "QuantizedWeight", "QuantResult", "WeightSource", "LazyWeights",
           "config_from_options", "config_from_dict", "quantize_model", "apply_fake_quant",
           "apply_act_fake_quant", "apply_tensors", "GptqConfig", "AwqConfig", "SmoothQuantConfig", "target_linears",
           "handler_for"]
