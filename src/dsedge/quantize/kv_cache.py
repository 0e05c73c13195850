"""INT8 KV cache (`--kv-cache int8`): static symmetric scales per (layer, cache tensor, head,
channel), calibrated on the calibration windows; the cache is stored as INT8 codes and read back
as codes x scale.

Why static, per channel: TensorRT's explicit INT8 (what Ampere, so every Orin, runs) takes scales
that are constants of the graph, and keys carry a few large channels (KIVI, Liu et al. 2024:
"keys per channel"), which a per-tensor scale would give most of the 8 bits to. Values are scaled
the same way (static per-token scales cannot exist: the tokens are not known when the graph is
built). No maintained library calibrates a static per-channel INT8 cache for an ONNX graph
(llm-compressor's kv_cache_scheme is FP8 per tensor, for vLLM; TensorRT-LLM's INT8 cache is one
scale per layer, in its own plugin), so the few lines are here.

Semantics, the same in the graph (export/kv_cache.py) and in PyTorch (Int8CacheFakeQuant):
attention reads dequant(past) concatenated with the new tokens at full precision, and the
present cache written out is quant(that concatenation). quant(dequant(q)) == q, so a code, once
written, never changes.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

KV_DTYPES = ("fp16", "int8")
QMAX = 127
MIN_SCALE = 2.0 ** -14          # FP16's smallest normal: the scale of an all-zero channel


def check_kv_dtype(kv_cache: str) -> None:
    from ..errors import UsageError

    if kv_cache not in KV_DTYPES:
        raise UsageError(f"--kv-cache {kv_cache} is not one of {', '.join(KV_DTYPES)}",
                         "use --kv-cache fp16 (the default) or --kv-cache int8")


# ---- numeric primitives ----------------------------------------------------------------------
def scales_from_amax(amax: np.ndarray) -> np.ndarray:
    """Symmetric INT8 scales, amax / 127 (never clipping what calibration saw), rounded to FP16
    values (what the graph stores)."""
    s = np.maximum(np.asarray(amax, np.float32) / QMAX, MIN_SCALE)
    return s.astype(np.float16).astype(np.float32)


def fake_quant(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, H, P, D), scale (H, D) -> dequant(quant(x)), in x's dtype; rounding half to even and
    saturating, as QuantizeLinear does."""
    s = scale.to(x.dtype)[None, :, None, :]                            # (1, H, 1, D)
    return (x / s).round().clamp(-QMAX - 1, QMAX) * s


# ---- calibration ------------------------------------------------------------------------------
def calibrate(model, windows, batch: int = 8) -> dict[str, np.ndarray]:
    """Per cache tensor, max |x| over the calibration windows' tokens -> INT8 scales (H, D).
    model: the model whose caches ship (the quantized weights applied); windows (N, T) int64.
    Keys are taken as cached (after RoPE; MLA: the normalised latent and the rotated key)."""
    import torch

    from ..archs import arch_for

    kinds = [k for k, _, _ in arch_for(model.config).cache_layout(model.config)]
    amax: dict[str, torch.Tensor] = {}
    for i in range(0, len(windows), batch):
        with torch.no_grad():
            out = model(input_ids=windows[i:i + batch], use_cache=True)
        for li, layer in enumerate(out.past_key_values.layers):
            for kind, x in zip(kinds, (layer.keys, layer.values)):      # (B, H, T, D)
                m = x.float().abs().amax(dim=(0, 2))                     # (H, D)
                name = f"past_key_values.{li}.{kind}"
                amax[name] = m if name not in amax else torch.maximum(amax[name], m)
    return {name: scales_from_amax(m.numpy()) for name, m in amax.items()}


def describe(scales: Mapping[str, np.ndarray], calib_label: str) -> dict:
    """The manifest's record of the cache scheme."""
    return {"dtype": "int8", "scheme": "symmetric, static scale per (layer, cache tensor, head, channel) = amax / 127",
            "tensors": len(scales), "calibration": calib_label,
            "graph": "past_key_values.* / present.* are INT8; read as DequantizeLinear(scale 1) x scale, "
                     "written as QuantizeLinear(x / scale, scale 1)"}


# ---- PyTorch side -----------------------------------------------------------------------------
def int8_cache_factory(model_config, scales: Mapping[str, np.ndarray]):
    """A function making a fresh transformers cache that fake-quantizes what it stores exactly as
    the INT8 graph does (module docstring). For the PyTorch references of the INT8-cache graph."""
    import torch
    from transformers import DynamicCache

    from ..archs import arch_for

    kinds = [k for k, _, _ in arch_for(model_config).cache_layout(model_config)]
    n = len(scales) // 2
    per_layer = [tuple(torch.from_numpy(np.asarray(scales[f"past_key_values.{i}.{k}"])) for k in kinds)
                 for i in range(n)]

    class Int8CacheFakeQuant(DynamicCache):
        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            k, v = super().update(key_states, value_states, layer_idx, *args, **kwargs)
            layer, (sk, sv) = self.layers[layer_idx], per_layer[layer_idx]
            layer.keys, layer.values = fake_quant(k, sk), fake_quant(v, sv)
            return k, v                        # this step attends to dequant(past) + its own tokens

    return lambda: Int8CacheFakeQuant(config=model_config)
