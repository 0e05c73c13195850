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
from ..check.latency import Latency, measure_latency


@dataclass
class Checked:
    metrics: dict[str, Metrics] | None    # by model: fp16_reference, pytorch, onnx
    latency: Latency | None


def check_stage(job, v, cache: StageCache, scratch: Path, latency: bool) -> Checked:
    """job: Loaded; v: Validated (released here: its models and session are not needed after)."""
    metrics, lat = None, None
    if job.plan.scope == "full":
        if isinstance(job.quant, ImportedConfig) and job.ref_ckpt is None:  # no original to compare with
            metrics = evaluate({"pytorch": torch_logits(v.q_model), "onnx": v.decoder.logits}, job.data,
                               vocab=job.ckpt.config.vocab_size)
        else:
            src = job.ref_ckpt or job.ckpt
            ref_logits = CachedLogits(torch_logits(v.ref_model), cache,
                                      cache_key("reference_logits", src.sha256(), job.data.describe(), __version__))
            metrics = evaluate({"fp16_reference": ref_logits, "pytorch": torch_logits(v.q_model),
                                "onnx": v.decoder.logits}, job.data, reference="fp16_reference",
                               vocab=job.ckpt.config.vocab_size)
            ref_logits.save(scratch)
        lat = measure_latency(v.decoder, vocab=job.ckpt.config.vocab_size) if latency else None
    v.release()
    return Checked(metrics, lat)


def torch_logits(model):
    @torch.no_grad()
    def fn(ids: np.ndarray) -> np.ndarray:
        return model(input_ids=torch.from_numpy(ids)).logits.float().numpy()
    return fn
