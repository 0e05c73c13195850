"""Budgets for a build on a target: estimated from the target's figures when the build does not
run there, measured when it does; and the table the build report shows.

Estimates (labelled "estimated"):
- decode tok/s (batch 1) = bandwidth x efficiency.decode_bandwidth / bytes read per token, where
  bytes read per token = the weights a token reads (all stored weights except the embedding
  table, of which a lookup reads one row; MoE: the routed top-k and shared experts only) + the
  KV cache at the profile's max context.
- TTFT for a 128-token prompt = 2 x active matmul params x 128 / (dense throughput of the
  precision the matmuls run in x efficiency.prefill_compute). Weight-only methods dequantize to
  FP16 and run FP16 matmuls. Attention's own FLOPs are left out (< 1 % at 128 tokens).
- peak memory = the memory planner's total at the profile (max batch, max context).
- average power = the power mode's budget: an upper bound, so a value above the budget is
  "unverified", not a miss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..targets.budgets import BUDGETS
from ..targets.schema import Target
from ..quantize.configs import Fp16Config, QuantConfig
from .memory import GiB, plan_memory

TTFT_PROMPT = 128

@dataclass(frozen=True)
class Estimate:
    metric: str                                   # a budget name (targets.budgets.BUDGETS)
    value: float
    source: Literal["estimated", "measured"] = "estimated"
    how: str = ""
    upper_bound: bool = False                     # the true value is at most this


def _throughput(target: Target, prec: str) -> tuple[float, str]:
    """Dense throughput of the precision the matmuls run in (QuantConfig.matmul_precision:
    weight-only methods dequantize to FP16 and run FP16 matmuls)."""
    c = target.compute
    table = {"fp16": c.fp16_dense_tflops, "int8": c.int8_dense_tops, "fp8": c.fp8_dense_tflops or c.fp16_dense_tflops}
    return table[prec] * 1e12, prec


def decode_tokens_per_s(weight_read_bytes: int, kv_bytes: int, target: Target) -> float:
    return target.memory.bandwidth_gbs * 1e9 * target.efficiency.decode_bandwidth / (weight_read_bytes + kv_bytes)


def ttft_ms(active_params: int, target: Target, precision: str, tokens: int = TTFT_PROMPT) -> float:
    flops_per_s, _ = _throughput(target, precision)
    return 2 * active_params * tokens / (flops_per_s * target.efficiency.prefill_compute) * 1e3


def estimate_budgets(config: dict, target: Target, quant: QuantConfig | None = None,
                     ppl_increase_pct: float | None = None, kv_cache: str = "fp16") -> list[Estimate]:
    """Estimates for a build of `config` with the config `quant` (None: FP16) on `target` at its
    profile and power mode. `ppl_increase_pct`, when given, is the build's own (host) measurement."""
    q = quant or Fp16Config()
    plan = plan_memory(config, target, q, target.profile.max_context, target.profile.max_batch, kv_cache)
    kv1 = plan_memory(config, target, q, target.profile.max_context, 1, kv_cache).kv_bytes
    bw = target.memory.bandwidth_gbs
    eff = target.efficiency
    _, prec = _throughput(target, q.matmul_precision)
    out = [
        Estimate("ttft_ms", ttft_ms(plan.active_params, target, q.matmul_precision),
                 how=f"2 x {plan.active_params / 1e9:.2f}e9 params x {TTFT_PROMPT} / ({prec} dense x {eff.prefill_compute:g})"),
        Estimate("decode_tokens_per_s", decode_tokens_per_s(plan.weight_read_bytes, kv1, target),
                 how=f"{bw:g} GB/s x {eff.decode_bandwidth:g} / ({plan.weight_read_bytes / 1e9:.2f} GB weights + "
                     f"{kv1 / 1e9:.2f} GB KV at {target.profile.max_context})"),
        Estimate("peak_memory_gb", plan.total_bytes / GiB,
                 how=f"planner, batch {plan.batch}, context {plan.context}"),
        Estimate("avg_power_w", target.power_w, how=f"power mode {target.power_mode} budget", upper_bound=True),
    ]
    if ppl_increase_pct is not None:
        out.append(Estimate("max_ppl_increase_pct", ppl_increase_pct, "measured", "host, onnxruntime"))
    return out


def _status(e: Estimate | None, budget: float | None, direction: str) -> str:
    if e is None:
        return "not measured"
    if budget is None:
        return "no budget"
    ok = e.value <= budget if direction == "max" else e.value >= budget
    if ok:
        return "pass"
    return "unverified" if e.upper_bound and direction == "max" else "fail"


def budget_table(estimates: list[Estimate], target: Target) -> list[dict]:
    """One row per budget: metric, value, unit, budget, status (pass / fail / unverified /
    no budget / not measured), source ("estimated" or "measured") and how."""
    by = {e.metric: e for e in estimates}
    unknown = set(by) - set(BUDGETS)
    if unknown:
        raise ValueError(f"unknown budget metrics {sorted(unknown)}")
    rows = []
    for name, (direction, unit, meaning) in BUDGETS.items():
        e, budget = by.get(name), getattr(target.budgets, name)
        rows.append({"metric": name, "value": None if e is None else round(e.value, 3), "unit": unit,
                     "budget": budget, "limit": direction, "status": _status(e, budget, direction),
                     "source": None if e is None else e.source, "how": "" if e is None else e.how,
                     "meaning": meaning})
    return rows


def missed_budgets(rows: list[dict]) -> list[str]:
    """Metrics whose budget is missed; `dsedge build` exits non-zero when any (unless --no-budget-fail)."""
    return [r["metric"] for r in rows if r["status"] == "fail"]
