"""Every setting the TensorRT builder gets, as pure functions of the target and the graph's
signature, returned as one serialisable dataclass (it goes into the manifest and the device
command). Nothing here imports TensorRT.

Profiles follow the export contract (dsedge.export.contract): input_ids / position_ids are
(batch, seq), attention_mask is (batch, past + seq), past_key_values.* are
(batch, kv_heads, past, head_dim). Two profiles: prefill (empty cache, prompt up to the
target's max_prompt) and decode (one token, cache up to max_context - 1), both capped at the
model's max_position_embeddings.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import TargetError
from .graph import GraphSignature, nbytes
from .support import HW_COMPAT, parse_version

GiB = 1 << 30
MiB = 1 << 20
PREFILL_OPT = 128            # the budgets' time-to-first-token prompt length
WORKSPACE_CAP = 4 * GiB      # more buys nothing for a decoder's GEMMs; less leaves tactics out
WORKSPACE_MIN = 256 * MiB    # below this the builder drops most GEMM tactics
OPT_LEVEL = 3                # TensorRT's default (0..5); higher levels multiply build time on device
# Weight copies alive during a build in the GPU's memory: on Jetson the parsed ONNX weights and
# the engine's own copy share one physical memory (on-device builds are killed for this); on a
# discrete GPU the parser's copy stays in host RAM.
WEIGHT_COPIES = {"jetson": 2, "discrete": 1}

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ShapeRange:
    min: Shape
    opt: Shape
    max: Shape


@dataclass(frozen=True)
class Profile:
    name: str
    shapes: dict[str, ShapeRange]


@dataclass(frozen=True)
class MemoryPlan:
    usable_bytes: int
    weight_bytes: int
    weight_copies: int
    kv_cache_bytes: int       # past inputs + present outputs at the decode profile's max
    logits_bytes: int         # logits output at the prefill profile's max
    reserve_bytes: int        # the target's runtime overhead (CUDA context, kernels, process)
    workspace_bytes: int
    fits: bool


@dataclass(frozen=True)
class EngineSettings:
    target: str
    tensorrt_version: str
    strongly_typed: bool
    builder_flags: tuple[str, ...]
    profiles: tuple[Profile, ...]
    memory: MemoryPlan
    builder_optimization_level: int
    hardware_compatibility_level: str
    compatible_targets: tuple[str, ...]
    timing_cache: str
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profiles"] = {p.name: {k: {"min": list(r.min), "opt": list(r.opt), "max": list(r.max)}
                                  for k, r in p.shapes.items()} for p in self.profiles}
        return d


def max_context(target, max_positions: int | None = None) -> int:
    """The target's profile.max_context, capped at the model's max_position_embeddings: positions
    past it were never trained (and RoPE caches stop there), so a profile to them only buys a
    larger KV cache reservation and workspace taken from the build."""
    c = target.profile.max_context
    return min(c, max_positions) if max_positions else c


def _roles(target, max_positions: int | None = None) -> dict[str, dict[str, tuple[int, int, int]]]:
    """(min, opt, max) of batch, seq, past and total (= past + seq) length per profile."""
    b, c = target.profile.max_batch, max_context(target, max_positions)
    prompt = min(getattr(target.profile, "max_prompt", c), c)
    if c < 2:
        raise TargetError(f"{target.name}: profile.max_context {c} leaves no room to decode",
                          "set profile.max_context to 2 or more in the target file")
    batch = (1, 1, b)                 # budgets are batch-1 figures: tune for one stream
    seq = (1, min(PREFILL_OPT, prompt), prompt)
    past_d = (1, c // 2, c - 1)
    return {"prefill": {"batch": batch, "seq": seq, "past": (0, 0, 0), "total": seq},
            "decode": {"batch": batch, "seq": (1, 1, 1), "past": past_d, "total": tuple(p + 1 for p in past_d)}}


def _layout(name: str) -> tuple[str, ...] | None:
    """The role of each dim of a contract input (None for names outside the contract)."""
    if name in ("input_ids", "position_ids"):
        return ("batch", "seq")
    if name == "attention_mask":
        return ("batch", "total")
    if name.startswith("past_key_values."):
        return ("batch", None, "past", None)
    return None


def profiles(target, sig: GraphSignature, max_positions: int | None = None) -> tuple[Profile, ...]:
    """Prefill and decode profiles for every graph input. Dims with a role come from the target
    (context capped at the model's max_position_embeddings, `max_positions`); the others must be
    static in the graph (kv heads, head dim)."""
    out = []
    for pname, roles in _roles(target, max_positions).items():
        shapes = {}
        for name, t in sig.inputs.items():
            layout = _layout(name)
            if layout is None or len(layout) != len(t.dims):
                raise TargetError(f"graph input {name} {list(t.dims)} is not part of the decoder contract",
                                  "export the model with dsedge (inputs input_ids, attention_mask, position_ids, past_key_values.*)")
            dims = []
            for i in range(3):
                shape = []
                for role, d in zip(layout, t.dims):
                    if role is not None:
                        shape.append(roles[role][i])
                    elif isinstance(d, int):
                        shape.append(d)
                    else:
                        raise TargetError(f"graph input {name} has a dynamic dim {d!r} that no profile covers",
                                          "only batch, sequence and past length may be dynamic")
                dims.append(tuple(shape))
            shapes[name] = ShapeRange(*dims)
        out.append(Profile(pname, shapes))
    return tuple(out)


def _max_bytes(sig: GraphSignature, profs: tuple[Profile, ...]) -> tuple[int, int]:
    """(KV cache: past inputs + present outputs, logits) at the profiles' largest shapes."""
    decode = next(p for p in profs if p.name == "decode")
    prefill = next(p for p in profs if p.name == "prefill")
    past = present = 0
    for k, r in decode.shapes.items():
        if k.startswith("past_key_values."):
            bb, h, p, d = r.max
            past += nbytes(sig.inputs[k].dtype, r.max)
            present += nbytes(sig.inputs[k].dtype, (bb, h, p + 1, d))   # present = past + 1 token
    logits = sig.outputs.get("logits")
    lg = 0
    if logits is not None and isinstance(logits.dims[-1], int):
        bp, sp = prefill.shapes["input_ids"].max
        lg = nbytes(logits.dtype, (bp, sp, logits.dims[-1]))
    return past + present, lg


def memory_plan(target, sig: GraphSignature, profs: tuple[Profile, ...]) -> MemoryPlan:
    """Workspace = what the target's usable memory leaves after the weights (x copies alive
    during the build), the KV cache, the logits and the runtime overhead, capped at 4 GiB."""
    usable = int(target.memory.usable_gb * GiB)
    reserve = int(getattr(target.memory, "runtime_overhead_gb", 1.0) * GiB)
    copies = WEIGHT_COPIES[target.kind]
    kv, logits = _max_bytes(sig, profs)
    left = usable - copies * sig.weight_bytes - kv - logits - reserve
    workspace = max(0, min(WORKSPACE_CAP, left))
    return MemoryPlan(usable, sig.weight_bytes, copies, kv, logits, reserve, workspace, left >= WORKSPACE_MIN)


def hardware_compatibility(target, all_targets=()) -> tuple[str, tuple[str, ...]]:
    """("same_compute_capability", other targets that can load the engine) for a discrete GPU
    whose TensorRT has that level (10.9+); ("none", ()) otherwise. Jetson: never (the support
    matrix excludes JetPack)."""
    if HW_COMPAT.discrete_only and target.kind != "discrete":
        return "none", ()
    if parse_version(target.tensorrt.version) < HW_COMPAT.since:
        return "none", ()
    group = getattr(target.gpu, "hardware_compat_group", None)
    same = tuple(sorted(t.name for t in all_targets if t.name != target.name and t.kind == "discrete"
                        and t.gpu.compute_capability == target.gpu.compute_capability
                        and (group is None or getattr(t.gpu, "hardware_compat_group", group) == group)))
    return HW_COMPAT.level, same


def timing_cache_path(cache_root: Path, target) -> Path:
    """One timing cache per TensorRT version and compute capability (TensorRT refuses a cache
    from another device when ignore_mismatch is False, which is how dsedge sets it)."""
    cc = target.gpu.compute_capability.replace(".", "")
    return Path(cache_root) / "tensorrt" / f"timing-trt{target.tensorrt.version}-sm{cc}.cache"


def engine_settings(target, sig: GraphSignature, cache_root: Path, all_targets=(),
                    optimization_level: int = OPT_LEVEL, max_positions: int | None = None) -> EngineSettings:
    """max_positions: the model's max_position_embeddings (config.json), which caps the profiles."""
    if not 0 <= optimization_level <= 5:
        raise TargetError(f"builder optimization level {optimization_level} is not in 0..5", "use 3 (TensorRT's default)")
    profs = profiles(target, sig, max_positions)
    mem = memory_plan(target, sig, profs)
    level, compatible = hardware_compatibility(target, all_targets)
    notes = ["strongly typed: precisions come from the ONNX types (FP16 activations, INT4/INT8 weights "
             "behind DequantizeLinear); no FP16/INT8 builder flags"]
    if max_context(target, max_positions) < target.profile.max_context:
        notes.append(f"context capped at the model's max_position_embeddings {max_positions} "
                     f"({target.name}'s profile.max_context is {target.profile.max_context})")
    if not mem.fits:
        notes.append(f"does not fit: {target.name} leaves {mem.workspace_bytes / MiB:.0f} MiB of workspace "
                     f"after weights x{mem.weight_copies}, KV cache, logits and runtime overhead")
    return EngineSettings(target.name, target.tensorrt.version, True, (), profs, mem, optimization_level,
                          level, compatible, str(timing_cache_path(cache_root, target)), tuple(notes))
