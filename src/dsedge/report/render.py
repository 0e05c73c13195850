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
              "", "## Stage times (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in r["stage_seconds"].items()]
    return "\n".join(lines) + "\n"


def write_reports(folder: Path, report: dict) -> None:
    (Path(folder) / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (Path(folder) / "report.md").write_text(to_markdown(report))
