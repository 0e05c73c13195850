"""One config dataclass per quantization method. Configs are plain data: they are validated
here, serialised into the manifest (`to_dict`) and dispatched to the handler registered for their
exact type (`quantize.registry`; the handlers live next to the methods: rtn.py, calibrated.py). Defaults follow what TensorRT 10 consumes: symmetric weights (TensorRT's
DequantizeLinear takes no zero point), INT4 in blocks of 128 along the input dimension."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from ..errors import ConfigError
from .registry import register_handler


# TensorRT's INT4 weights take blocks of 64 or 128 input channels, whole ones only (engine/support.py,
# S_QSCHEMES); a layer whose in_features no such block divides gets another scheme (LayerScheme)
MIN_TENSORRT_BLOCK = 64


@dataclass(frozen=True)
class LayerScheme:
    """What one linear is stored as. `fallback` says why it differs from the config's own
    bits / group size (None: it does not)."""
    bits: int
    group_size: int                # -1: per output channel
    fallback: str | None = None


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

    def scheme_for(self, in_features: int) -> LayerScheme:
        """The storage of a linear with `in_features` input channels under this config."""
        return LayerScheme(self.bits, -1)

    def scheme_of(self, name: str, in_features: int) -> LayerScheme:
        """The storage of linear `name`: by its width, except where a config chooses per name (fit)."""
        return self.scheme_for(in_features)


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

    def scheme_for(self, in_features: int) -> LayerScheme:
        """The config's bits and group where the group divides in_features. Otherwise, as the peers
        do for rows their block does not divide (llama.cpp falls back to another type per tensor;
        onnxruntime's MatMulNBits pads a partial last block, which TensorRT's blocked
        DequantizeLinear does not take): the largest smaller power-of-two group down to TensorRT's
        smallest INT4 block (64) that divides it, else INT8 per output channel for that layer."""
        g, k = self.group_size, in_features
        if g == -1 or k % g == 0:
            return LayerScheme(self.bits, g)
        smaller = g // 2
        while smaller >= MIN_TENSORRT_BLOCK and k % smaller:
            smaller //= 2
        if smaller >= MIN_TENSORRT_BLOCK:
            return LayerScheme(self.bits, smaller, f"in_features {k} is not a multiple of {g}: group {smaller}, the "
                                                   f"largest power of two down to {MIN_TENSORRT_BLOCK} that divides it")
        return LayerScheme(8, -1, f"no group of {MIN_TENSORRT_BLOCK} to {g} channels divides in_features {k} "
                                  "(TensorRT's INT4 takes whole blocks of 64 or 128): INT8 per output channel")


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


@dataclass(frozen=True)
class MixedPrecisionConfig(WeightOnlyConfig):
    """Per-linear precision fitted to a memory budget (`--fit`, dsedge/fit/): each unit (every
    decoder linear, lm_head, the embedding table) at INT4 (blocks of `group_size`), INT8 per output
    channel, or FP16, round to nearest, chosen to minimise the measured logit KL within the
    budget. Unfitted (`fitted` False) it is the request; the fit stage returns the fitted copy:
    `schemes` (name, bits, group) of every quantized unit (a unit not listed stays FP16) and
    `stored` (planner part, bytes) of the whole model as it will be stored."""
    method: ClassVar[str] = "fit"
    allowed_bits: ClassVar[tuple[int, ...]] = (4, 8)
    context: int | None = None           # the context the budget is planned at (None: the target's)
    max_bits: float | None = None        # --fit-bits: at most this many stored bits per fitted weight
    fitted: bool = False
    schemes: tuple = ()                  # ((name, bits, group_size), ...)
    stored: tuple = ()                   # ((part, bytes), ...)

    def __post_init__(self):
        super().__post_init__()
        if self.group_size not in (64, 128):
            raise ConfigError(f"--fit with --group-size {self.group_size}: the fit's INT4 choice must be one TensorRT "
                              "runs (blocks of 64 or 128 input channels)", "use --group-size 128 (default) or 64")
        if not self.symmetric:
            raise ConfigError("--fit with --asym: the fit stores symmetric weights (TensorRT takes no zero point)",
                              "drop --asym")
        if self.max_bits is not None and not 4 <= self.max_bits <= 16:
            raise ConfigError(f"--fit-bits {self.max_bits} is outside 4..16",
                              "use e.g. --fit-bits 4.5 (INT4 g128 alone stores 4.125 bits per weight)")
        if self.context is not None and self.context < 1:
            raise ConfigError(f"--context {self.context} must be positive", "use e.g. --context 4096")
        # from a manifest (JSON lists) or a caller: tuples, so the config stays hashable
        object.__setattr__(self, "schemes", tuple(tuple(s) for s in self.schemes))
        object.__setattr__(self, "stored", tuple(tuple(s) for s in self.stored))

    @property
    def needs_fit(self) -> bool:
        """The request (--fit), not yet fitted: the fit stage runs first."""
        return not self.fitted

    def label(self) -> str:
        return f"fit-g{self.group_size}" if self.group_size != -1 else "fit-pc"

    def scheme_of(self, name: str, in_features: int) -> LayerScheme:
        bits, group = self._by_name()[name]
        return LayerScheme(bits, group)

    def names(self) -> list[str]:
        return [s[0] for s in self.schemes]

    def _by_name(self) -> dict:
        return {n: (b, g) for n, b, g in self.schemes}
