"""One module per decoder family; each holds one `ArchSpec` (archs/base.py) with everything dsedge
knows about it. Every stage asks this registry; none names a family.

Adding a family: a module here with its SPEC, one line in FAMILIES below, its tiny reference
checkpoint (reference/train.py --arch <model_type>) and a published config.json in configs/.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UnsupportedArchitectureError
from . import deepseek_v2, deepseek_v3, llama, qwen2, qwen3
from .base import ArchSpec, MoeSpec, Reference, Smoothing

FAMILIES = (qwen2, llama, qwen3, deepseek_v2, deepseek_v3)
REGISTRY: dict[str, ArchSpec] = {m.SPEC.name: m.SPEC for m in FAMILIES}
CONFIGS = Path(__file__).parent / "configs"   # published config.json files, by short name


def supported() -> list[ArchSpec]:
    """The families dsedge builds (the planner knows every one in REGISTRY)."""
    return [s for s in REGISTRY.values() if s.unsupported is None]


def _name(what) -> str:
    if isinstance(what, str):
        return what
    archs = (what.get("architectures") if isinstance(what, dict) else getattr(what, "architectures", None)) or []
    return archs[0] if archs else "<none>"


def arch_for(what, plan_only: bool = False) -> ArchSpec:
    """The spec of an architecture name, a config.json dict or a transformers config.
    plan_only: also the families the planner knows but dsedge does not build yet."""
    name = _name(what)
    spec = REGISTRY.get(name)
    if spec is not None and (plan_only or spec.unsupported is None):
        return spec
    what = f" ({spec.unsupported})" if spec is not None else ""
    known = REGISTRY if plan_only else {s.name: s for s in supported()}
    raise UnsupportedArchitectureError(
        f"architecture {name}{what} is not supported yet",
        f"use a checkpoint of a supported architecture: {', '.join(sorted(known))}")


def by_reference(name: str) -> ArchSpec:
    """The family whose tiny reference checkpoint is `name`."""
    for s in REGISTRY.values():
        if s.reference is not None and s.reference.name == name:
            return s
    raise KeyError(name)


def truncated_config(config, layers: int):
    """A copy of a transformers config with only its first `layers` decoder layers."""
    import copy

    cfg = copy.deepcopy(config)
    cfg.num_hidden_layers = layers
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = cfg.layer_types[:layers]
    return cfg


def published_config(short_name: str) -> dict:
    """A published config.json shipped in archs/configs/ (real dimensions, rope settings)."""
    return json.loads((CONFIGS / f"{short_name}.json").read_text())


__all__ = ["ArchSpec", "MoeSpec", "Reference", "Smoothing", "REGISTRY", "FAMILIES", "CONFIGS", "supported",
           "arch_for", "by_reference", "published_config",
           "truncated_config"]
