"""The config of an imported (already quantized: GPTQ / AWQ / compressed-tensors) checkpoint. It is
not re-quantized: the quantize stage hands on the checkpoint's own codes (Checkpoint.prequant)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar



@dataclass(frozen=True)
class ImportedConfig:
    prequant: object               # load.prequant.Prequant: format, bits, group size, symmetry, weights
    method: ClassVar[str] = "prequantized"
    needs_model: ClassVar[bool] = False
    matmul_precision: ClassVar[str] = "fp16"
    quantize_lm_head: ClassVar[bool] = False

    @property
    def bits(self) -> int:
        return self.prequant.bits

    @property
    def group_size(self) -> int:
        return self.prequant.group_size

    @property
    def symmetric(self) -> bool:
        return self.prequant.symmetric

    def to_dict(self) -> dict:
        return self.prequant.to_dict()

    def label(self) -> str:
        return self.prequant.label()

    def scheme_for(self, in_features: int):
        """The checkpoint's own layout (for the planner)."""
        from .configs import LayerScheme

        return LayerScheme(self.bits, self.group_size)

