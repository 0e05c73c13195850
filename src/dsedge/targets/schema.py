"""Targets are data: one YAML file per device, validated here. Unknown keys and wrong types
are errors naming the file and the key."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import TargetError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gpu(_Strict):
    architecture: str
    compute_capability: str


class Memory(_Strict):
    total_gb: float
    usable_gb: float
    bandwidth_gbs: float


class Compute(_Strict):
    int8_dense_tops: float
    fp16_dense_tflops: float


class TensorRT(_Strict):
    version: str
    jetpack: str | None = None
    l4t: str | None = None


class Profile(_Strict):
    max_batch: int = 1
    max_context: int = 4096


class Budgets(_Strict):
    ttft_ms: float | None = None
    decode_tokens_per_s: float | None = None
    peak_memory_gb: float | None = None
    avg_power_w: float | None = None
    max_ppl_increase_pct: float | None = None


class Target(_Strict):
    name: str
    aliases: list[str] = []
    description: str = ""
    kind: Literal["jetson", "discrete"]
    gpu: Gpu
    memory: Memory
    compute: Compute
    power_modes: dict[str, float]
    tensorrt: TensorRT
    precisions: list[Literal["fp16", "bf16", "fp8", "int8", "int4_weight_only"]]
    profile: Profile = Profile()
    budgets: Budgets = Budgets()
    source_file: str | None = None

    def to_dict(self) -> dict:
        return self.model_dump(exclude={"source_file"})


def targets_dirs(extra: Path | None = None) -> list[Path]:
    """Where targets are looked up, first match wins: --targets-dir, the installed copy, the repo."""
    here = Path(__file__).resolve().parent.parent
    dirs = [extra] if extra else []
    dirs += [here / "_data" / "targets", here.parent.parent / "targets"]
    return [d for d in dirs if d and d.is_dir()]


def _load(path: Path) -> Target:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise TargetError(f"{path} is not valid YAML ({e})", "fix the file's syntax") from None
    if not isinstance(data, dict):
        raise TargetError(f"{path} does not hold a mapping", "see targets/orin-agx-64.yaml for the layout")
    try:
        return Target(**data, source_file=str(path))
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].lower()
        raise TargetError(f"{path}: {key}: {what}", "see targets/orin-agx-64.yaml for the keys and their types") from None


def list_targets(extra: Path | None = None) -> dict[str, Target]:
    out: dict[str, Target] = {}
    for d in targets_dirs(extra):
        for f in sorted(d.glob("*.yaml")):
            t = _load(f)
            out.setdefault(t.name, t)
    return out


def find_target(name: str, extra: Path | None = None) -> Target:
    targets = list_targets(extra)
    for t in targets.values():
        if name == t.name or name in t.aliases:
            return t
    names = ", ".join(f"{t.name} ({', '.join(t.aliases)})" if t.aliases else t.name for t in targets.values())
    raise TargetError(f"unknown target {name!r}", f"use one of: {names}; or add a YAML file with --targets-dir")
