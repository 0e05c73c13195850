"""Round-to-nearest weight-only quantization (INT8 per channel, INT4 per group)."""
from __future__ import annotations

import torch

from .configs import Int4WeightOnlyConfig, Int8WeightOnlyConfig, WeightOnlyConfig
from .lazy import LazyWeights
from .primitives import choose_qparams, qrange, quantize_affine
from .qweight import QuantizedWeight
from .registry import register_handler


def quantize_weight(w: torch.Tensor, bits: int, group_size: int, symmetric: bool) -> QuantizedWeight:
    """(N, K) float weight -> canonical QuantizedWeight with min-max scales."""
    scale, zero = choose_qparams(w, bits, group_size, symmetric)
    codes = quantize_affine(w, group_size, scale, zero, *qrange(bits, symmetric))
    return QuantizedWeight(codes=codes, scale=scale, zero_point=zero, bits=bits, group_size=group_size)


@register_handler(Int4WeightOnlyConfig, Int8WeightOnlyConfig)
def quantize_rtn(config: WeightOnlyConfig, source, names: dict, calib=None) -> LazyWeights:
    """Round to nearest with min-max scales, each linear at its LayerScheme (names[n]). Needs no
    data and no model: each weight is read and quantized when it is used (streamed into the ONNX
    file, or applied to a PyTorch model)."""
    def spec(n):
        return {"bits": names[n].bits, "group_size": names[n].group_size, "symmetric": config.symmetric, "perm": None}

    return LazyWeights(list(names), lambda n: quantize_weight(source.tensor(f"{n}.weight").float(), names[n].bits,
                                                              names[n].group_size, config.symmetric), spec)
