"""Compare a candidate with a baseline: refuse pairs that cannot be compared (different eval
data, different source model), then one row per metric: pass, fail, or skipped with the reason."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import UsageError
from .inputs import Gateable
from .thresholds import DEVICE, Limit, Thresholds, describe

HOST = "onnxruntime CPU on the machine that built it (host, not the target)"


@dataclass
class Row:
    metric: str                  # key in inputs.METRICS (the JUnit test case name)
    label: str                   # for people
    baseline: float | None
    candidate: float | None
    limit: str                   # "≤ +1% of baseline (≤ 3.296)", "" when not gated
    status: str                  # "pass" | "fail" | "skipped"
    note: str = ""               # why skipped / how measured
    fmt: str = "{:.4g}"

    def show(self, v: float | None) -> str:
        return "—" if v is None else self.fmt.format(v)

    @property
    def change(self) -> str:
        if self.baseline is None or self.candidate is None:
            return ""
        d = self.candidate - self.baseline
        ratio = self.candidate / self.baseline if self.baseline else None
        rel = "" if ratio is None else f" (×{ratio:.3g})" if ratio >= 10 else f" ({100 * (ratio - 1):+.2f} %)"
        return f"{d:+.4g}{rel}"

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "fmt"} | {"change": self.change}


@dataclass
class GateResult:
    candidate: Gateable
    baseline: Gateable
    thresholds: Thresholds
    rows: list[Row] = field(default_factory=list)
    seconds: float | None = None    # wall time of loading and comparing both, when measured (api.gate)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.status == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {"passed": self.passed, "candidate": str(self.candidate.path), "baseline": str(self.baseline.path),
                "candidate_label": self.candidate.label, "baseline_label": self.baseline.label,
                "eval_sha256": self.candidate.eval_sha256, "thresholds": describe(self.thresholds),
                "rows": [r.to_dict() for r in self.rows]}


def check_comparable(cand: Gateable, base: Gateable) -> None:
    """UsageError (exit 2) naming both values when the two were not measured on the same eval
    data or do not come from the same source model: their numbers would not mean the same."""
    fix = ("rebuild the candidate with the baseline's --model / --eval, or, if the change is intended, "
           "write a new baseline: dsedge gate CANDIDATE --baseline FILE --update-baseline")
    if cand.eval_sha256 and base.eval_sha256 and cand.eval_sha256 != base.eval_sha256:
        raise UsageError(
            f"cannot compare: different eval data: candidate {cand.path} was measured on sha256 {cand.eval_sha256} "
            f"({cand.eval_source}), baseline {base.path} on sha256 {base.eval_sha256} ({base.eval_source})", fix)
    if not cand.eval_sha256 or not base.eval_sha256:
        who = "candidate" if not cand.eval_sha256 else "baseline"
        raise UsageError(f"cannot compare: the {who} does not record its eval data's sha256",
                         "rebuild it with this dsedge version (report.json eval.sha256)")
    if cand.source_sha256 and base.source_sha256:
        same, what = cand.source_sha256 == base.source_sha256, ("sha256", cand.source_sha256, base.source_sha256)
    else:  # an old report without the checkpoint hash: the model name is all there is
        same, what = cand.source_name == base.source_name, ("name", cand.source_name, base.source_name)
    if not same:
        raise UsageError(f"cannot compare: different source models: candidate {cand.path} comes from "
                         f"{cand.source_name} ({what[0]} {what[1]}), baseline {base.path} from "
                         f"{base.source_name} ({what[0]} {what[2]})", fix)


def _increase(metric, label, cand: Gateable, base: Gateable, limit: Limit | None, option: str, fmt: str,
              unit: str = "") -> Row:
    b, c = base.metrics.get(metric), cand.metrics.get(metric)
    row = Row(metric, label, b, c, "", "skipped", "", fmt)
    if c is None or b is None:
        row.note = f"{'candidate' if c is None else 'baseline'}: " + (cand if c is None else base).missing.get(
            metric, "not measured")
        return row
    if limit is None:
        row.note = f"not gated ({option})"
        return row
    allowed = limit.allowed(b)
    row.limit = f"≤ +{limit.text}{'' if limit.relative else unit} ({fmt.format(allowed)})"
    row.status = "pass" if c <= allowed else "fail"
    return row


def _level(metric, label, cand: Gateable, base: Gateable, limit: float | None, option: str, upper: bool,
           fmt: str) -> Row:
    b, c = base.metrics.get(metric), cand.metrics.get(metric)
    row = Row(metric, label, b, c, "", "skipped", "", fmt)
    if c is None:
        row.note = "candidate: " + cand.missing.get(metric, "not measured")
        return row
    if limit is None:
        row.note = f"not gated ({option})"
        return row
    row.limit = f"{'≤' if upper else '≥'} {fmt.format(limit)}"
    row.status = "pass" if (c <= limit if upper else c >= limit) else "fail"
    return row


def run_gate(cand: Gateable, base: Gateable, t: Thresholds) -> GateResult:
    check_comparable(cand, base)
    # latency: the medians of each report's timed runs, within the tolerance
    rows = [
        _increase("perplexity", "perplexity (ONNX)", cand, base, t.max_ppl_increase, "--max-ppl-increase", "{:.4f}"),
        _level("kl", "KL vs FP16 (nats/token)", cand, base, t.max_kl, "--max-kl", True, "{:.4g}"),
        _level("top1_agreement", "top-1 agreement vs FP16", cand, base, t.min_top1, "--min-top1", False, "{:.2%}"),
        _level("task_accuracy", "task accuracy", cand, base, t.min_task_acc, "--min-task-acc", False, "{:.1%}"),
        _increase("decode_ms_median", "decode ms/token, median (host onnxruntime CPU)", cand, base,
                  t.max_latency_increase, "--max-latency-increase", "{:.3f}", " ms"),
        _increase("prefill_ms_median", "prefill ms, median (host onnxruntime CPU)", cand, base,
                  t.max_latency_increase, "--max-latency-increase", "{:.2f}", " ms"),
        _increase("size_mb", "size (MB)", cand, base, t.max_size_increase, "--max-size-increase", "{:.3f}", " MB"),
    ]
    return GateResult(cand, base, t, rows + _device_rows(cand, base, t))


def _device_rows(cand: Gateable, base: Gateable, t: Thresholds) -> list[Row]:
    """The figures `dsedge bench --accuracy` measured on a device: rows only where either side has
    them or a device limit is set (a build never benched shows the table it always had)."""
    if not (cand.device or base.device or any(getattr(t, k) is not None for k in DEVICE)):
        return []
    rows = [
        _increase("device_perplexity", "perplexity (on device)", cand, base, t.max_device_ppl_increase,
                  "--max-device-ppl-increase", "{:.4f}"),
        _level("device_kl", "KL vs FP16 on device (top-64 + rest, lower bound)", cand, base, t.max_device_kl,
               "--max-device-kl", True, "{:.4g}"),
        _level("device_top1_agreement", "top-1 agreement vs FP16 on device", cand, base, t.min_device_top1,
               "--min-device-top1", False, "{:.2%}"),
    ]
    where = f"candidate measured on {cand.device}" if cand.device else ""
    for r in rows:
        if r.candidate is not None and where:
            r.note = f"{r.note}; {where}" if r.note else where
    return rows
