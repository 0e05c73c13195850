"""Render a build report (a plain dict, as in report.json) as rows, Markdown and files."""
from __future__ import annotations

import json
from pathlib import Path


def _f(x, fmt="{:.4g}") -> str:
    return "n/a" if x is None else fmt.format(x)


def summary_rows(r: dict) -> list[tuple[str, str]]:
    """(metric, value) rows: the table `dsedge build` prints and report.md starts with."""
    onnx, ref, pt = r["onnx"], r["fp16_reference"], r["pytorch"]
    lat = r.get("host_latency") or {}
    fid = r["export_fidelity"]
    gen = r["greedy_generation"]
    same = "identical" if gen["identical"] else (
        "{:.0%} identical, parted at a near-tie (margin {:.3g} within tolerance)" if gen["agrees"]
        else "{:.0%} identical, parted with margin {:.3g}: DISAGREES").format(
            gen["matching_fraction"], gen["worst_margin_at_divergence"])
    rows = [
        ("model", f"{r['model']['name']} ({r['model']['architecture']})"),
        ("quantization", r["quantization"]["label"]),
        ("target", f"{r['target']['name']} (TensorRT {r['target']['tensorrt']})"),
        ("size", f"{r['size_mb']:.2f} MB"),
    ]
    if onnx and not ref:
        rows += [("perplexity (ONNX)", f"{onnx['perplexity']:.4f}  (no reference: {r.get('accuracy_note')})"),
                 ("perplexity (PyTorch quantized)", f"{pt['perplexity']:.4f}"),
                 ("task accuracy", _f(onnx.get("task_accuracy"), "{:.1%}"))]
    elif onnx:
        rows += [
            ("perplexity (ONNX)", f"{onnx['perplexity']:.4f}  (FP16 {ref['perplexity']:.4f}, "
                                  f"{r['ppl_change_pct']:+.2f} %)"),
            ("perplexity (PyTorch quantized)", f"{pt['perplexity']:.4f}"),
            ("KL vs FP16 (nats/token)", _f(onnx.get("kl"))),
            ("top-1 agreement vs FP16", _f(onnx.get("top1_agreement"), "{:.2%}")),
            ("task accuracy", f"{_f(onnx.get('task_accuracy'), '{:.1%}')} "
                              f"(FP16 {_f(ref.get('task_accuracy'), '{:.1%}')})"),
        ]
    else:
        rows.append(("accuracy", f"not measured: {r['accuracy_skipped']}"))
    rows.append(("ONNX vs PyTorch", f"max |Δlogit| {fid['max_abs_diff']:.3g} (tolerance {fid['atol']:g} + "
                                    f"{fid['rtol']:g}·max|logit|); greedy {gen['tokens']} tokens × "
                                    f"{gen['prompts']} prompts: {same}"
                                    + ("" if r["host_plan"]["check_scope"] == "full" else
                                       f" [on the first {r['host_plan']['check_layers']} layers]")))
    if lat:
        rows.append(("host latency (onnxruntime CPU)",
                     f"prefill {lat['prompt_tokens']} tok {lat['prefill_ms_median']:.1f} ms, decode "
                     f"{lat['decode_ms_median']:.2f} ms/token ({lat['decode_tokens_per_s']:.0f} tok/s)"))
    compat = r.get("tensorrt_compat")
    if compat:
        rows.append((f"TensorRT {compat['tensorrt']} compatibility",
                     "compatible" if compat["ok"] else "NOT compatible: " + "; ".join(
                         f"{p['node']}: {p['reason']}" for p in compat["problems"][:3])))
    eng = r["engine"]
    if eng["built"]:
        rows.append(("TensorRT engine", f"built: {eng.get('file', 'model.engine')}"))
    else:
        where = f"; on the device run ./{eng['device_script']}" if eng.get("device_script") else ""
        rows.append(("TensorRT engine", f"not built: {eng['reason']}{where}"))
    for b in r.get("budgets") or []:
        if b["value"] is None and b["budget"] is None:
            continue
        limit = "no budget" if b["budget"] is None else f"{'≤' if b['limit'] == 'max' else '≥'} {b['budget']:g}"
        value = "—" if b["value"] is None else f"{b['value']:.4g}"
        rows.append((f"budget {b['metric']} ({b['source'] or 'n/a'})", f"{value} {b['unit']} ({limit}): {b['status']}"))
    return rows


def to_markdown(r: dict) -> str:
    lines = [f"# dsedge build report: {r['model']['name']} · {r['quantization']['label']} · {r['target']['name']}", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(r)]
    g = r["graph_checked"]
    e = r["eval"]
    lines += ["", "## How this was measured", "",
              f"- Graph checked: `{g['file']}` with {g['activations']} activations on {g['runtime']}, "
              f"`session.qdq_matmulnbits_accuracy_level = {g['qdq_matmulnbits_accuracy_level']}` "
              "(activations not quantized by onnxruntime).",
              f"- Eval data: `{e['source']}` (sha256 `{e['sha256'][:16]}…`), {e['windows']} windows of "
              f"{e['window_tokens']} tokens, {e['task_examples']} task examples.",
              "- FP16 reference: the checkpoint's weights rounded to FP16, run by PyTorch in FP32.",
              "- KL: mean KL(FP16 reference ‖ model) over next-token distributions; top-1: share of positions "
              "where both pick the same token.",
              "- Host latency: batch 1 on this machine's CPU (indicative only, not the target).",
              ""]
    lines += _layers_md(r) + _kl_md(r) + _latency_md(r)
    lines += ["## Stage times (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in r["stage_seconds"].items()]
    return "\n".join(lines) + "\n"


def layer_stats(layers: list[dict]) -> dict | None:
    """min / median / max SQNR (dB) over the measured linears (exact ones left out), or None."""
    v = sorted(x["sqnr_db"] for x in layers if x.get("sqnr_db") is not None)
    if not v:
        return None
    mid = len(v) // 2
    return {"count": len(layers), "min": v[0], "max": v[-1],
            "median": v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2}


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
    lines += [f"| {x['name']} | {_f(x['sqnr_db'], '{:.2f}')} | {x['bits']} | {x['group_size']} |" for x in ranked[:worst]]
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
