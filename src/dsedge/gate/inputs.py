"""What the gate reads: an artifact folder, a report.json, or a baseline file, reduced to the
gateable metrics and the identity (eval data, source model) that decides whether two of them
can be compared at all."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

BASELINE_FORMAT = 1
BASELINE_KEY = "dsedge_baseline"

# metric -> (path in report.json, unit, what it is). All accuracy figures are the ONNX graph's
# (what ships), measured in onnxruntime against the FP16 reference of the same report.
METRICS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "perplexity": (("onnx", "perplexity"), "", "perplexity of the ONNX graph on the eval text"),
    "kl": (("onnx", "kl"), "nats/token", "mean KL(FP16 reference ‖ ONNX) per token"),
    "top1_agreement": (("onnx", "top1_agreement"), "", "share of positions with FP16's argmax"),
    "task_accuracy": (("onnx", "task_accuracy"), "", "exact-answer task accuracy of the ONNX graph"),
    "size_mb": (("size_mb",), "MB", "model.onnx (+ external data) on disk"),
    "decode_ms_median": (("host_latency", "decode_ms_median"), "ms/token", "host decode latency, median"),
    "decode_ms_p90": (("host_latency", "decode_ms_p90"), "ms/token", "host decode latency, p90"),
    "prefill_ms_median": (("host_latency", "prefill_ms_median"), "ms", "host prefill latency, median"),
    "prefill_ms_p90": (("host_latency", "prefill_ms_p90"), "ms", "host prefill latency, p90"),
}


@dataclass
class Gateable:
    path: Path                                  # the file or folder given
    kind: str                                   # "artifact" | "report" | "baseline"
    label: str                                  # model · quantization · target, for people
    metrics: dict[str, float | None]
    missing: dict[str, str] = field(default_factory=dict)  # metric -> why the report has no value
    eval_sha256: str | None = None
    eval_source: str | None = None
    source_name: str | None = None
    source_sha256: str | None = None
    dsedge_version: str | None = None


def _get(d, keys):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"{what} {path} is not valid JSON ({e})", "pass a report.json or baseline file dsedge wrote") from None
    except OSError as e:
        raise UsageError(f"cannot read {what} {path} ({e.strerror})", "check the path and its permissions") from None
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path} does not hold a JSON object", "pass a report.json or baseline file dsedge wrote")
    return data


def load_gateable(path: str | Path, role: str = "candidate") -> Gateable:
    """An artifact folder, its report.json, or a baseline file -> Gateable. `role` names it in errors."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{role} {path} does not exist",
                         "pass an artifact folder from `dsedge build`, its report.json, or a baseline file "
                         "(`dsedge gate ARTIFACT --baseline FILE --update-baseline` writes one)")
    if path.is_dir():
        if not (path / "report.json").is_file():
            raise UsageError(f"{role} {path} is a folder without report.json",
                             "pass an artifact folder written by `dsedge build`")
        return from_report(_read_json(path / "report.json", role), path, "artifact", _manifest_beside(path))
    data = _read_json(path, role)
    if BASELINE_KEY in data:
        return from_baseline(data, path)
    if "quantization" in data and "eval" in data:
        return from_report(data, path, "report", _manifest_beside(path.parent))
    raise UsageError(f"{role} {path} is neither a dsedge report.json nor a baseline file",
                     "pass an artifact folder, its report.json, or a file written by --update-baseline")


def _manifest_beside(folder: Path) -> dict:
    f = folder / "manifest.json"
    try:
        return json.loads(f.read_text()) if f.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}  # the report alone still gates; identity then falls back to the model name


def from_report(r: dict, path: Path, kind: str, manifest: dict | None = None) -> Gateable:
    manifest = manifest or {}
    metrics, missing = {}, {}
    for name, (keys, _, _) in METRICS.items():
        v = _get(r, keys)
        metrics[name] = None if v is None else float(v)
        if v is None:
            missing[name] = _why_missing(r, name)
    src = r.get("source") or manifest.get("source") or {}
    label = " · ".join(str(x) for x in (_get(r, ("model", "name")), _get(r, ("quantization", "label")),
                                        _get(r, ("target", "name"))) if x)
    return Gateable(path, kind, label, metrics, missing,
                    eval_sha256=_get(r, ("eval", "sha256")), eval_source=_get(r, ("eval", "source")),
                    source_name=src.get("name") or _get(r, ("model", "name")), source_sha256=src.get("sha256"),
                    dsedge_version=r.get("dsedge_version"))


def _why_missing(r: dict, metric: str) -> str:
    if METRICS[metric][0][0] == "host_latency":
        return "host latency was not measured (--no-latency, or a truncated check)"
    if r.get("onnx") is None:
        return f"accuracy was not measured: {r.get('accuracy_skipped') or 'no ONNX metrics in the report'}"
    if r.get("fp16_reference") is None and metric in ("kl", "top1_agreement"):
        return r.get("accuracy_note") or "no FP16 reference in the report"
    return "not in the report"


def from_baseline(data: dict, path: Path) -> Gateable:
    if data.get(BASELINE_KEY) != BASELINE_FORMAT:
        raise UsageError(f"baseline {path} has format {data.get(BASELINE_KEY)!r}, this dsedge reads {BASELINE_FORMAT}",
                         "write a new one with --update-baseline")
    m = data.get("metrics") or {}
    unknown = sorted(set(m) - set(METRICS))
    if unknown:
        raise UsageError(f"baseline {path}: unknown metric(s) {', '.join(unknown)}", f"use some of: {', '.join(METRICS)}")
    metrics = {k: None if m.get(k) is None else float(m[k]) for k in METRICS}
    missing = {k: (data.get("missing") or {}).get(k, "not in the baseline file") for k, v in metrics.items() if v is None}
    ev, src = data.get("eval") or {}, data.get("source") or {}
    return Gateable(path, "baseline", data.get("label", ""), metrics, missing, ev.get("sha256"), ev.get("source"),
                    src.get("name"), src.get("sha256"), data.get("dsedge_version"))
