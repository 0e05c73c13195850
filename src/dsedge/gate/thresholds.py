"""Gate thresholds: defaults, then dsedge.yaml's `gate:` section (current directory), then the CLI.

Two kinds of limit:
  increases (`max_ppl_increase`, `max_latency_increase`, `max_size_increase`) are against the
  baseline: "1%" is relative, a bare number is absolute in the metric's unit (perplexity, ms, MB);
  levels (`max_kl`, `min_top1`, `min_task_acc`) are absolute on the candidate: a bare number, or a
  percentage of 1 for the fractions ("95%" = 0.95).
The `device` ones (`max_device_ppl_increase`, `max_device_kl`, `min_device_top1`) are the same
kinds over the figures `dsedge bench --accuracy` measured on the device's runtime.
A value of none / off drops a limit (the metric is then shown, not gated).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import UsageError
from ..project import project_path, project_section

_NONE = {"none", "null", "off", "~", ""}


@dataclass(frozen=True)
class Limit:
    value: float
    relative: bool
    text: str                   # as the user wrote it, for the table

    def allowed(self, base: float) -> float:
        """The highest candidate value this increase allows over `base`."""
        return base * (1 + self.value) if self.relative else base + self.value


@dataclass
class Thresholds:
    # perplexity may rise 1 % by default: the one limit on unless switched off; the rest are
    # opt-in, because what is tolerable (and how noisy a CI runner's CPU is) depends on the project
    max_ppl_increase: Limit | None = Limit(0.01, True, "1%")
    max_kl: float | None = None
    min_top1: float | None = None
    min_task_acc: float | None = None
    max_latency_increase: Limit | None = None
    max_size_increase: Limit | None = None
    max_device_ppl_increase: Limit | None = None   # device-measured (dsedge bench --accuracy), vs the baseline's
    max_device_kl: float | None = None
    min_device_top1: float | None = None
    sources: dict[str, str] | None = None       # field -> "default" | file path | "command line"

    def origin(self, name: str) -> str:
        return (self.sources or {}).get(name, "default")


INCREASES = ("max_ppl_increase", "max_latency_increase", "max_size_increase", "max_device_ppl_increase")
LEVELS = ("max_kl", "min_top1", "min_task_acc", "max_device_kl", "min_device_top1")
FRACTIONS = ("min_top1", "min_task_acc", "min_device_top1")
DEVICE = ("max_device_ppl_increase", "max_device_kl", "min_device_top1")
KEYS = INCREASES + LEVELS
OPTION = {k: "--" + k.replace("_", "-") for k in KEYS}


def _parse(name: str, raw, where: str) -> Limit | float | None:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in _NONE):
        return None
    text = str(raw).strip()
    pct = text.endswith("%")
    try:
        if isinstance(raw, bool):
            raise ValueError
        v = float(text[:-1] if pct else text)
    except ValueError:
        raise UsageError(f"{where}: {name} = {raw!r} is not a number or a percentage",
                         f"write e.g. {'1%' if name in INCREASES else '0.95' if name in FRACTIONS else '0.05'}, or none") from None
    if not (v >= 0) or v == float("inf"):
        raise UsageError(f"{where}: {name} = {raw!r} must be a finite number ≥ 0", "give a non-negative limit, or none")
    if name in INCREASES:
        return Limit(v / 100 if pct else v, pct, text)
    if pct:
        if name not in FRACTIONS:
            raise UsageError(f"{where}: {name} = {raw!r}: a percentage only makes sense for a fraction",
                             f"give {name} as an absolute value in nats/token, e.g. 0.05")
        v /= 100
    if name in FRACTIONS and v > 1:
        raise UsageError(f"{where}: {name} = {raw!r} is above 1", "give a fraction (0.95) or a percentage (95%)")
    return v


def project_gate(path: Path) -> tuple[dict, str | None]:
    """The `gate:` section of a project file -> ({threshold: value}, baseline or None)."""
    section = project_section(path, "gate", "gate:\n  max_ppl_increase: 1%")
    if section is None:
        return {}, None
    unknown = [k for k in section if k not in KEYS + ("baseline",)]
    if unknown:
        raise UsageError(f"{path}: unknown key gate.{unknown[0]}", f"use some of: baseline, {', '.join(KEYS)}")
    baseline = section.get("baseline")
    values = {k: _parse(k, v, f"{path}: gate.{k}") for k, v in section.items() if k != "baseline"}
    return values, None if baseline is None else str(baseline)


def resolve_thresholds(cli: dict[str, str | None] | None = None, project_file: Path | None = None,
                       cwd: Path | None = None) -> tuple[Thresholds, str | None]:
    """Defaults < dsedge.yaml `gate:` < CLI. -> (thresholds, baseline named in dsedge.yaml or None).
    A baseline path in dsedge.yaml is relative to that file's folder."""
    path = project_path(project_file, cwd)
    t = Thresholds(sources={})
    baseline = None
    if path.is_file():
        values, baseline = project_gate(path)
        if baseline is not None:
            baseline = str(path.parent / baseline)
        for k, v in values.items():
            setattr(t, k, v)
            t.sources[k] = str(path)
    unknown = [k for k in (cli or {}) if k not in KEYS]
    if unknown:
        raise UsageError(f"unknown threshold {unknown[0]}", f"use some of: {', '.join(KEYS)}")
    for k, raw in (cli or {}).items():
        if raw is not None:
            setattr(t, k, _parse(k, raw, OPTION[k]))
            t.sources[k] = "command line"
    return t, baseline


def describe(t: Thresholds) -> dict:
    """JSON-able view: {name: {"value": text or number or None, "from": origin}}."""
    out = {}
    for f in fields(t):
        if f.name == "sources":
            continue
        v = getattr(t, f.name)
        out[f.name] = {"value": v.text if isinstance(v, Limit) else v, "from": t.origin(f.name)}
    return out
