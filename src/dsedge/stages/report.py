"""The last step of `dsedge build`: report.json / .md / .html and the manifest, from the typed
results of every stage. Settings come from the objects that were used (the quantization config,
the target, the host plan), never from names."""
from __future__ import annotations

import time
from pathlib import Path

from .. import __version__
from ..artifact import write_manifest
from ..check.device_accuracy import write_reference
from ..quantize.kv_cache import describe as describe_kv
from ..check.session import ACCURACY_LEVEL
from ..plan.budget import budget_table, estimate_budgets, missed_budgets
from ..report import write_reports


def write_artifact(staging: Path, job, q, exported, v, checked, compat: dict, engine: dict, reused: list,
                   notes: list, times: dict, started: float) -> tuple[dict, dict]:
    """job: Loaded, q: Quantized, exported: Exported, v: Validated, checked: Checked; times: seconds
    per stage, `started`: time.perf_counter() at the start. -> (report, manifest), written into `staging`."""
    ckpt, quant, tgt, exp = job.ckpt, job.quant, job.target, exported.result
    q.qweights.complete()  # weights a cached export or a truncated check did not produce
    report = build_report(job, q, exp, v, checked, times, staging)
    report["layers"], report["layers_note"] = q.qweights.to_list(), q.layers_note
    if q.result.expert_tokens is not None:
        report["calibration_expert_tokens"] = {
            "routed": q.result.expert_tokens, "samples": q.calib.describe().get("samples") if q.calib else None,
            "note": "tokens the FP16 routers send to each expert over the calibration data; the method's "
                    "statistics use every calibration token for every expert (llm-compressor "
                    "moe_calibrate_all_experts), so an expert the router never picks is still calibrated"}
    if ckpt.spec.moe is not None:  # weight bytes a decoded token reads, per MoE form, from the graph
        from ..export.moe import weight_bytes_per_token

        report["moe_decode_weight_bytes"] = weight_bytes_per_token(
            exp.path, int(ckpt.raw_config[ckpt.spec.moe.top_k_key]))
    if v.fp32_variant:
        report["graph_checked"].update(
            activations="float32", file=report["graph_checked"]["file"] + " (FP32 variant: the artifact's "
            "FP16 graph with INT8 activations flips activation codes at rounding boundaries against the FP32 "
            "PyTorch reference; same weights and scales)")
    if q.fit is not None:   # --fit: predicted (sum of unit costs) vs measured, on calibration and on the eval
        report["fit"] = {**q.fit, "measured_kl_eval": (report.get("onnx") or {}).get("kl"),
                         "measured_kl_eval_on": "the eval windows through model.onnx (the report's onnx.kl)"}
    report["tensorrt_compat"], report["engine"] = compat, engine
    report["onnxruntime_genai"] = ({"genai_config": "genai_config.json"} if exported.genai_note is None
                                   else {"genai_config": None, "why": exported.genai_note})
    report["reused_stages"] = reused
    # accuracy/: the eval windows and the FP16 reference's top-64 summary, for dsedge bench --accuracy
    report["accuracy_reference"] = write_reference(staging, job.data.windows, checked.device_reference)
    if notes:   # what dsedge cleaned up or refused to trust on the way (stale folders, cache entries)
        report["housekeeping"] = notes
    report["budgets"] = budget_table(estimate_budgets(ckpt.raw_config, tgt, quant, report["ppl_change_pct"],
                                                      job.kv_cache), tgt)
    report["budgets_missed"] = missed_budgets(report["budgets"])
    times["total"] = round(time.perf_counter() - started, 3)
    write_reports(staging, report)
    manifest = write_manifest(
        staging, dsedge_version=__version__,
        source={"model": str(ckpt.path), "name": ckpt.name, "architecture": ckpt.architecture,
                "sha256": ckpt.sha256(), "reference_checkpoint": job.is_reference},
        quantization=quant.to_dict(), layer_fallbacks=_fallbacks(q.result), fit=q.fit,
        target={"name": tgt.name, "file": tgt.source_file, "budgets": tgt.budgets.model_dump(),
                "tensorrt": tgt.tensorrt.version, "jetpack": tgt.tensorrt.jetpack},
        export={"opset": exp.opset, "dtype": exp.dtype, "external_data": exp.external_data,
                "kv_cache": describe_kv(q.kv_scales, q.kv_calib) if q.kv_scales else {"dtype": "fp16"}},
        engine=engine,
        tensorrt_compat={"ok": compat["ok"], "tensorrt": tgt.tensorrt.version},
        calibration=q.calib.describe() if q.calib else None,
        eval=job.data.describe(), check={"onnxruntime_qdq_matmulnbits_accuracy_level": ACCURACY_LEVEL,
                                         "scope": job.plan.scope, "layers": job.plan.check_layers})
    return report, manifest


def build_report(job, q, exp, v, checked, times: dict, staging: Path) -> dict:
    ckpt, quant, tgt, plan, qres = job.ckpt, job.quant, job.target, job.plan, q.result
    onnx_bytes = sum(p.stat().st_size for p in staging.glob("model.onnx*"))
    full = plan.scope == "full"
    metrics, lat = checked.metrics, checked.latency
    r = {
        "dsedge_version": __version__,
        "model": {"name": ckpt.name, "architecture": ckpt.architecture, "reference_checkpoint": job.is_reference,
                  "layers": ckpt.n_layers, "params": plan.params, "config_notes": ckpt.config_notes},
        # identity of what was quantized, so that `dsedge gate` can refuse to compare unrelated builds
        "source": {"name": ckpt.name, "sha256": ckpt.sha256()},
        "quantization": {**quant.to_dict(), "label": quant.label(), "quantized_linears": len(qres.weights),
                         "activations": (getattr(quant, "activation_scheme", None) if qres.act_scales
                                         else "fp16 (weight-only)"),
                         "seconds": round(qres.total_seconds, 3),
                         "layer_fallbacks": _fallbacks(qres)},
        "target": {"name": tgt.name, "tensorrt": tgt.tensorrt.version, "jetpack": tgt.tensorrt.jetpack},
        "size_mb": round(onnx_bytes / 1e6, 3),
        "graph_checked": {"file": "model.onnx" if full else f"model.onnx truncated to its first {plan.check_layers} "
                                                             f"of {plan.n_layers} layers + head (same weights)",
                          "activations": exp.dtype, "runtime": "onnxruntime CPUExecutionProvider",
                          "qdq_matmulnbits_accuracy_level": ACCURACY_LEVEL},
        "host_plan": plan.describe(),
        "eval": job.data.describe(),
        "fp16_reference": None, "pytorch": None, "onnx": None, "ppl_change_pct": None,
        "accuracy_skipped": None if full else (
            f"the model needs ~{plan.full_check_bytes / 2**30:.0f} GiB for a full PyTorch check and this host has "
            f"{plan.available_bytes / 2**30:.0f} GiB available: the export was validated on the first "
            f"{plan.check_layers} layers; accuracy and host latency were not measured"),
        "export_fidelity": v.fidelity.to_dict(),
        "greedy_generation": v.greedy,
        "host_latency": lat.to_dict() if lat else None,
        "kv_cache": checked.kv_cache,
        "export": {"opset": exp.opset, "ops": exp.ops, "initializers": exp.initializers,
                   "external_data": exp.external_data, "traced_layers": exp.traced_layers,
                   "traced_whole": exp.traced_whole},
        "stage_seconds": times,
    }
    if metrics and "fp16_reference" in metrics:
        ref, onnx_m = metrics["fp16_reference"], metrics["onnx"]
        r.update({"fp16_reference": ref.to_dict(), "pytorch": metrics["pytorch"].to_dict(), "onnx": onnx_m.to_dict(),
                  "ppl_change_pct": round(100 * (onnx_m.perplexity / ref.perplexity - 1), 4)})
    elif metrics:  # an imported checkpoint without --reference: absolute figures only
        r.update({"pytorch": metrics["pytorch"].to_dict(), "onnx": metrics["onnx"].to_dict(),
                  "accuracy_note": "imported checkpoint without --reference: perplexity and task accuracy are "
                                   "absolute; no KL / top-1 / perplexity change against the original"})
    return r


def _fallbacks(qres) -> list[dict]:
    """The linears stored at another scheme than the config's, and why (QuantConfig.scheme_for)."""
    return [{"name": n, "bits": s.bits, "group_size": s.group_size, "why": s.fallback}
            for n, s in qres.fallbacks.items()]
