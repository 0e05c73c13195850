"""The tables a build report is rendered from (its summary rows, per-layer SQNR statistics), shared by
report.md (.render) and report.html (.html); imports neither."""
from __future__ import annotations


def _f(x, fmt="{:.4g}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _fallbacks(rows: list[dict] | None) -> str:
    """'; 2 linears at INT4 g64, 1 at INT8 per channel (group does not divide)' or ''."""
    if not rows:
        return ""
    counts: dict[str, int] = {}
    for f in rows:
        k = f"INT{f['bits']} " + ("per channel" if f["group_size"] == -1 else f"g{f['group_size']}")
        counts[k] = counts.get(k, 0) + 1
    return "; " + ", ".join(f"{n} linear{'s' * (n > 1)} at {k}" for k, n in counts.items()) + \
        " (the group does not divide their in_features: report.json quantization.layer_fallbacks)"


def fit_line(fit: dict) -> str:
    """--fit in one line: the mix, its bytes against the budget, predicted vs measured KL."""
    b, c = fit["budget"], fit["counts"]
    mix = ", ".join(f"{c[k]} {k.upper()}" for k in ("int4", "int8", "fp16") if c.get(k))
    ev = fit.get("measured_kl_eval")
    size = lambda n: f"{n / 2**30:.3f} GiB" if n >= 2**30 / 10 else f"{n / 2**20:.2f} MiB"
    return (f"{mix}: {size(fit['weight_bytes'])}, {fit['bits_per_weight']:.3f} bits/weight "
            f"(budget {size(b['bytes'])}, "
            + (f"{b['bits_per_weight']:.3f} bits" if b["bits_per_weight"] < 16 else "every unit fits at FP16")
            + f": {b['binding']}, context "
            f"{b['context']}); KL predicted {fit['predicted_kl']:.3g}, measured {fit['measured_kl']:.3g} "
            "(calibration windows)" + ("" if ev is None else f", {ev:.3g} (eval, ONNX)"))


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
        ("model", f"{r['model']['name']} ({r['model']['architecture']})"
                  + "".join(f"; {n}" for n in r["model"].get("config_notes") or [])),
        ("quantization", r["quantization"]["label"] + _fallbacks(r["quantization"].get("layer_fallbacks"))),
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
    acc = (r.get("measured") or {}).get("accuracy")
    if acc:
        rows.append((f"accuracy {acc['source']}", device_accuracy_line(acc)))
    fit = r.get("fit")
    if fit:
        rows.append(("fit", fit_line(fit)))
    kv = r.get("kv_cache")
    if kv:
        rows.append((f"KV cache {kv['dtype'].upper()} vs FP16 cache", "; ".join(
            f"{f['window_tokens']} tokens: KL {f['kl']:.3g}, top-1 {100 * f['top1_agreement']:.2f}%, "
            f"ΔPPL {f['ppl_change_pct']:+.3f} %" for f in (kv.get("short"), kv.get("long")) if f)
            + " (decoded token by token through the cache)"))
    if onnx and r["eval"].get("shortcut"):
        rows.append(("accuracy measured on", f"{r['eval']['windows']} eval windows ({r['eval']['shortcut']})"))
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


def device_accuracy_line(a: dict) -> str:
    """One line of `dsedge bench --accuracy`'s figures (report.json measured.accuracy)."""
    return (f"KL {a['kl']:.4g} nats/token (top-{a['top_k']} ids + rest: a lower bound), top-1 "
            f"{a['top1_agreement']:.2%}, perplexity {a['perplexity']:.4f} ({a['ppl_change_pct']:+.2f} % vs FP16); "
            f"{a['where']}, {a['runtime']}")


def device_accuracy_rows(a: dict) -> list[tuple[str, str, str]]:
    """(figure, measured where the engine runs, the build's host onnxruntime figure) rows."""
    b = a.get("build") or {}
    return [(f"KL vs FP16 (nats/token; device: top-{a['top_k']} + rest, a lower bound)", _f(a["kl"]), _f(b.get("kl"))),
            ("top-1 agreement vs FP16", _f(a["top1_agreement"], "{:.2%}"), _f(b.get("top1_agreement"), "{:.2%}")),
            ("perplexity", _f(a["perplexity"], "{:.4f}"), _f(b.get("perplexity"), "{:.4f}")),
            ("perplexity change vs FP16 (%)", _f(a["ppl_change_pct"], "{:+.3f}"), _f(b.get("ppl_change_pct"), "{:+.3f}"))]


def layer_stats(layers: list[dict]) -> dict | None:
    """min / median / max SQNR (dB) over the measured linears (exact ones left out), or None."""
    v = sorted(x["sqnr_db"] for x in layers if x.get("sqnr_db") is not None)
    if not v:
        return None
    mid = len(v) // 2
    return {"count": len(layers), "min": v[0], "max": v[-1],
            "median": v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2}
