"""Pure tensor math for affine quantization. Imports torch only; no model knowledge.

Conventions (shared by every method, importer and the exporter):
  w      (N, K) float    N = out_features, K = in_features
  scale  (N, K // g)     one scale per output row and group of g consecutive input channels
  zero   (N, K // g)     integer zero point (asymmetric) or None (symmetric, zero = 0)
  codes  (N, K) int8     always signed: [-2^(b-1), 2^(b-1) - 1], the zero point too, so that
                         INT4 / INT8 DequantizeLinear (what TensorRT reads) carries them as is
  w_hat = (codes - zero) * scale
group_size -1 means one group spanning K (per output channel).
"""
from __future__ import annotations

import math

import torch

# The numerics of the codes and scales this module computes: part of the export cache's key, so a
# cached graph is never reused after they change (2: symmetric scales amax / (qmax + 1/2), were
# amax / qmax).
NUMERICS = 2


def qrange(bits: int, symmetric: bool = True) -> tuple[int, int]:
    """Signed code range for both schemes (asymmetric codes are shifted by 2^(b-1), zero too)."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


# Big tensors are processed in blocks of output rows (every group lies within one row, so this
# is exact): the float temporaries of a block stay ~ROW_BLOCK_BYTES, not several copies of a
# 235 M-value MLP weight (R1-Distill-Llama-70B) or a 151,936-row embedding at once.
ROW_BLOCK_BYTES = 64 << 20


def row_blocks(n: int, k: int):
    """(start, stop) row ranges of about ROW_BLOCK_BYTES of float32 each."""
    rows = max(1, ROW_BLOCK_BYTES // (4 * max(k, 1)))
    return [(i, min(n, i + rows)) for i in range(0, n, rows)]


def _groups(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, int]:
    n, k = w.shape
    g = k if group_size in (-1, None) else group_size
    if k % g:
        raise ValueError(f"group size {g} does not divide in_features {k}")
    return w.reshape(n, k // g, g), g  # (N, G, g)


def _choose_block(w, bits, group_size, symmetric, scale_dtype):
    wg, _ = _groups(w.float(), group_size)                               # (n, G, g)
    qmin, qmax = qrange(bits, symmetric)
    lo = wg.amin(-1).clamp(max=0)                                        # (n, G)
    hi = wg.amax(-1).clamp(min=0)                                        # (n, G)
    if symmetric:
        # amax / (qmax + 1/2), compressed-tensors' rule (what llm-compressor's GPTQ and AWQ quantize
        # with): the group's largest magnitude rounds to qmax + 1/2 and is clipped to qmax, so every
        # weight stays within half a step (and the FP16 rounding of the scale), as with amax / qmax
        # (ModelOpt's rule, dsedge's until NUMERICS 2), at a 7 % finer step for INT4: 13 % less KL
        # on the real-text reference (README, "Beside llm-compressor run directly").
        scale = torch.maximum(hi, -lo) / (qmax + 0.5)
        zero = None
    else:
        scale = (hi - lo) / (qmax - qmin)
    tiny = torch.finfo(scale_dtype).tiny if scale_dtype.is_floating_point else 1e-12
    # Rounded to the nearest FP16, as compressed-tensors does. Rounding up instead (to keep the bound
    # exact) shrinks every group's extreme weight by half a step: +4 % KL on a tiny reference.
    scale = scale.clamp(min=max(tiny, 1e-8)).to(scale_dtype).float()
    if not symmetric:
        zero = torch.clamp(torch.round(qmin - lo / scale), qmin, qmax).to(torch.int8)
    return scale, zero


def rtn_block(w: torch.Tensor, bits: int, group_size: int, symmetric: bool):
    """Round-to-nearest of one row block in a single FP32 pass: (n, K) float ->
    (scale (n, G), zero (n, G) | None, codes (n, K) int8, sum(w^2), sum((w_hat - w)^2)).
    The error is taken from the codes' float temporary before it is dropped, so the per-layer
    SQNR costs no second read of the float weight (quant_sqnr_db does that for other methods)."""
    wb = w.float()
    n, k = wb.shape
    scale, zero = _choose_block(wb, bits, group_size, symmetric, torch.float16)     # (n, G)
    wg, _ = _groups(wb, group_size)                                      # (n, G, g)
    q = torch.div(wg, scale.unsqueeze(-1)).round_()
    if zero is not None:
        q += zero.unsqueeze(-1).float()
    codes = q.clamp_(*qrange(bits, symmetric)).to(torch.int8).reshape(n, k)
    if zero is not None:
        q -= zero.unsqueeze(-1).float()
    err = q.mul_(scale.unsqueeze(-1)).sub_(wg).view(-1)                  # w_hat - w, in place
    return scale, zero, codes, _sum_squares(wb.reshape(-1)), _sum_squares(err)


def db(signal: float, noise: float) -> float:
    """10 log10(signal / noise): inf for an exact copy, -inf for a zero signal with noise."""
    if noise == 0:
        return float("inf")
    return float(10 * math.log10(signal / noise)) if signal > 0 else float("-inf")


def dequantize_affine(codes: torch.Tensor, group_size: int, scale: torch.Tensor,
                      zero: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, K) integer codes -> (N, K) float."""
    n, k = codes.shape
    out = torch.empty(n, k, dtype=dtype)
    for a, b in row_blocks(n, k):
        cg, _ = _groups(codes[a:b].float(), group_size)                  # (n, G, g)
        if zero is not None:
            cg -= zero[a:b].unsqueeze(-1).float()
        out[a:b] = (cg * scale[a:b].float().unsqueeze(-1)).reshape(b - a, k)
    return out


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """(..., K) int4 codes (signed [-8, 7]; unsigned [0, 15] works too) -> (..., K/2) uint8.

    Element 2i goes to the low nibble, 2i+1 to the high nibble: the ONNX INT4/UINT4 layout.
    """
    if codes.shape[-1] % 2:
        raise ValueError("last dimension must be even to pack int4 pairs")
    flat = codes.reshape(-1, codes.shape[-1]).to(torch.int8).view(torch.uint8)   # (R, K), two's complement
    out = torch.empty(flat.shape[0], flat.shape[1] // 2, dtype=torch.uint8)
    for a, b in row_blocks(*flat.shape):
        nib = flat[a:b] & 0xF
        out[a:b] = nib[:, 0::2] | (nib[:, 1::2] << 4)
    return out.reshape(*codes.shape[:-1], codes.shape[-1] // 2)


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB (higher is better)."""
    ref = ref.double()
    noise = (ref - approx.double()).pow(2).sum()
    if noise == 0:
        return float("inf")
    return float(10 * torch.log10(ref.pow(2).sum() / noise))


def _sum_squares(x: torch.Tensor, chunk: int = 1 << 18) -> float:
    """sum(x^2) of a 1-D FP32 tensor: BLAS dot products over chunks, summed in float64 (one dot over
    16 M values loses 5e-4 relative in FP32; 2^18-value chunks stay near 1e-7, at 10x pow().sum()'s speed)."""
    return sum(float(torch.dot(c, c)) for c in x.split(chunk))


def quant_sqnr_db(ref: torch.Tensor, codes: torch.Tensor, group_size: int, scale: torch.Tensor,
                  zero: torch.Tensor | None, perm: torch.Tensor | None = None) -> float:
    """sqnr_db of an (N, K) float weight against its quantized form, dequantized one row block at
    a time in FP32 (no whole dequantized or float64 copy: at 68 M values that was 4.7 s of a 9 s
    weight, most of the export). perm: codes column j is input channel perm[j]."""
    n, k = ref.shape
    signal = noise = 0.0
    for a, b in row_blocks(n, k):
        r = ref[a:b].float()                                             # (n, K)
        if perm is not None:
            r = r[:, perm]
        cg, _ = _groups(codes[a:b].float(), group_size)                  # (n, G, g)
        if zero is not None:
            cg -= zero[a:b].unsqueeze(-1).float()
        d = cg.mul_(scale[a:b].float().unsqueeze(-1)).view(b - a, k).sub_(r).view(-1)   # dequantized - ref
        signal += _sum_squares(r.reshape(-1))
        noise += _sum_squares(d)
    return db(signal, noise)
