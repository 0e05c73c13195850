"""Targets are data: one YAML file per device, validated here. Unknown keys and wrong types
are errors naming the file and the key.

Units: memory sizes in GiB (2^30 bytes; DRAM is sized in powers of two), bandwidth in GB/s
(10^9 bytes/s), throughput in dense (non-sparse) TFLOPS / TOPS, power in watts. The top-level
memory / compute figures describe the target at its `power_mode`; another mode may carry its
own figures (e.g. Orin Nano's 15 W mode against MAXN_SUPER) and `Target.at_mode` applies them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import TargetError
from ..safe_yaml import load_yaml

Precision = Literal["fp16", "bf16", "fp8", "int8", "int4_weight_only"]

# What each precision needs from the hardware and from TensorRT (sources: TensorRT support
# matrix "Hardware and Precision" — FP8 from compute capability 8.9 (Ada, Hopper), BF16 from 8.0;
# INT4 weight-only through blocked DequantizeLinear from TensorRT 10.0 release notes).
PRECISION_NEEDS: dict[str, dict[str, tuple[int, int]]] = {
    "fp16": {},
    "int8": {},
    "bf16": {"min_cc": (8, 0)},
    "fp8": {"min_cc": (8, 9)},
    "int4_weight_only": {"min_trt": (10, 0)},
}


def _version(s: str) -> tuple[int, int]:
    major, _, minor = s.partition(".")
    return int(major), int(minor.split(".")[0] or 0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Gpu(_Strict):
    architecture: str
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    # Targets in one group can share an engine built with TensorRT's hardware-compatibility
    # level (same compute capability, e.g. RTX 4090 and L40 are both sm89 / Ada).
    hardware_compat_group: str

    @property
    def cc(self) -> tuple[int, int]:
        return _version(self.compute_capability)


class Memory(_Strict):
    total_gb: float = Field(gt=0)
    usable_gb: float = Field(gt=0)          # what a model may take (Jetson: shared with the OS)
    bandwidth_gbs: float = Field(gt=0)
    runtime_overhead_gb: float = Field(ge=0)  # CUDA context, TensorRT / cuBLAS kernels, host process

    @model_validator(mode="after")
    def _usable_within_total(self):
        if self.usable_gb > self.total_gb:
            raise ValueError(f"usable_gb {self.usable_gb:g} exceeds total_gb {self.total_gb:g}")
        return self


class Compute(_Strict):
    int8_dense_tops: float = Field(gt=0)
    fp16_dense_tflops: float = Field(gt=0)
    fp8_dense_tflops: float | None = Field(default=None, gt=0)


class PowerMode(_Strict):
    watts: float = Field(gt=0)              # the mode's power budget (board power for discrete GPUs)
    nvpmodel_id: int | None = None
    # figures that differ from the top-level ones in this mode (None: same)
    bandwidth_gbs: float | None = Field(default=None, gt=0)
    int8_dense_tops: float | None = Field(default=None, gt=0)
    fp16_dense_tflops: float | None = Field(default=None, gt=0)


class TensorRT(_Strict):
    version: str = Field(pattern=r"^\d+\.\d+(\.\d+)*$")
    jetpack: str | None = None
    l4t: str | None = None
    cuda: str | None = None


def _jetpack_key(text: str) -> str:
    """'7.2', 'jp7.2', 'JetPack 7.2' -> '7.2'."""
    s = str(text).strip()
    for prefix in ("jetpack", "jp"):
        if s.lower().startswith(prefix):
            s = s[len(prefix):].strip()
    return s


class Efficiency(_Strict):
    decode_bandwidth: float = Field(gt=0, le=1)  # achieved / peak bandwidth in decode
    prefill_compute: float = Field(gt=0, le=1)   # achieved / peak dense throughput in prefill


class Profile(_Strict):
    max_batch: int = Field(default=1, ge=1)
    max_context: int = Field(default=4096, ge=1)
    max_prompt: int = Field(default=2048, ge=1)  # prefill profile's longest prompt

    @model_validator(mode="after")
    def _prompt_in_context(self):
        if self.max_prompt > self.max_context:
            raise ValueError(f"max_prompt {self.max_prompt} exceeds max_context {self.max_context}")
        return self


class Budgets(_Strict):
    ttft_ms: float | None = Field(default=None, gt=0)
    decode_tokens_per_s: float | None = Field(default=None, gt=0)
    peak_memory_gb: float | None = Field(default=None, gt=0)
    avg_power_w: float | None = Field(default=None, gt=0)
    max_ppl_increase_pct: float | None = Field(default=None, gt=0)


class Target(_Strict):
    name: str
    aliases: list[str] = []
    description: str = ""
    kind: Literal["jetson", "discrete"]
    gpu: Gpu
    memory: Memory
    compute: Compute
    power_modes: dict[str, PowerMode]
    power_mode: str
    tensorrt: TensorRT                      # the default software stack (Jetson: its JetPack)
    # Other JetPack releases the module runs, by JetPack version: `--jetpack 7.2` (for_jetpack)
    # puts one in place of `tensorrt`. Jetson targets only.
    jetpacks: dict[str, TensorRT] = {}
    precisions: list[Precision]
    efficiency: Efficiency
    profile: Profile = Profile()
    budgets: Budgets = Budgets()
    source_file: str | None = None

    @field_validator("power_mode")
    @classmethod
    def _known_mode(cls, v, info):
        modes = info.data.get("power_modes") or {}
        if v not in modes:
            raise ValueError(f"{v!r} is not one of power_modes ({', '.join(modes)})")
        return v

    @field_validator("jetpacks")
    @classmethod
    def _jetpacks_consistent(cls, v, info):
        trt = info.data.get("tensorrt")
        if v and (info.data.get("kind") != "jetson" or trt is None or trt.jetpack is None):
            raise ValueError("jetpacks is for Jetson targets whose tensorrt block names its jetpack")
        for key, rel in v.items():
            if trt is not None and key == trt.jetpack:
                raise ValueError(f"JetPack {key} is the default (tensorrt.jetpack); list only the other releases")
            if rel.jetpack not in (None, key):
                raise ValueError(f"{key}: jetpack {rel.jetpack!r} differs from its key; drop it or make them agree")
        return {k: v[k].model_copy(update={"jetpack": k}) for k in v}

    @field_validator("precisions")
    @classmethod
    def _precisions_supported(cls, v, info):
        gpu, trt, comp = info.data.get("gpu"), info.data.get("tensorrt"), info.data.get("compute")
        for p in v:
            need = PRECISION_NEEDS[p]
            if gpu and "min_cc" in need and gpu.cc < need["min_cc"]:
                raise ValueError(f"{p} needs compute capability >= {'.'.join(map(str, need['min_cc']))}, "
                                 f"this GPU has {gpu.compute_capability}")
            if trt and "min_trt" in need and _version(trt.version) < need["min_trt"]:
                raise ValueError(f"{p} needs TensorRT >= {'.'.join(map(str, need['min_trt']))}, "
                                 f"this target ships {trt.version}")
            if comp and p == "fp8" and comp.fp8_dense_tflops is None:
                raise ValueError("fp8 is listed but compute.fp8_dense_tflops is not")
        return v

    @model_validator(mode="after")
    def _power_budget_met_by_default(self):
        # The power estimate is the default mode's rating, an upper bound: a budget under it
        # could only ever read "unverified" on a default build, which tells the user nothing.
        b, mode = self.budgets.avg_power_w, self.power_modes[self.power_mode]
        if b is not None and mode.watts > b:
            raise ValueError(f"budgets.avg_power_w {b:g} W is below power mode {self.power_mode}'s {mode.watts:g} W: "
                             "every default build would report it unverified; raise the budget to the mode's "
                             "rating or make power_mode a mode within it")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(exclude={"source_file"})

    @property
    def jetpack_releases(self) -> dict[str, TensorRT]:
        """JetPack version -> its TensorRT block, the default first (empty for discrete GPUs)."""
        if self.tensorrt.jetpack is None:
            return {}
        return {self.tensorrt.jetpack: self.tensorrt, **self.jetpacks}

    def for_jetpack(self, jetpack: str) -> "Target":
        """This target on another JetPack release (`--jetpack`): its TensorRT, CUDA and L4T in
        `tensorrt`, the others in `jetpacks`; validated again (precisions depend on TensorRT)."""
        key, releases = _jetpack_key(jetpack), self.jetpack_releases
        if not releases:
            raise TargetError(f"--jetpack {jetpack}: {self.name} is not a Jetson target",
                              "drop --jetpack (it picks the JetPack of Jetson targets); a discrete GPU's "
                              "TensorRT is its target file's tensorrt.version")
        if key not in releases:
            raise TargetError(f"target {self.name} has no JetPack {key}",
                              f"use one of: {', '.join(releases)}; or add it under jetpacks: in {self.source_file}")
        if key == self.tensorrt.jetpack:
            return self
        data = self.model_dump()
        data["tensorrt"] = releases[key].model_dump()
        data["jetpacks"] = {k: r.model_dump() for k, r in releases.items() if k != key}
        try:
            return Target.model_validate(data)
        except ValidationError as e:
            raise TargetError(f"{self.name} with JetPack {key}: {e.errors()[0]['msg']}",
                              f"fix jetpacks.{key} in {self.source_file}") from None

    def at_mode(self, mode: str) -> "Target":
        """This target with `mode`'s figures (bandwidth, throughput) in place of the top-level ones."""
        if mode not in self.power_modes:
            raise TargetError(f"target {self.name} has no power mode {mode!r}",
                              f"use one of: {', '.join(self.power_modes)}")
        m = self.power_modes[mode]
        mem = self.memory.model_copy(update={k: v for k, v in {"bandwidth_gbs": m.bandwidth_gbs}.items() if v})
        comp = self.compute.model_copy(update={k: v for k, v in {"int8_dense_tops": m.int8_dense_tops,
                                                                  "fp16_dense_tflops": m.fp16_dense_tflops}.items() if v})
        return self.model_copy(update={"memory": mem, "compute": comp, "power_mode": mode})

    @property
    def power_w(self) -> float:
        return self.power_modes[self.power_mode].watts


def targets_dirs(extra: Path | None = None) -> list[Path]:
    """Where targets are looked up, first match wins: --targets-dir, the installed copy, the repo."""
    here = Path(__file__).resolve().parent.parent
    dirs = [extra] if extra else []
    dirs += [here / "_data" / "targets", here.parent.parent / "targets"]
    return [d for d in dirs if d and d.is_dir()]


def _load(path: Path) -> Target:
    data = load_yaml(path, "target file", TargetError)
    if not isinstance(data, dict):
        raise TargetError(f"{path} does not hold a mapping", "see targets/orin-agx-64.yaml for the layout")
    if "source_file" in data:
        raise TargetError(f"{path}: source_file: unknown key", "remove it; dsedge records the file itself")
    try:
        return Target.model_validate({**data, "source_file": str(path)})
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            what = "unknown key"
        elif err["type"] == "value_error":     # our own consistency checks: keep their wording
            what = str(err.get("ctx", {}).get("error", err["msg"]))
        else:
            what = err["msg"].lower()
        where = f"{key}: " if key else ""
        raise TargetError(f"{path}: {where}{what}", "see targets/orin-agx-64.yaml for the keys and their types") from None


def list_targets(extra: Path | None = None) -> dict[str, Target]:
    out: dict[str, Target] = {}
    for d in targets_dirs(extra):
        for f in sorted(d.glob("*.yaml")):
            t = _load(f)
            out.setdefault(t.name, t)
    return out


def find_target(name: str, extra: Path | None = None, jetpack: str | None = None) -> Target:
    """The target called `name` (or an alias); `jetpack` picks one of its JetPack releases."""
    targets = list_targets(extra)
    for t in targets.values():
        if name == t.name or name in t.aliases:
            return t.for_jetpack(jetpack) if jetpack else t
    names = ", ".join(f"{t.name} ({', '.join(t.aliases)})" if t.aliases else t.name for t in targets.values())
    raise TargetError(f"unknown target {name!r}", f"use one of: {names}; or add a YAML file with --targets-dir")
