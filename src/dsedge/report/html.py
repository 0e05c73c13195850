"""report.html: one self-contained page (inline CSS, figures as base64 PNG, no external URL):
the summary table first, then per-layer SQNR, per-token KL and host latency figures, each with
a sentence saying what it shows and how it was measured."""
from __future__ import annotations

import base64
from html import escape

from . import figures
from .tables import device_accuracy_rows, layer_stats, summary_rows

_CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;
vertical-align:top}th{background:#f3f3f3}img{max-width:100%}.note{color:#666}h2{margin-top:2rem}
code{background:#f3f3f3;padding:0 .2rem}"""


def _img(png: bytes | None, alt: str, missing: str) -> str:
    if png is None:
        return f'<p class="note">Not available: {escape(missing)}</p>'
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _figure(make, *args) -> tuple[bytes | None, str | None]:
    """(png, None), or (None, why) when matplotlib is missing: the page is still written."""
    try:
        return make(*args), None
    except ImportError as e:
        return None, f"matplotlib is not installed ({e.name}): pip install matplotlib, then dsedge report ARTIFACT"


def _table(rows, head=None) -> str:
    h = "" if head is None else "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in head) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{h}{body}</table>"


def to_html(r: dict) -> str:
    title = f"dsedge build report: {r['model']['name']} · {r['quantization']['label']} · {r['target']['name']}"
    parts = [f"<h1>{escape(title)}</h1>", _table(summary_rows(r), ("metric", "value"))]
    parts += _sqnr_section(r) + _kl_section(r) + _device_accuracy_section(r) + _latency_section(r)
    g, e = r["graph_checked"], r["eval"]
    parts += ["<h2>How this was measured</h2><ul>",
              f"<li>Graph checked: <code>{escape(g['file'])}</code>, {escape(g['activations'])} activations on "
              f"{escape(g['runtime'])}, qdq_matmulnbits_accuracy_level = {g['qdq_matmulnbits_accuracy_level']}.</li>",
              f"<li>Eval data: <code>{escape(e['source'])}</code> (sha256 <code>{escape(e['sha256'])}</code>), "
              f"{e['windows']} windows of {e['window_tokens']} tokens, {e['task_examples']} task examples"
              + (f" ({escape(e['shortcut'])})" if e.get("shortcut") else "") + ".</li>",
              "<li>FP16 reference: the checkpoint's weights rounded to FP16, run by PyTorch in FP32.</li>",
              f"<li>Written by dsedge {escape(str(r.get('dsedge_version')))}.</li></ul>"]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _sqnr_section(r: dict) -> list[str]:
    layers = r.get("layers")
    out = ["<h2>Per-layer quantization error</h2>",
           "<p>Signal-to-quantization-noise ratio of each quantized linear's weight, 10·log10(‖W‖² / ‖W − Ŵ‖²) "
           "with W the checkpoint's weight rounded to FP16 and Ŵ the dequantized weight the graph stores, measured "
           "during the build as each weight was quantized (about 6 dB per bit; lower means more damage).</p>"]
    why = r.get("layers_note") or ("this report has no per-layer data (built by an older dsedge)" if layers is None
                                   else "no quantized linears")
    png, err = _figure(figures.sqnr_figure, layers or [])
    out.append(_img(png, "per-layer SQNR", err or why))
    stats = layer_stats(layers or [])
    if stats:
        out.append(f"<p>{stats['count']} linears: SQNR min {stats['min']:.1f} dB, median {stats['median']:.1f} dB, "
                   f"max {stats['max']:.1f} dB.</p>")
        rows = [(x["name"], "exact" if x["sqnr_db"] is None else f"{x['sqnr_db']:.2f}", x["bits"], x["group_size"],
                 "×".join(map(str, x.get("shape", [])))) for x in sorted(layers, key=_sqnr_key)]
        out.append("<details><summary>all layers, worst first</summary>"
                   + _table(rows, ("linear", "SQNR dB", "bits", "group", "shape (out×in)")) + "</details>")
    return out


def _sqnr_key(x: dict) -> float:
    return float("inf") if x["sqnr_db"] is None else x["sqnr_db"]


def _kl_section(r: dict) -> list[str]:
    onnx = r.get("onnx") or {}
    hist = onnx.get("kl_histogram")
    out = ["<h2>Per-token KL against FP16</h2>",
           f"<p>KL(FP16 reference ‖ ONNX graph) of the next-token distribution at each position of the eval windows "
           f"({hist['n'] if hist else 'n/a'} tokens), the graph run in onnxruntime on CPU; the report's KL is their "
           "mean. A long right tail means a few tokens are badly hurt even when the mean is small.</p>"]
    why = (r.get("accuracy_skipped") or r.get("accuracy_note") or
           ("this report has no KL histogram (built by an older dsedge)" if onnx else "accuracy not measured"))
    png, err = _figure(figures.kl_figure, hist, onnx.get("kl_quantiles"))
    out.append(_img(png, "per-token KL histogram", err or why))
    q = onnx.get("kl_quantiles")
    if q:
        out.append(_table([[f"{v:.3g}" for v in q.values()]], list(q)))
    return out


def _device_accuracy_section(r: dict) -> list[str]:
    a = (r.get("measured") or {}).get("accuracy")
    if not a:
        return []
    graph = f" over {a['graph']}" if a.get("graph") else ""
    return [f"<h2>Accuracy {escape(a['source'])}</h2>",
            f"<p>dsedge bench --accuracy on {escape(a['where'])}, {escape(a['runtime'])}{escape(graph)}: the build's "
            f"{a['windows']} eval windows of {a['window_tokens']} tokens ({a['scored_positions']} scored positions) "
            f"against the FP16 reference summary the artifact carries. {escape(a['note'])}.</p>",
            _table(device_accuracy_rows(a), ("figure", "measured", "build (host onnxruntime)"))]


def _latency_section(r: dict) -> list[str]:
    lat = r.get("host_latency")
    out = ["<h2>Host latency distribution</h2>",
           "<p>Latency of the graph in onnxruntime on the CPU that built it, batch 1"
           + (f", after {lat['warmup']} warm-up runs: each decode step of one token through the KV cache, and "
              f"{lat['runs']} prefills of a {lat['prompt_tokens']}-token prompt" if lat else "")
           + ". Indicative only: the target's speed is its budget estimate or an on-device benchmark.</p>"]
    why = ("host latency was not measured (--no-latency, or a truncated check)" if not lat
           else "this report keeps no latency samples (built by an older dsedge)")
    png, err = _figure(figures.latency_figure, lat)
    out.append(_img(png, "host latency", err or why))
    return out
