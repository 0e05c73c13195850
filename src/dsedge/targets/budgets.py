"""Budgets: what each budget means, and user overrides of a target's budgets.

Overrides come, later ones winning, from the target file, a project `dsedge.yaml` (its
`budgets:` section, looked up in the current directory) and the CLI (`--budget NAME=VALUE`).
A value of `none` (or YAML null) drops that budget.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import yaml

from ..errors import UsageError
from .schema import Target

PROJECT_FILE = "dsedge.yaml"

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
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UsageError(f"{path} is not valid YAML ({e})", "fix the file's syntax") from None
    except OSError as e:
        raise UsageError(f"cannot read {path} ({e.strerror})", "check the file's permissions") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a mapping", "write e.g.\nbudgets:\n  ttft_ms: 400")
    section = data.get("budgets")
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise UsageError(f"{path}: budgets: should be a mapping of budget name to value",
                         f"write e.g.\nbudgets:\n  ttft_ms: 400  (names: {_names()})")
    return {str(k): _value(str(k), v, f"{path}: budgets.{k}") for k, v in section.items()}


def apply_budget_overrides(target: Target, cli: Iterable[str] = (), cwd: Path | None = None,
                           project_file: Path | None = None) -> Target:
    """`target` with its budgets overridden by `dsedge.yaml` (project_file, or the one in cwd —
    the current directory by default — when present) and then by the CLI items."""
    path = project_file if project_file is not None else (cwd or Path.cwd()) / PROJECT_FILE
    if project_file is not None and not project_file.is_file():
        raise UsageError(f"project file {project_file} does not exist", "give an existing dsedge.yaml")
    updates = project_budgets(path) if path.is_file() else {}
    updates.update(parse_cli_budgets(cli))
    if not updates:
        return target
    return target.model_copy(update={"budgets": target.budgets.model_copy(update=updates)})
