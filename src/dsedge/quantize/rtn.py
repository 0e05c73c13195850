"""Round-to-nearest weight-only quantization (INT8 per channel, INT4 per group)."""
from __future__ import annotations

import torch

from .configs import Int4WeightOnlyConfig, Int8WeightOnlyConfig, WeightOnlyConfig
from .lazy import LazyWeights
from .primitives import choose_qparams, qrange, quantize_affine, row_blocks
from .qweight import QuantizedWeight
from .registry import register_handler


def quantize_weight(w: torch.Tensor, bits: int, group_size: int, symmetric: bool) -> QuantizedWeight:
    """(N, K) float weight (any float dtype) -> canonical QuantizedWeight with min-max scales.
    One pass per row block: each block is cast to FP32 once, its scales and codes made from it."""
    n, k = w.shape
    g = k if group_size == -1 else group_size                            # choose_qparams checks it divides K
    scale = torch.empty(n, k // g)                                       # (N, G)
    zero = None if symmetric else torch.empty(n, k // g, dtype=torch.int8)
    codes = torch.empty(n, k, dtype=torch.int8)                          # (N, K)
    for a, b in row_blocks(n, k):
        wb = w[a:b].float()
        s, z = choose_qparams(wb, bits, group_size, symmetric)
        codes[a:b] = quantize_affine(wb, group_size, s, z, *qrange(bits, symmetric))
        scale[a:b] = s
        if zero is not None:
            zero[a:b] = z
    return QuantizedWeight(codes=codes, scale=scale, zero_point=zero, bits=bits, group_size=group_size)


@register_handler(Int4WeightOnlyConfig, Int8WeightOnlyConfig)
def quantize_rtn(config: WeightOnlyConfig, source, names: dict, calib=None) -> LazyWeights:
    """Round to nearest with min-max scales, each linear at its LayerScheme (names[n]). Needs no
    data and no model: each weight is read and quantized when it is used (streamed into the ONNX
    file, or applied to a PyTorch model)."""
    def spec(n):
        return {"bits": names[n].bits, "group_size": names[n].group_size, "symmetric": config.symmetric, "perm": None}

    return LazyWeights(list(names), lambda n: quantize_weight(source.tensor(f"{n}.weight"), names[n].bits,
                                                              names[n].group_size, config.symmetric), spec)
