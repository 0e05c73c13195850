"""One config dataclass per quantization method. Configs are plain data: they are validated
here, serialised into the manifest (`to_dict`) and dispatched to a handler through
`quantize.registry`. Defaults follow what TensorRT 10 consumes: symmetric weights (TensorRT's
DequantizeLinear takes no zero point), INT4 in blocks of 128 along the input dimension."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from ..errors import ConfigError


@dataclass(frozen=True)
class QuantConfig:
    method: ClassVar[str] = ""
    allowed_bits: ClassVar[tuple[int, ...]] = ()

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


@dataclass(frozen=True)
class WeightOnlyConfig(QuantConfig):
    """Round-to-nearest weight-only quantization of the decoder linears (min-max scales)."""
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


METHODS: dict[str, type[QuantConfig]] = {c.method: c for c in (Fp16Config, Int4WeightOnlyConfig, Int8WeightOnlyConfig)}


def config_from_options(method: str | None = None, bits: int | None = None, group_size: int | None = None,
                        symmetric: bool | None = None, **options) -> QuantConfig:
    """The config the CLI options name: `--bits 4` alone means RTN INT4, `--bits 8` INT8, 16 FP16.
    `options`: method options (backend, damping, act_order, alpha, ...); None means the default,
    and an option the method does not take is an error naming the methods that do."""
    if method is None:
        method = {16: "fp16", 8: "int8"}.get(bits or 4, "rtn")
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}", f"use one of: {', '.join(METHODS)}")
    cls = METHODS[method]
    if cls is Int4WeightOnlyConfig and bits == 8:
        cls = Int8WeightOnlyConfig  # `--method rtn --bits 8` is per-channel INT8 unless a group is given
    kwargs = {}
    names = {f.name for f in fields(cls)}
    if bits is not None:
        if "bits" not in names:
            if bits not in cls.allowed_bits:
                raise ConfigError(f"--bits {bits} is not supported by method {method}",
                                  f"use --bits {' or '.join(map(str, cls.allowed_bits))}")
        else:
            kwargs["bits"] = bits
    if group_size is not None and "group_size" in names:
        kwargs["group_size"] = group_size
    if symmetric is not None and "symmetric" in names:
        kwargs["symmetric"] = symmetric
    for key, value in options.items():
        if value is None:
            continue
        if key not in names:
            takers = [m for m, c in METHODS.items() if key in {f.name for f in fields(c)}]
            raise ConfigError(f"--{key.replace('_', '-')} is not an option of method {method}",
                              f"it applies to: {', '.join(takers) or 'no method'}; drop it or change --method")
        kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(d: dict) -> QuantConfig:
    """Inverse of QuantConfig.to_dict (reads a manifest)."""
    d = dict(d)
    cls = METHODS[d.pop("method")]
    return cls(**d)
