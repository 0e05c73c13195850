"""What an INT8 KV cache costs: the eval text decoded one token at a time through the cache
(teacher forcing: token t attends to tokens < t read back from the cache), the INT8-cache graph
in onnxruntime against the same quantized weights with an FP16 cache (PyTorch, FP32 compute),
at the eval's window and at the longest the model takes. A full-window forward (the build's other
accuracy figures) never reads a cache, so it cannot see this."""
from __future__ import annotations

import numpy as np
import torch

from .accuracy import EvalData, bos_prefix, evaluate

LONG_MAX = 2048          # the long-context windows: the model's positions, at most this many tokens


def onnx_decode(decoder):
    """decoder: check.session.OnnxDecoder -> fn(ids (B, W)) -> logits (B, W, V), one token per step."""
    def fn(ids: np.ndarray) -> np.ndarray:
        out, cache = None, None
        for t in range(ids.shape[1]):
            logits, cache = decoder.run(ids[:, t:t + 1], cache)                # (B, 1, V)
            if out is None:   # filled in place: a list + concatenate would hold the logits twice
                out = np.empty((ids.shape[0], ids.shape[1], logits.shape[-1]), np.float32)
            out[:, t] = logits[:, 0]
        return out
    return fn


def torch_decode(model, new_cache=None):
    """The same in PyTorch through transformers' cache (new_cache(): another cache class)."""
    @torch.no_grad()
    def fn(ids: np.ndarray) -> np.ndarray:
        x, out, past = torch.from_numpy(ids), None, new_cache() if new_cache else None
        for t in range(x.shape[1]):
            o = model(input_ids=x[:, t:t + 1], past_key_values=past, use_cache=True)
            past = o.past_key_values
            if out is None:
                out = np.empty((ids.shape[0], ids.shape[1], o.logits.shape[-1]), np.float32)
            out[:, t] = o.logits[:, 0].float().numpy()                          # (B, V)
        return out
    return fn


def rewindow(data: EvalData, tokenizer, window: int, max_windows: int) -> EvalData | None:
    """The eval's token stream (its windows without their BOS, in order) cut into `window`-token
    windows; None when the stream is shorter than one."""
    bos = bos_prefix(tokenizer)
    stream = data.windows[:, len(bos):].reshape(-1)                              # (n * (W - |bos|),)
    body = window - len(bos)
    n = min(len(stream) // body, max_windows)
    if n == 0:
        return None
    w = stream[: n * body].reshape(n, body)
    if bos:
        w = np.concatenate([np.full((n, 1), bos[0], w.dtype), w], axis=1)       # (n, window)
    return EvalData(w, [], data.source, data.sha256, window, data.separator)


def kv_cache_figures(decoder, q_model, data: EvalData, tokenizer, windows: int = 8) -> dict:
    """KL / top-1 / perplexity of the INT8-cache graph against the FP16 cache on the same weights,
    decoding token by token: the eval's first `windows` windows, and the same text in windows of
    the model's max positions (at most LONG_MAX)."""
    positions = int(getattr(q_model.config, "max_position_embeddings", 0) or 0) or LONG_MAX
    long = min(positions, LONG_MAX)
    n_long = max(1, windows * data.window // long)
    out = {"how": "teacher-forced decoding, one token per step, every earlier token read from the cache; "
                  "reference: the same quantized weights with an FP16 cache (PyTorch, FP32 compute)"}
    cases = [("short", rewindow(data, tokenizer, data.window, windows))]
    if long > data.window:
        cases.append(("long", rewindow(data, tokenizer, long, n_long)))
    for name, sub in cases:
        if sub is None:
            continue
        m = evaluate({"fp16_cache": torch_decode(q_model), "int8_cache": onnx_decode(decoder)}, sub,
                     reference="fp16_cache", batch=len(sub.windows))
        ref, q = m["fp16_cache"], m["int8_cache"]
        out[name] = {"window_tokens": sub.window, "windows": int(len(sub.windows)), "kl": q.kl, "top1_agreement": q.top1_agreement,
                     "perplexity": q.perplexity, "fp16_cache_perplexity": ref.perplexity,
                     "ppl_change_pct": round(100 * (q.perplexity / ref.perplexity - 1), 4)}
    return out
