"""Host latency of the exported graph in onnxruntime: prefill and per-token decode.
Indicative only (this host's CPU, not the target); the target's figures come from its budget
estimate or from `dsedge bench` on the device."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .session import OnnxDecoder


@dataclass
class Latency:
    prompt_tokens: int
    prefill_ms_median: float
    prefill_ms_p90: float
    decode_ms_median: float
    decode_ms_p90: float
    decode_tokens_per_s: float
    runs: int
    warmup: int
    # every timed run, in order (ms): the report's latency distribution (a few dozen numbers)
    prefill_ms_samples: list[float] = field(default_factory=list)
    decode_ms_samples: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = self.__dict__.copy()
        for k in ("prefill_ms_samples", "decode_ms_samples"):
            d[k] = [round(x, 4) for x in d[k]]
        return d


def measure_latency(decoder: OnnxDecoder, prompt_tokens: int = 128, decode_tokens: int = 32,
                    runs: int = 5, warmup: int = 2, vocab: int = 100) -> Latency:
    ids = np.random.default_rng(0).integers(0, vocab, (1, prompt_tokens), dtype=np.int64)
    prefill = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        _, cache = decoder.run(ids)
        if i >= warmup:
            prefill.append(time.perf_counter() - t)
    decode = []
    tok = ids[:, -1:]
    for i in range(warmup + decode_tokens):
        t = time.perf_counter()
        _, cache = decoder.run(tok, cache)
        if i >= warmup:
            decode.append(time.perf_counter() - t)
    pre, dec = np.asarray(prefill) * 1e3, np.asarray(decode) * 1e3
    return Latency(prompt_tokens, float(np.median(pre)), float(np.percentile(pre, 90)),
                   float(np.median(dec)), float(np.percentile(dec, 90)), float(1e3 / np.median(dec)),
                   runs, warmup, pre.tolist(), dec.tolist())
