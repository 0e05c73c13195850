"""Quantizing a model and applying the result to a PyTorch model (torch): quantize_model runs the
handler registered for a config (registry.py; the round-to-nearest ones live in rtn.py, imported here)."""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Callable

import torch

from ..errors import ConfigError
from . import rtn  # noqa: F401  (registers the round-to-nearest handlers)
from .configs import QuantConfig
from .qweight import QuantizedWeight
from .registry import HANDLERS, handler_for  # noqa: F401  (HANDLERS: complete once rtn is imported)
from .result import QuantResult, WeightSource


def target_linears(spec, n_layers: int, config: QuantConfig, arch_config: dict | None = None) -> list[str]:
    """Names of the linears the config quantizes: every decoder-block linear (+ lm_head if asked).
    arch_config: config.json, for architectures whose blocks differ by layer (MoE)."""
    if getattr(config, "fitted", False):      # a fitted mix lists its quantized units by name
        return config.names()
    names = spec.block_linears(n_layers, arch_config)
    if getattr(config, "quantize_lm_head", False):
        names.append(spec.head)
    return names


def quantize_model(config: QuantConfig, source: WeightSource, spec, n_layers: int,
                   in_features: Callable[[str], int], calib=None, arch_config: dict | None = None) -> QuantResult:
    names = target_linears(spec, n_layers, config, arch_config)
    if config.method not in spec.methods:
        raise ConfigError(f"--method {config.method} is not available for {spec.name} yet",
                          f"use --method {', '.join(m for m in spec.methods if m not in ('fp16', 'fit'))} for this architecture")
    backend = getattr(config, "backend", None)
    if backend is not None and backend not in spec.backends:
        raise ConfigError(f"--backend {backend} does not quantize {spec.name} in dsedge yet",
                          f"drop --backend ({' or '.join(spec.backends)} handles this architecture)")
    schemes = {n: config.scheme_of(n, in_features(n)) for n in names}
    fallbacks = {n: s for n, s in schemes.items() if s.fallback}
    if fallbacks and config.needs_model:   # the libraries take one group size for the whole model
        n, s = next(iter(fallbacks.items()))
        raise ConfigError(f"--group-size {config.group_size} does not divide in_features {in_features(n)} of {n} "
                          f"({len(fallbacks)} such linears); --method {config.method} uses one group size throughout",
                          f"pass --group-size {s.group_size if s.bits == config.bits else -1} (or --method rtn, "
                          "which falls back per layer)")
    t0 = time.perf_counter()
    with torch.no_grad():
        out = handler_for(config)(config, source, schemes, calib)
    # weight-only handlers return the weights; calibrated ones a QuantResult (weights + tensors + act_scales)
    res = out if isinstance(out, QuantResult) else QuantResult(config, out)
    res.config, res.seconds, res.fallbacks = config, time.perf_counter() - t0, fallbacks
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
    or None when the model lacks it. An MoE expert linear (`...experts.3.up_proj`, the on-disk
    name) is its rows of transformers' fused 3-D parameter (MoeSpec)."""
    from ..archs import REGISTRY

    spec = REGISTRY.get((getattr(model.config, "architectures", None) or [""])[0])
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
