"""Packed integer layouts -> canonical QuantizedWeight, one linear at a time.

Written by hand on purpose: the libraries that write these formats (GPTQModel, AutoAWQ,
compressed-tensors) unpack them only inside their own kernels or model-loading paths, which
dequantize to float or need the whole quantization stack (and sometimes CUDA). What dsedge needs
is the integer codes, zero points and scales as stored, without re-quantizing: a few lines of bit
arithmetic per format, checked against each library's own dequantization in
tests/load/test_prequant.py.

`read(suffix)` reads one tensor of the module (memory-mapped) or returns None when absent.
"""
from __future__ import annotations

from typing import Callable

import torch

from ...errors import CheckpointError
from ...quantize.qweight import QuantizedWeight

Read = Callable[[str], "torch.Tensor | None"]

# AutoAWQ's GEMM packing puts column order[i] of each 8-column block into nibble i
# (awq/utils/packing_utils.py: AWQ_ORDER); the inverse tells which nibble holds column j.
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
AWQ_REVERSE_ORDER = tuple(AWQ_ORDER.index(j) for j in range(8))   # (0, 4, 1, 5, 2, 6, 3, 7)


def unpack_int32(packed: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """int32 words -> unsigned integers (int16), 32/bits per word along `dim` (0 or 1); value i of
    a word sits at bits [i*bits, (i+1)*bits), lowest first (GPTQ, AWQ and compressed-tensors all
    pack this way)."""
    if 32 % bits:
        raise CheckpointError(f"{bits}-bit values do not pack evenly into int32 words",
                              "only 4- and 8-bit checkpoints can be imported")
    per, mask = 32 // bits, (1 << bits) - 1
    words = packed.to(torch.int64) & 0xFFFFFFFF
    shifts = torch.arange(0, 32, bits, dtype=torch.int64)
    if dim == 0:
        vals = (words.unsqueeze(1) >> shifts.view(1, per, 1)) & mask          # (R, per, C)
        return vals.reshape(words.shape[0] * per, words.shape[1]).to(torch.int16)
    vals = (words.unsqueeze(-1) >> shifts) & mask                             # (R, C, per)
    return vals.reshape(words.shape[0], words.shape[1] * per).to(torch.int16)


def gptq_v1_to_v2_zeros(qzeros: torch.Tensor, bits: int) -> torch.Tensor:
    """GPTQ v1 stores zero - 1. GPTQModel restores it by adding 1 to every field with whole-word
    int32 arithmetic (carries included: utils/model.py convert_gptq_v1_to_v2_format_module), which
    makes v2 -> v1 -> v2 lossless even for a zero point of 0; done the same way here."""
    ones = sum(1 << (i * bits) for i in range(32 // bits))
    return ((qzeros.to(torch.int64) & 0xFFFFFFFF) + ones) & 0xFFFFFFFF


def _signed(u: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned [0, 2^b) -> the canonical signed range (code and zero point shift alike)."""
    return (u.to(torch.int16) - (1 << (bits - 1))).to(torch.int8)


def group_perm(g_idx: torch.Tensor | None, k: int, group: int, where: str) -> torch.Tensor | None:
    """Act-order g_idx (group of each input channel) -> the permutation that makes groups
    contiguous (None when g_idx is the trivial i // group). Each group must hold `group` channels."""
    if g_idx is None:
        return None
    g_idx = g_idx.to(torch.int64).reshape(-1)
    if g_idx.numel() != k:
        raise CheckpointError(f"{where}.g_idx has {g_idx.numel()} entries, the layer has {k} input channels",
                              "the checkpoint is inconsistent: download it again")
    if torch.equal(g_idx, torch.arange(k) // group):
        return None
    counts = torch.bincount(g_idx, minlength=k // group)
    if g_idx.min() < 0 or counts.numel() != k // group or not bool((counts == group).all()):
        raise CheckpointError(f"{where}.g_idx does not split the input channels into groups of {group}",
                              "only act-order permutations of whole groups can be imported: "
                              "re-quantize with desc_act / static groups off")
    return torch.argsort(g_idx, stable=True)


def _finish(codes, scale, zero, bits, group, symmetric, perm, where) -> QuantizedWeight:
    """codes (N, K) int8, scale (N, G), zero (N, G) int8 or None -> QuantizedWeight."""
    if perm is not None:
        codes = codes[:, perm].contiguous()
    if symmetric and zero is not None:
        if bool((zero != 0).any()):
            raise CheckpointError(f"{where}: quantization_config says symmetric, the stored zero points are not "
                                  f"{1 << (bits - 1)} (unsigned)",
                                  "the config and the weights disagree: fix 'sym' in config.json or re-export")
        zero = None
    if not bool(torch.isfinite(scale).all()):
        raise CheckpointError(f"{where} has non-finite scales", "the checkpoint is corrupt: download it again")
    return QuantizedWeight(codes=codes.contiguous(), scale=scale.float().contiguous(),
                           zero_point=None if zero is None else zero.contiguous(), bits=bits,
                           group_size=group, perm=perm)


def _block(group: int, k: int) -> int:
    return k if group == -1 else group


def gptq(read: Read, where: str, n: int, k: int, s) -> QuantizedWeight:
    """qweight (K*b/32, N) packed along K; qzeros (G, N*b/32) packed along N, v1 = zero - 1;
    scales (G, N); g_idx (K,) optional. w[k, n] = scale[g_idx[k], n] * (q[k, n] - zero[g_idx[k], n])."""
    u = unpack_int32(read("qweight"), s.bits, 0)[:k]                          # (K, N)
    qzeros = read("qzeros")
    if s.zeros == "v1":
        qzeros = gptq_v1_to_v2_zeros(qzeros, s.bits)
    z = unpack_int32(qzeros, s.bits, 1)[:, :n]                                # (G, N)
    perm = gptq_perm(read, where, k, s)
    return _finish(_signed(u, s.bits).T, read("scales").T, _signed(z, s.bits).T, s.bits, s.group_size,
                   s.symmetric, perm, where)


def gptq_perm(read: Read, where: str, k: int, s) -> torch.Tensor | None:
    return group_perm(read("g_idx"), k, _block(s.group_size, k), where)


def awq_gemm(read: Read, where: str, n: int, k: int, s) -> QuantizedWeight:
    """qweight (K, N/8) and qzeros (G, N/8) packed along N in AWQ order; scales (G, N);
    unsigned zero points stored as they are."""
    reorder = (torch.arange(n).reshape(-1, 8) // 8 * 8 + torch.tensor(AWQ_REVERSE_ORDER)).reshape(-1)
    u = unpack_int32(read("qweight"), 4, 1)[:, reorder]                       # (K, N)
    z = unpack_int32(read("qzeros"), 4, 1)[:, reorder]                        # (G, N)
    return _finish(_signed(u, 4).T, read("scales").T, _signed(z, 4).T, 4, s.group_size, s.symmetric, None, where)


def _ct_scale(scale: torch.Tensor, n: int) -> torch.Tensor:
    """weight_scale (N, G), (N, 1), (N,) or per-tensor (1,) / () -> (N, G)."""
    if scale.numel() == 1:
        return scale.reshape(1, 1).expand(n, 1)
    return scale.reshape(n, -1)


def ct_pack_quantized(read: Read, where: str, n: int, k: int, s) -> QuantizedWeight:
    """compressed-tensors pack-quantized: weight_packed (N, ceil(K*b/32)) packed along K from
    signed values + 2^(b-1); weight_zero_point (ceil(N*b/32), G) packed along N the same way
    (asymmetric only); weight_scale (N, G); weight_shape [N, K]; weight_g_idx (K,) optional."""
    shape = read("weight_shape")
    if shape is not None and tuple(int(x) for x in shape.reshape(-1)) != (n, k):
        raise CheckpointError(f"{where}.weight_shape is {shape.tolist()}, the model's layer is [{n}, {k}]",
                              "config.json and the weights come from different models: use the matching pair")
    u = unpack_int32(read("weight_packed"), s.bits, 1)[:, :k]                 # (N, K)
    zp = read("weight_zero_point")
    if zp is not None:
        zp = unpack_int32(zp, s.bits, 0)[:n] if zp.dtype == torch.int32 else zp.to(torch.int16) + (1 << (s.bits - 1))
        zp = _signed(zp, s.bits).reshape(n, -1)
    perm = ct_perm(read, where, k, s)
    return _finish(_signed(u, s.bits), _ct_scale(read("weight_scale"), n), zp, s.bits, s.group_size,
                   s.symmetric, perm, where)


def ct_perm(read: Read, where: str, k: int, s) -> torch.Tensor | None:
    return group_perm(read("weight_g_idx"), k, _block(s.group_size, k), where)


def ct_int_quantized(read: Read, where: str, n: int, k: int, s) -> QuantizedWeight:
    """compressed-tensors int-quantized: weight int8 (N, K) signed codes as they are, weight_scale
    (N, 1) per channel (or (N, G), or per tensor), weight_zero_point int8 when asymmetric."""
    codes = read("weight")
    if codes.dtype != torch.int8:
        raise CheckpointError(f"{where}.weight has dtype {codes.dtype}, int-quantized stores int8",
                              "the checkpoint is inconsistent with its quantization_config: re-export it")
    zp = read("weight_zero_point")
    zp = None if zp is None else zp.to(torch.int8).reshape(n, -1)
    return _finish(codes, _ct_scale(read("weight_scale"), n), zp, 8, s.group_size, s.symmetric,
                   ct_perm(read, where, k, s), where)
