"""The methods by name (what `--method` takes) and the config the CLI options name."""
from __future__ import annotations

from dataclasses import fields

from ..errors import ConfigError
from .calibrated import AwqConfig, GptqConfig, SmoothQuantConfig
from .configs import Fp16Config, Int4WeightOnlyConfig, Int8WeightOnlyConfig, MixedPrecisionConfig, QuantConfig

METHODS: dict[str, type[QuantConfig]] = {c.method: c for c in (
    Fp16Config, Int4WeightOnlyConfig, Int8WeightOnlyConfig, GptqConfig, AwqConfig, SmoothQuantConfig)}


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


# configs a manifest may hold that `--method` does not name (a fitted mix comes from --fit)
RECORDED: dict[str, type[QuantConfig]] = {**METHODS, MixedPrecisionConfig.method: MixedPrecisionConfig}


def config_from_dict(d: dict) -> QuantConfig:
    """Inverse of QuantConfig.to_dict (reads a manifest)."""
    d = dict(d)
    cls = RECORDED[d.pop("method")]
    return cls(**d)
