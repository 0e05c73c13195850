"""One config dataclass per quantization method. Configs are plain data: they are validated
here, serialised into the manifest (`to_dict`) and dispatched to the handler registered for their
exact type (`quantize.registry`; the handlers live next to the methods: rtn.py, calibrated.py). Defaults follow what TensorRT 10 consumes: symmetric weights (TensorRT's
DequantizeLinear takes no zero point), INT4 in blocks of 128 along the input dimension."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from ..errors import ConfigError
from .registry import register_handler


@dataclass(frozen=True)
class QuantConfig:
    method: ClassVar[str] = ""
    allowed_bits: ClassVar[tuple[int, ...]] = ()
    needs_model: ClassVar[bool] = False       # the handler needs the whole PyTorch model + calibration data
    matmul_precision: ClassVar[str] = "fp16"  # what the target's matmuls run in (weight-only: FP16)

    @property
    def bits(self) -> int:  # overridden by dataclass fields where the method has a choice
        return 16

    def to_dict(self) -> dict:
        return {"method": self.method, **asdict(self)}

    def label(self) -> str:
        """Short human label for folder names and tables (never parsed back)."""
        return self.method

    def validate_for(self, in_features: dict[str, int]) -> None:
        """Raise ConfigError if the config cannot apply to these linears (name -> in_features)."""


@dataclass(frozen=True)
class Fp16Config(QuantConfig):
    """No quantization: FP16 weights and activations (the accuracy reference)."""
    method: ClassVar[str] = "fp16"
    allowed_bits: ClassVar[tuple[int, ...]] = (16,)


@register_handler(Fp16Config)
def no_quantization(config: Fp16Config, source, names: list[str], calib=None) -> dict:
    return {}


@dataclass(frozen=True)
class WeightOnlyConfig(QuantConfig):
    """Weight-only quantization of the decoder linears: the options every weight method shares.
    Not a method itself (no handler is registered for it)."""
    bits: int = 4
    group_size: int = 128          # -1: per output channel
    symmetric: bool = True
    quantize_lm_head: bool = False  # lm_head stays FP16 by default, as in TensorRT-LLM / ModelOpt

    def __post_init__(self):
        if self.bits not in self.allowed_bits:
            raise ConfigError(f"--bits {self.bits} is not supported by method {self.method}",
                              f"use --bits {' or '.join(map(str, self.allowed_bits))}")
        if self.group_size != -1 and (self.group_size < 16 or self.group_size & (self.group_size - 1)):
            raise ConfigError(f"--group-size {self.group_size} is not a power of two >= 16 (or -1)",
                              "use --group-size 128 (or 32, 64, 256; -1 for per-channel)")

    def label(self) -> str:
        g = "pc" if self.group_size == -1 else f"g{self.group_size}"
        return f"{self.method}-w{self.bits}-{g}" + ("" if self.symmetric else "-asym")

    def validate_for(self, in_features: dict[str, int]) -> None:
        if self.group_size == -1:
            return
        for name, k in in_features.items():
            if k % self.group_size:
                raise ConfigError(
                    f"--group-size {self.group_size} does not divide in_features {k} of {name}",
                    f"use a group size that divides {k} (e.g. {_largest_pow2_divisor(k)}) or -1 (per channel)")


@dataclass(frozen=True)
class Int4WeightOnlyConfig(WeightOnlyConfig):
    """INT4 weight-only, round to nearest, group size 128."""
    method: ClassVar[str] = "rtn"
    allowed_bits: ClassVar[tuple[int, ...]] = (4, 8)


@dataclass(frozen=True)
class Int8WeightOnlyConfig(WeightOnlyConfig):
    """INT8 weight-only, one scale per output channel."""
    method: ClassVar[str] = "int8"
    allowed_bits: ClassVar[tuple[int, ...]] = (8,)
    bits: int = 8
    group_size: int = -1


def _largest_pow2_divisor(k: int) -> int:
    g = 128
    while g > 16 and k % g:
        g //= 2
    return g if k % g == 0 else -1
