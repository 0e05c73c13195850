"""Round-to-nearest weight-only quantization (INT8 per channel, INT4 per group)."""
from __future__ import annotations

import torch

from .configs import Int4WeightOnlyConfig, Int8WeightOnlyConfig, MixedPrecisionConfig, WeightOnlyConfig
from .lazy import LazyWeights
from .primitives import db, row_blocks, rtn_block
from .qweight import QuantizedWeight
from .registry import register_handler


def quantize_weight(w: torch.Tensor, bits: int, group_size: int, symmetric: bool) -> QuantizedWeight:
    """(N, K) float weight (any float dtype) -> canonical QuantizedWeight with min-max scales and
    its SQNR against w, one FP32 pass per row block (primitives.rtn_block)."""
    n, k = w.shape
    g = k if group_size == -1 else group_size
    if k % g:
        raise ValueError(f"group size {g} does not divide in_features {k}")
    scale = torch.empty(n, k // g)                                       # (N, G)
    zero = None if symmetric else torch.empty(n, k // g, dtype=torch.int8)
    codes = torch.empty(n, k, dtype=torch.int8)                          # (N, K)
    signal = noise = 0.0
    for a, b in row_blocks(n, k):
        s, z, c, sig, err = rtn_block(w[a:b], bits, group_size, symmetric)
        scale[a:b], codes[a:b] = s, c
        if zero is not None:
            zero[a:b] = z
        signal, noise = signal + sig, noise + err
    return QuantizedWeight(codes=codes, scale=scale, zero_point=zero, bits=bits, group_size=group_size,
                           sqnr_db=db(signal, noise))


@register_handler(Int4WeightOnlyConfig, Int8WeightOnlyConfig, MixedPrecisionConfig)
def quantize_rtn(config: WeightOnlyConfig, source, names: dict, calib=None) -> LazyWeights:
    """Round to nearest with min-max scales, each linear at its LayerScheme (names[n]). Needs no
    data and no model: each weight is read and quantized when it is used (streamed into the ONNX
    file, or applied to a PyTorch model)."""
    def spec(n):
        return {"bits": names[n].bits, "group_size": names[n].group_size, "symmetric": config.symmetric, "perm": None}

    return LazyWeights(list(names), lambda n: quantize_weight(source.tensor(f"{n}.weight"), names[n].bits,
                                                              names[n].group_size, config.symmetric), spec)
