"""The bytes a fit may give its units on a target (the planner's arithmetic, plan/memory.py):

    budget = usable - KV cache at the context - workspace - runtime - weights not fitted
             (norms, biases; everything the planner counts that is not a unit)

and, with --fit-bits B, at most B / 8 bytes per fitted weight (ModelOpt's AutoQuantize budget
is the same kind of number: effective bits). The smaller of the two binds."""
from __future__ import annotations

from dataclasses import dataclass

from ..plan.memory import GiB, model_tensors, plan_memory
from ..quantize.configs import Fp16Config
from .units import FP16, Unit, unit_bytes


@dataclass(frozen=True)
class Budget:
    bytes: int                 # what the fitted units may store
    target_bytes: int          # from the target at the context
    bits_bytes: int | None     # from --fit-bits (None: not given)
    context: int
    batch: int
    kv_cache: str
    kv_bytes: int
    workspace_bytes: int
    runtime_bytes: int
    fixed_bytes: int           # weights that are not units (FP16)
    usable_bytes: int
    params: int                # weights in the units
    fp16_parts: tuple = ()     # (planner part, bytes) of the whole model at FP16

    @property
    def binding(self) -> str:
        return "--fit-bits" if self.bits_bytes is not None and self.bits_bytes < self.target_bytes else "target memory"

    def to_dict(self) -> dict:
        g = lambda b: round(b / GiB, 4)
        return {"bytes": self.bytes, "binding": self.binding, "target_bytes": self.target_bytes,
                "bits_bytes": self.bits_bytes, "bits_per_weight": round(8 * self.bytes / max(1, self.params), 4),
                "context": self.context, "batch": self.batch, "kv_cache": self.kv_cache,
                "gib": {"budget": g(self.bytes), "usable": g(self.usable_bytes), "kv_cache": g(self.kv_bytes),
                        "workspace": g(self.workspace_bytes), "runtime": g(self.runtime_bytes),
                        "weights_not_fitted": g(self.fixed_bytes)}}


def weight_budget(config: dict, target, units: list[Unit], context: int | None = None,
                  kv_cache: str = "fp16", max_bits: float | None = None) -> Budget:
    p = plan_memory(config, target, Fp16Config(), context, None, kv_cache)
    fixed = p.weight_bytes - sum(unit_bytes(u, FP16) for u in units)
    target_bytes = p.usable_bytes - p.kv_bytes - p.workspace_bytes - p.overhead_bytes - fixed
    params = sum(u.params for u in units)
    bits_bytes = None if max_bits is None else int(max_bits * params / 8)
    return Budget(min(target_bytes, bits_bytes) if bits_bytes is not None else target_bytes, target_bytes, bits_bytes,
                  p.context, p.batch, kv_cache, p.kv_bytes, p.workspace_bytes, p.overhead_bytes, fixed,
                  p.usable_bytes, params, tuple(p.weight_parts.items()))


def stored_parts(b: Budget, units: list[Unit], chosen_bytes: dict[str, int]) -> dict[str, int]:
    """Bytes by planner part of the whole model as fitted: the FP16 parts with each unit's FP16
    bytes replaced by its choice's (chosen_bytes: unit name -> bytes)."""
    parts = dict(b.fp16_parts)
    for u in units:
        parts[u.part] = parts.get(u.part, 0) - unit_bytes(u, FP16) + chosen_bytes[u.name]
    return parts


def plan_fit(config: dict, target, context: int | None = None, batch: int | None = None, kv_cache: str = "fp16",
             group_size: int = 128, max_bits: float | None = None):
    """`dsedge plan --fit` from config.json alone: the budget, and the cheapest mix (every unit at
    its cheapest choice: INT4 linears and lm_head, INT8 embedding) as a MemoryPlan. Which units
    get more than their cheapest is decided by the build, which measures them.
    -> (MemoryPlan of the cheapest mix, {budget, cheapest bytes, room, ...})"""
    from dataclasses import replace

    from ..quantize.configs import MixedPrecisionConfig
    from .units import choices, config_units

    units = config_units(model_tensors(config))
    b = weight_budget(config, target, units, context, kv_cache, max_bits)
    how, chosen, upgrade = {}, {}, 0
    for u in units:
        opts = choices(u, group_size)
        label, s = opts[0]
        chosen[u.name] = unit_bytes(u, s)
        if len(opts) > 2:       # INT4 -> INT8 of a linear: what the room buys
            upgrade += unit_bytes(u, opts[1][1]) - chosen[u.name]
        how.setdefault(u.part, set()).add(label.upper() + (f" g{group_size}" if label == "int4" else ""))
    cheapest, parts = sum(chosen.values()), stored_parts(b, units, chosen)
    mix = MixedPrecisionConfig(group_size=group_size, context=b.context, max_bits=max_bits, fitted=True,
                               stored=tuple(parts.items()))
    p = plan_memory(config, target, mix, b.context, batch, kv_cache)
    p = replace(p, part_how={k: " + ".join(sorted(v)) + " (cheapest)" for k, v in how.items()})
    room = b.bytes - cheapest
    return p, {"budget": b.to_dict(), "cheapest_bytes": cheapest, "fits": room >= 0, "room_bytes": room,
               "room_int8_fraction": round(max(0, room) / upgrade, 4) if upgrade else None,
               "group_size": group_size, "units": len(units),
               "note": "which units get INT8 or FP16 within the room is chosen by `dsedge build --fit`, "
                       "which measures each unit's KL on the weights"}
