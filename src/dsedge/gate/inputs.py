"""What the gate reads: an artifact folder, a report.json, or a baseline file, reduced to the
gateable metrics and the identity (eval data, source model) that decides whether two of them
can be compared at all."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..artifact import verify_artifact
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
    # measured where the engine runs, by `dsedge bench --accuracy` (present only after it ran)
    "device_perplexity": (("measured", "accuracy", "perplexity"), "", "perplexity measured on the device's runtime"),
    "device_kl": (("measured", "accuracy", "kl"), "nats/token",
                  "KL(FP16 reference ‖ device runtime) over the reference's top-64 ids + rest: a lower bound"),
    "device_top1_agreement": (("measured", "accuracy", "top1_agreement"), "",
                              "share of positions with FP16's argmax, on the device's runtime"),
}
DEVICE_METRICS = ("device_perplexity", "device_kl", "device_top1_agreement")


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
    device: str | None = None                   # where / runtime of the device-measured figures, if any


# what a metric's value must be to mean anything (else the file is malformed: exit 2, not a regression)
_RANGE = {"perplexity": (0.0, None, "a perplexity > 0"), "kl": (0.0, None, "a KL divergence >= 0"),
          "top1_agreement": (0.0, 1.0, "a share in [0, 1]"), "task_accuracy": (0.0, 1.0, "a share in [0, 1]"),
          "device_perplexity": (0.0, None, "a perplexity > 0"), "device_kl": (0.0, None, "a KL divergence >= 0"),
          "device_top1_agreement": (0.0, 1.0, "a share in [0, 1]")}
_POSITIVE = ("perplexity", "device_perplexity")


def _get(d, keys, where: str = "report"):
    for i, k in enumerate(keys):
        if d is None:
            return None
        if not isinstance(d, dict):
            raise UsageError(f"{where}: {'.'.join(keys[:i]) or 'the file'} is a {type(d).__name__}, not an object",
                             "pass a report.json or baseline file dsedge wrote (rebuild it if it was edited)")
        d = d.get(k)
    return d


def _value(v, name: str, field_name: str, where: str) -> float | None:
    """A metric's value, checked against what it means."""
    if v is None:
        return None
    lo, hi, meaning = _RANGE.get(name, (0.0, None, "a number >= 0"))
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
        (v > lo if name in _POSITIVE else v >= lo) and (hi is None or v <= hi)
    if not ok:
        raise UsageError(f"{where}: {field_name} is {v!r}, not {meaning}",
                         "pass a report.json or baseline file dsedge wrote (rebuild it if it was edited)")
    return float(v)


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
        manifest = verify_artifact(path, role)   # every file as dsedge wrote it, report.json included
        return from_report(_read_json(path / "report.json", role), path, "artifact", manifest, role)
    data = _read_json(path, role)
    if BASELINE_KEY in data:
        return from_baseline(data, path)
    if "quantization" in data and "eval" in data:
        manifest = verify_artifact(path.parent, role) if (path.parent / "manifest.json").is_file() else {}
        return from_report(data, path, "report", manifest, role)
    raise UsageError(f"{role} {path} is neither a dsedge report.json nor a baseline file",
                     "pass an artifact folder, its report.json, or a file written by --update-baseline")


def from_report(r: dict, path: Path, kind: str, manifest: dict | None = None, role: str = "candidate") -> Gateable:
    manifest, where = manifest or {}, f"{role} {path}"
    metrics, missing = {}, {}
    for name, (keys, _, _) in METRICS.items():
        metrics[name] = _value(_get(r, keys, where), name, ".".join(keys), where)
        if metrics[name] is None:
            missing[name] = _why_missing(r, name)
    src = r.get("source") or manifest.get("source") or {}
    if not isinstance(src, dict):
        raise UsageError(f"{where}: source is a {type(src).__name__}, not an object",
                         "pass a report.json dsedge wrote (rebuild it if it was edited)")
    label = " · ".join(str(x) for x in (_get(r, ("model", "name"), where), _get(r, ("quantization", "label"), where),
                                        _get(r, ("target", "name"), where)) if x)
    acc = _get(r, ("measured", "accuracy"), where)
    device = f"{acc.get('where')}, {acc.get('runtime')}" if isinstance(acc, dict) else None
    return Gateable(path, kind, label, metrics, missing,
                    eval_sha256=_get(r, ("eval", "sha256"), where), eval_source=_get(r, ("eval", "source"), where),
                    source_name=src.get("name") or _get(r, ("model", "name"), where), source_sha256=src.get("sha256"),
                    dsedge_version=r.get("dsedge_version"), device=device)


def _why_missing(r: dict, metric: str) -> str:
    if metric in DEVICE_METRICS:
        return "not measured on a device (dsedge bench ARTIFACT --accuracy)"
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
    if not isinstance(m, dict):
        raise UsageError(f"baseline {path}: metrics is a {type(m).__name__}, not an object",
                         "write a new baseline with --update-baseline")
    unknown = sorted(set(m) - set(METRICS))
    if unknown:
        raise UsageError(f"baseline {path}: unknown metric(s) {', '.join(unknown)}", f"use some of: {', '.join(METRICS)}")
    metrics = {k: _value(m.get(k), k, f"metrics.{k}", f"baseline {path}") for k in METRICS}
    missing = {k: (data.get("missing") or {}).get(k, "not in the baseline file") for k, v in metrics.items() if v is None}
    ev, src = data.get("eval") or {}, data.get("source") or {}
    if not isinstance(ev, dict) or not isinstance(src, dict):
        raise UsageError(f"baseline {path}: eval and source must be objects", "write a new baseline with --update-baseline")
    return Gateable(path, "baseline", data.get("label", ""), metrics, missing, ev.get("sha256"), ev.get("source"),
                    src.get("name"), src.get("sha256"), data.get("dsedge_version"),
                    data.get("device") if isinstance(data.get("device"), str) else None)
