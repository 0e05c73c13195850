"""Budgets: what each budget means, and user overrides of a target's budgets.

Overrides come, later ones winning, from the target file, a project `dsedge.yaml` (its
`budgets:` section, looked up in the current directory) and the CLI (`--budget NAME=VALUE`).
A value of `none` (or YAML null) drops that budget.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..errors import UsageError
from ..project import project_path, project_section
from .schema import Target


# name -> (direction, unit, meaning). "max": the measured/estimated value must be <= the budget;
# "min": >= the budget.
BUDGETS: dict[str, tuple[str, str, str]] = {
    "ttft_ms": ("max", "ms", "time to first token for a 128-token prompt"),
    "decode_tokens_per_s": ("min", "tok/s", "decode speed, batch 1, at the profile's max context"),
    "peak_memory_gb": ("max", "GiB", "weights + KV cache + workspace + runtime at the profile"),
    "avg_power_w": ("max", "W", "average power while generating"),
    "max_ppl_increase_pct": ("max", "%", "perplexity increase against FP16"),
}
_NONE = {"none", "null", "off", "~"}


def _names() -> str:
    return ", ".join(BUDGETS)


def _value(name: str, raw, where: str) -> float | None:
    if name not in BUDGETS:
        raise UsageError(f"{where}: unknown budget {name!r}", f"use one of: {_names()}")
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in _NONE):
        return None
    if isinstance(raw, bool):
        raise UsageError(f"{where}: budget {name} = {raw!r} is not a number", f"give a positive number ({BUDGETS[name][1]}) or none")
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: budget {name} = {raw!r} is not a number",
                         f"give a positive number ({BUDGETS[name][1]}) or none") from None
    if not v > 0 or v == float("inf"):
        raise UsageError(f"{where}: budget {name} = {raw!r} must be a positive finite number",
                         f"give a positive number ({BUDGETS[name][1]}) or none")
    return v


def parse_cli_budgets(items: Iterable[str]) -> dict[str, float | None]:
    """`["decode_tokens_per_s=30", "ttft_ms=400"]` -> {name: value}; `name=none` drops a budget."""
    out: dict[str, float | None] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--budget {item!r} is not NAME=VALUE", f"e.g. --budget ttft_ms=400 (names: {_names()})")
        out[name.strip()] = _value(name.strip(), raw.strip(), "--budget")
    return out


def project_budgets(path: Path) -> dict[str, float | None]:
    """The `budgets:` section of a project file (other sections are left to their readers)."""
    section = project_section(path, "budgets", f"budgets:\n  ttft_ms: 400  (names: {_names()})")
    if section is None:
        return {}
    return {str(k): _value(str(k), v, f"{path}: budgets.{k}") for k, v in section.items()}


def apply_budget_overrides(target: Target, cli: Iterable[str] = (), cwd: Path | None = None,
                           project_file: Path | None = None) -> Target:
    """`target` with its budgets overridden by `dsedge.yaml` (project_file, or the one in cwd —
    the current directory by default — when present) and then by the CLI items."""
    updates = project_budgets(project_path(project_file, cwd))
    updates.update(parse_cli_budgets(cli))
    if not updates:
        return target
    return target.model_copy(update={"budgets": target.budgets.model_copy(update=updates)})
