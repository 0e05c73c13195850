"""`dsedge compare` output: one row per method build, printed with rich and written as
compare.csv, compare.json and pareto.png (accuracy loss against size and against host decode
latency). Rows are read from build reports (report.json dicts) tolerantly: a figure a method
did not measure (imported checkpoint without reference, truncated check, latency off) is None
and shows blank."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .. import __version__

# key -> table / CSV header, in table order
COLUMNS: dict[str, str] = {
    "method": "method", "backend": "backend", "bits": "bits", "group_size": "group",
    "size_mb": "size MB", "perplexity": "perplexity", "ppl_change_pct": "ΔPPL %", "kl": "KL",
    "top1_agreement": "top-1", "task_accuracy": "task acc", "decode_tokens_per_s": "decode tok/s",
    "quantize_seconds": "quantize s",
}
EXTRA = ("label", "model", "target", "options", "kv_cache", "kv_cache_kl")  # in the CSV / JSON, not in the table
# printed only when a row has an INT8 KV cache (--kv-cache int8): its KL against an FP16 cache
KV_COLUMN = {"kv_cache_kl": "cache KL"}
# options: the --bits / --group-size a row took (None: the method keeps its own width)
NATIVE_BACKEND = "dsedge"                         # methods dsedge quantizes itself
_NATIVE = ("fp16", "int8", "rtn", "fit")
_FMT = {"bits": "{:.3g}", "kv_cache_kl": "{:.4g}", "size_mb": "{:.2f}", "perplexity": "{:.4f}", "ppl_change_pct": "{:+.2f}", "kl": "{:.4g}",
        "top1_agreement": "{:.1%}", "task_accuracy": "{:.1%}", "decode_tokens_per_s": "{:.0f}",
        "quantize_seconds": "{:.2f}"}


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def compare_row(r: dict) -> dict:
    q = r.get("quantization") or {}
    method = q.get("method")
    bits = q.get("bits", 16 if method == "fp16" else None)
    quant_s = q.get("seconds") if q.get("seconds") is not None else _get(r, "stage_seconds", "quantize")
    if r.get("fit"):   # --fit: its bits are the mix's stored bits per fitted weight; its time includes the fit
        bits, quant_s = r["fit"]["bits_per_weight"], _get(r, "stage_seconds", "quantize")
    return {
        "method": method,
        "backend": q.get("backend") or (NATIVE_BACKEND if method in _NATIVE else None),
        "bits": bits,
        "group_size": q.get("group_size"),
        "size_mb": r.get("size_mb"),
        "perplexity": _get(r, "onnx", "perplexity"),
        "ppl_change_pct": r.get("ppl_change_pct"),
        "kl": _get(r, "onnx", "kl"),
        "top1_agreement": _get(r, "onnx", "top1_agreement"),
        "task_accuracy": _get(r, "onnx", "task_accuracy"),
        "decode_tokens_per_s": _get(r, "host_latency", "decode_tokens_per_s"),
        "quantize_seconds": quant_s,
        "label": q.get("label"),
        "model": _get(r, "model", "name"),
        "target": _get(r, "target", "name"),
        "kv_cache": _get(r, "kv_cache", "dtype") or "fp16",
        "kv_cache_kl": _get(r, "kv_cache", "short", "kl"),   # at the eval window, decoded through the cache
    }


def compare_rows(results: list[dict]) -> list[dict]:
    """One row per build report (report.json dict), in the order given."""
    return [compare_row(r) for r in results]


def fmt(key: str, value) -> str:
    if value is None:
        return ""
    if key == "group_size":
        return "per-channel" if value == -1 else str(value)
    return _FMT.get(key, "{}").format(value)


def print_table(rows: list[dict], console, title: str | None = None) -> None:
    from rich.table import Table

    if title is None:
        models, targets = {r.get("model") for r in rows}, {r.get("target") for r in rows}
        title = "dsedge compare" + (f": {models.pop()}" if len(models) == 1 and None not in models else "") + \
            (f" · {targets.pop()}" if len(targets) == 1 and None not in targets else "")
    caption = ("accuracy vs the FP16 reference on the eval text; decode tok/s: onnxruntime "
               "on this host's CPU, batch 1 (indicative only)")
    note = options_note(rows)
    table = Table(title=title, caption=caption + (f"\n{note}" if note else ""))
    columns = {**COLUMNS, **(KV_COLUMN if any(r.get("kv_cache_kl") is not None for r in rows) else {})}
    for key, head in columns.items():
        table.add_column(head, justify="left" if key in ("method", "backend") else "right")
    for r in rows:
        table.add_row(*(fmt(k, r.get(k)) for k in columns))
    console.print(table)


def options_note(rows: list[dict]) -> str | None:
    """Which methods took --bits / --group-size and which kept their own width (None: none given)."""
    took = {r.get("options") for r in rows} - {None}
    if not took:
        return None
    used = [str(r.get("method")) for r in rows if r.get("options")]
    kept = [f"{r.get('method')} ({r.get('bits')}-bit)" for r in rows if not r.get("options")]
    return f"{' / '.join(sorted(took))} applied to {', '.join(used)}" + \
        (f"; {', '.join(kept)} keep their own" if kept else "")


def write_compare(rows: list[dict], folder: str | Path) -> dict[str, Path]:
    """compare.csv, compare.json and pareto.png in `folder` -> {"csv", "json", "png": path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(COLUMNS) + list(EXTRA)
    paths = {"csv": folder / "compare.csv", "json": folder / "compare.json", "png": folder / "pareto.png"}
    with paths["csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r.get(k) for k in keys})
    paths["json"].write_text(json.dumps({"dsedge_version": __version__, "options_note": options_note(rows),
                                         "columns": {**COLUMNS, **{k: k for k in EXTRA}},
                                         "rows": [{k: r.get(k) for k in keys} for r in rows]}, indent=2) + "\n")
    pareto_figure(rows).savefig(paths["png"], dpi=120)
    return paths


# KL first: the main axis (it ranks methods); ΔPPL below it, since on small models perplexity moves
# by calibration noise either way (README, "Calibrated and imported checkpoints")
LOSS_METRICS = ("kl", "ppl_change_pct")
_YLABEL = {"kl": "KL vs FP16 (nats/token)", "ppl_change_pct": "ΔPPL % vs FP16 (noisy: rank by KL)"}


def loss_metrics(rows: list[dict]) -> list[str]:
    """The accuracy-loss axes some row measured, main one first: KL, then ΔPPL %."""
    return [k for k in LOSS_METRICS if any(r.get(k) is not None for r in rows)]


def loss_metric(rows: list[dict]) -> str | None:
    """The main accuracy-loss axis: KL where any row has it, else ΔPPL %, else None."""
    return next(iter(loss_metrics(rows)), None)


def point_labels(rows: list[dict]) -> list[str]:
    """Each point's label: its method, with backend / quantization label where methods repeat."""
    def name(r, parts):
        return " ".join(str(r.get(p)) for p in parts if r.get(p) is not None) or "?"

    for parts in (("method",), ("method", "backend"), ("label", "backend")):
        labels = [name(r, parts) for r in rows]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{lab} #{i + 1}" for i, lab in enumerate(labels)]


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both axes (lower x and lower y), sorted by x."""
    front, best = [], float("inf")
    for x, y in sorted(points):
        if y < best:
            front.append((x, y))
            best = y
    return front


def pareto_figure(rows: list[dict]):
    """Accuracy loss against size MB and against host decode latency (ms/token), one point per
    row labelled with its method, the Pareto front dashed: KL in the top (main) row of panels,
    ΔPPL % in the row below. The latency column is left out, with a note, when no row measured
    latency; a loss row no build measured is left out."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = loss_metrics(rows) or [None]
    labels = point_labels(rows)
    has_latency = any(r.get("decode_tokens_per_s") for r in rows)
    panels = [("size_mb", "size (MB)")]
    if has_latency:
        panels.append(("decode_ms", "host decode latency (ms/token, onnxruntime CPU)"))
    notes = []
    if not has_latency:
        notes.append("latency panel skipped: host decode latency was not measured")
    height = 4.2 + 3.0 * (len(metrics) - 1)
    fig = Figure(figsize=(6.5 * len(panels), height + 0.3 * len(notes) + 0.5), layout="constrained")
    FigureCanvasAgg(fig)
    # the notes get their own strip below the panels (a figure-level text inside the layout's rect
    # would overlap the x labels; moving the rect by hand made constrained layout warn)
    top, bottom = fig.subfigures(2, 1, height_ratios=[height, 0.3 * len(notes) + 0.01])
    # the KL row is the main one: taller than the ΔPPL row under it
    axes = top.subplots(len(metrics), len(panels), squeeze=False,
                        gridspec_kw={"height_ratios": [1.0, 0.7][:len(metrics)]})
    for row_axes, metric in zip(axes, metrics):
        for ax, (xkey, xlabel) in zip(row_axes, panels):
            missing = _scatter(ax, rows, labels, xkey, metric)
            if missing and metric == metrics[0]:
                notes.append(f"not on '{xlabel}': {', '.join(missing)} (figure not measured)")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{_YLABEL[metric]} (lower is better)" if metric else "accuracy loss: not measured")
            ax.grid(alpha=0.3)
    model = {r.get("model") for r in rows}
    top.suptitle("accuracy loss vs cost" + (f": {model.pop()}" if len(model) == 1 and None not in model else ""))
    bottom.text(0.01, 0.0, "\n".join(notes), fontsize=8, va="bottom", color="dimgrey")
    return fig


def _scatter(ax, rows: list[dict], labels: list[str], xkey: str, metric: str | None) -> list[str]:
    """One panel's points and Pareto front -> labels of the rows it could not place."""
    pts, missing = [], []
    for n, (r, lab) in enumerate(zip(rows, labels)):
        x = r.get("size_mb") if xkey == "size_mb" else (
            1e3 / r["decode_tokens_per_s"] if r.get("decode_tokens_per_s") else None)
        y = r.get(metric) if metric else None
        if x is None or y is None:
            missing.append(lab)
            continue
        pts.append((x, y))
        ax.scatter([x], [y], zorder=3, color=f"C{n % 10}")            # same colour in every panel
        ax.annotate(lab, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=9)
    front = pareto_front(pts)
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", ls="--", c="grey",
                lw=1, label="Pareto front", zorder=1)
        ax.legend(loc="best", fontsize=8)
    return missing
