"""Render a build report (a plain dict, as in report.json) as rows, Markdown and files."""
from __future__ import annotations

import json
from pathlib import Path

# summary_rows and layer_stats live in .tables (shared with .html); re-exported here for importers of render.
from .tables import _f, device_accuracy_rows, layer_stats, summary_rows  # noqa: F401


def _cell(x) -> str:
    """A Markdown table cell: a `|` in the text ("max |Δlogit|") would end the cell, a newline the row."""
    return str(x).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(r: dict) -> str:
    lines = [f"# dsedge build report: {r['model']['name']} · {r['quantization']['label']} · {r['target']['name']}", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in summary_rows(r)]
    g = r["graph_checked"]
    e = r["eval"]
    lines += ["", "## How this was measured", "",
              f"- Graph checked: `{g['file']}` with {g['activations']} activations on {g['runtime']}, "
              f"`session.qdq_matmulnbits_accuracy_level = {g['qdq_matmulnbits_accuracy_level']}` "
              "(activations not quantized by onnxruntime).",
              f"- Eval data: `{e['source']}` (sha256 `{e['sha256'][:16]}…`), {e['windows']} windows of "
              f"{e['window_tokens']} tokens, {e['task_examples']} task examples"
              + (f" ({e['shortcut']})." if e.get("shortcut") else "."),
              "- FP16 reference: the checkpoint's weights rounded to FP16, run by PyTorch in FP32.",
              "- KL: mean KL(FP16 reference ‖ model) over next-token distributions; top-1: share of positions "
              "where both pick the same token.",
              "- Host latency: batch 1 on this machine's CPU (indicative only, not the target).",
              ""]
    lines += _layers_md(r) + _kl_md(r) + _device_accuracy_md(r) + _latency_md(r)
    lines += ["## Stage times (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in r["stage_seconds"].items()]
    return "\n".join(lines) + "\n"


def _layers_md(r: dict, worst: int = 8) -> list[str]:
    layers = r.get("layers")
    lines = ["## Per-layer quantization error (weight SQNR)", ""]
    stats = layer_stats(layers or [])
    if not stats:
        why = r.get("layers_note") or ("not in this report" if layers is None else "no quantized linears")
        return lines + [f"Not measured: {why}.", ""]
    lines += [f"10·log10(‖W‖² / ‖W − Ŵ‖²) per quantized linear, measured as each weight was quantized: "
              f"{stats['count']} linears, min {stats['min']:.1f} dB, median {stats['median']:.1f} dB, "
              f"max {stats['max']:.1f} dB. The {min(worst, len(layers))} lowest:", "",
              "| linear | SQNR dB | bits | group |", "|---|---|---|---|"]
    ranked = sorted(layers, key=lambda x: float("inf") if x["sqnr_db"] is None else x["sqnr_db"])
    lines += [f"| {_cell(x['name'])} | {_f(x['sqnr_db'], '{:.2f}')} | {x['bits']} | {x['group_size']} |" for x in ranked[:worst]]
    return lines + [""]


def _kl_md(r: dict) -> list[str]:
    q = (r.get("onnx") or {}).get("kl_quantiles")
    lines = ["## Per-token KL against FP16 (ONNX)", ""]
    if not q:
        return lines + ["Not measured" + (f": {r['accuracy_skipped']}" if r.get("accuracy_skipped") else "") + ".", ""]
    n = ((r["onnx"].get("kl_histogram") or {}).get("n"))
    return lines + [f"KL(FP16 ‖ ONNX) per next-token position{f' ({n} tokens)' if n else ''}; its mean is the "
                    "KL above. The histogram is in report.html.", "",
                    "| " + " | ".join(q) + " |", "|" + "---|" * len(q), "| " + " | ".join(f"{v:.3g}" for v in q.values())
                    + " |", ""]


def _device_accuracy_md(r: dict) -> list[str]:
    """`dsedge bench --accuracy`'s figures beside the build's; nothing when it was not run."""
    a = (r.get("measured") or {}).get("accuracy")
    if not a:
        return []
    graph = f" over {a['graph']}" if a.get("graph") else ""
    lines = [f"## Accuracy {a['source']}", "",
             f"dsedge bench --accuracy on {a['where']}, {a['runtime']}{graph}: the build's {a['windows']} eval windows "
             f"of {a['window_tokens']} tokens ({a['scored_positions']} scored positions) against the FP16 reference "
             f"summary the artifact carries. {a['note']}.", "",
             "| figure | measured | build (host onnxruntime) |", "|---|---|---|"]
    return lines + [f"| {_cell(f)} | {_cell(m)} | {_cell(b)} |" for f, m, b in device_accuracy_rows(a)] + [""]


def _latency_md(r: dict) -> list[str]:
    lat = r.get("host_latency")
    lines = ["## Host latency distribution (onnxruntime CPU)", ""]
    if not lat:
        return lines + ["Not measured.", ""]
    lines += ["| phase | runs | min | median | p90 | max |", "|---|---|---|---|---|---|"]
    for phase, key in (("prefill (ms)", "prefill"), ("decode (ms/token)", "decode")):
        s = lat.get(f"{key}_ms_samples") or []
        lo, hi = (f"{min(s):.3g}", f"{max(s):.3g}") if s else ("n/a", "n/a")
        lines.append(f"| {phase} | {len(s) or 'n/a'} | {lo} | {lat[f'{key}_ms_median']:.3g} | "
                     f"{lat[f'{key}_ms_p90']:.3g} | {hi} |")
    return lines + [""]


def write_reports(folder: Path, report: dict, json_too: bool = True) -> dict[str, Path]:
    """report.json (unless json_too is False: regenerating from it), report.md and report.html.
    -> {"json"?, "md", "html"}: the files written."""
    from .html import to_html

    folder = Path(folder)
    paths = {}
    if json_too:
        paths["json"] = folder / "report.json"
        paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    paths["md"] = folder / "report.md"
    paths["md"].write_text(to_markdown(report))
    paths["html"] = folder / "report.html"
    paths["html"].write_text(to_html(report))
    return paths
