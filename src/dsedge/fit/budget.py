"""The bytes a fit may give its units on a target (the planner's arithmetic, plan/memory.py):

    budget = usable - KV cache at the context - workspace - runtime - weights not fitted
             (norms, biases; everything the planner counts that is not a unit)

and, with --fit-bits B, at most B / 8 bytes per fitted weight (ModelOpt's AutoQuantize budget
is the same kind of number: effective bits). The smaller of the two binds."""
from __future__ import annotations

from dataclasses import dataclass

from ..plan.memory import GiB, plan_memory
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
                  p.usable_bytes, params)
