"""Config type -> handler, registered next to each config with `@register_handler(Config)` and
looked up by the config's exact type (as torchao's `register_quantize_module_handler`): a config
whose type was never registered is an error, never a fallback to a parent class's method.

A handler is `handler(config, source, names, calib) -> {name: QuantizedWeight} | QuantResult`:
`source.tensor(key)` reads one float tensor, `source.model()` gives the whole PyTorch model
(calibrated methods), `names` maps each linear to quantize to its LayerScheme (bits, group size:
the config's own unless its group does not divide the layer), `calib` the calibration data or None.
"""
from __future__ import annotations

from typing import Callable

from ..errors import ConfigError

HANDLERS: dict[type, Callable] = {}


def register_handler(*config_types: type) -> Callable:
    def register(fn: Callable) -> Callable:
        for t in config_types:
            if t in HANDLERS:
                raise ValueError(f"{t.__name__} already has a handler ({HANDLERS[t].__name__})")
            HANDLERS[t] = fn
        return fn
    return register


def handler_for(config) -> Callable:
    try:
        return HANDLERS[type(config)]
    except KeyError:
        raise ConfigError(f"no quantization handler is registered for {type(config).__name__}",
                          "register one next to the config with @register_handler(...)") from None
