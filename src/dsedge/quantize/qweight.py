"""The canonical quantized weight: what every method and importer produces, and the only
quantized type the exporter and the checker read."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .primitives import dequantize_affine


@dataclass
class QuantizedWeight:
    codes: torch.Tensor               # (N, K) int8, columns in `perm` order when perm is set
    scale: torch.Tensor               # (N, K // group) float32 (values representable in fp16)
    zero_point: torch.Tensor | None   # (N, K // group) int8, None for symmetric
    bits: int                         # 4 or 8
    group_size: int                   # -1: per output channel
    perm: torch.Tensor | None = None  # (K,) int64: codes column j is input channel perm[j] (GPTQ act-order)
    sqnr_db: float | None = None      # against the float weight it was made from, where the method measured it in passing (RTN)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape)

    @property
    def symmetric(self) -> bool:
        return self.zero_point is None

    @property
    def block(self) -> int:
        """Group size as a number of input channels (K for per-channel)."""
        return self.codes.shape[1] if self.group_size == -1 else self.group_size

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(N, K) float weight, columns in the original input-channel order."""
        w = dequantize_affine(self.codes, self.group_size, self.scale, self.zero_point, dtype)
        if self.perm is None:
            return w
        out = torch.empty_like(w)
        out[:, self.perm] = w
        return out

    def nbytes(self) -> int:
        """Bytes as stored in the artifact: packed codes, fp16 scales and zero points."""
        n, k = self.codes.shape
        groups = self.scale.numel()
        code_bytes = n * k * self.bits // 8
        zero_bytes = 0 if self.zero_point is None else groups * self.bits // 8
        return code_bytes + 2 * groups + zero_bytes + (0 if self.perm is None else 8 * k)
