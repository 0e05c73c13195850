"""The check stage of `dsedge build`: accuracy against the FP16 reference (perplexity, KL, top-1,
task) and host latency, on the graph the validate stage checked. Full scope only: a build
validated on its first layers measures neither (the report says so)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..cache import CachedLogits, StageCache, cache_key
from ..quantize import ImportedConfig
from ..check.accuracy import Metrics, evaluate
from ..check.device_accuracy import ReferenceTap
from ..check.kv_cache import kv_cache_figures
from ..check.latency import Latency, measure_latency


@dataclass
class Checked:
    metrics: dict[str, Metrics] | None    # by model: fp16_reference, pytorch, onnx
    latency: Latency | None
    kv_cache: dict | None = None           # --kv-cache int8: its figures against the FP16 cache (check/kv_cache.py)
    device_reference: dict | None = None   # FP16 top-64 summary for dsedge bench --accuracy (check/device_accuracy.py)


def check_stage(job, v, cache: StageCache, scratch: Path, latency: bool, q=None) -> Checked:
    """job: Loaded; v: Validated (released here: its models and session are not needed after);
    q: Quantized (its INT8 cache scales, for the cache's own figures)."""
    metrics, lat, kv = None, None, None
    device_ref = None
    if job.plan.scope == "full":
        if isinstance(job.quant, ImportedConfig) and job.ref_ckpt is None:  # no original to compare with
            metrics = evaluate({"pytorch": torch_logits(v.q_model), "onnx": v.decoder.logits}, job.data,
                               vocab=job.ckpt.config.vocab_size)
        else:
            src = job.ref_ckpt or job.ckpt
            ref_logits = CachedLogits(torch_logits(v.ref_model), cache,
                                      cache_key("reference_logits", src.sha256(), job.data.describe(), __version__))
            tap = ReferenceTap(ref_logits, job.data)   # summarizes the reference's logits as they are read
            metrics = evaluate({"fp16_reference": tap, "pytorch": torch_logits(v.q_model),
                                "onnx": v.decoder.logits}, job.data, reference="fp16_reference",
                               vocab=job.ckpt.config.vocab_size)
            ref_logits.save(scratch)
            device_ref = tap.reference()
        lat = measure_latency(v.decoder, vocab=job.ckpt.config.vocab_size) if latency else None
        if q is not None and q.kv_scales:
            from ..quantize.kv_cache import describe

            kv = {**describe(q.kv_scales, q.kv_calib), **kv_cache_figures(v.decoder, v.q_model, job.data, job.tokenizer)}
    v.release()
    return Checked(metrics, lat, kv, device_reference=device_ref)


def torch_logits(model):
    @torch.no_grad()
    def fn(ids: np.ndarray) -> np.ndarray:
        return model(input_ids=torch.from_numpy(ids)).logits.float().numpy()
    return fn
