"""Accuracy of next-token distributions: perplexity on held-out text, KL divergence and top-1
agreement against a reference, exact-answer task accuracy. Models are plain functions
ids (B, T) int64 -> logits (B, T, V) float32, so PyTorch and onnxruntime are measured alike."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UsageError

LogitsFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class EvalData:
    windows: np.ndarray                              # (n, W) int64 token windows of the eval text
    task: list[tuple[list[int], list[int]]]          # (prompt ids, answer ids)
    source: str
    sha256: str                                      # of the eval text (and task file) bytes
    window: int

    def describe(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "windows": int(len(self.windows)),
                "window_tokens": self.window, "task_examples": len(self.task)}


def load_eval(tokenizer, text_path: Path, task_path: Path | None = None, window: int = 128,
              max_windows: int = 32, max_task: int = 100) -> EvalData:
    text_path = Path(text_path)
    if not text_path.is_file():
        raise UsageError(f"eval file {text_path} does not exist", "pass --eval with an existing UTF-8 text file")
    raw = text_path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise UsageError(f"eval file {text_path} is empty", "pass --eval with held-out text to measure perplexity on")
    ids = _tokenize_lines(tokenizer, text)
    if len(ids) < window:
        raise UsageError(f"eval file {text_path} has {len(ids)} tokens, fewer than one {window}-token window",
                         f"use a longer text (at least {window} tokens)")
    n = min(len(ids) // window, max_windows)
    windows = np.asarray(ids[: n * window], dtype=np.int64).reshape(n, window)
    h = hashlib.sha256(raw)
    task = []
    if task_path is not None and Path(task_path).is_file():
        task_raw = Path(task_path).read_bytes()
        h.update(task_raw)
        for line in task_raw.decode().splitlines()[:max_task]:
            if line.strip():
                ex = json.loads(line)
                p = tokenizer(ex["prompt"], add_special_tokens=False)["input_ids"]
                a = tokenizer(" " + ex["answer"], add_special_tokens=False)["input_ids"]
                task.append((p, a))
    return EvalData(windows, task, str(text_path), h.hexdigest(), window)


def _tokenize_lines(tokenizer, text: str) -> list[int]:
    """Token stream of a text, line by line, lines joined by the tokenizer's own newline ids;
    a tokenizer that encodes "\n" as nothing (word-level ones, like the reference models')
    gets its EOS token between lines, the boundary such models were trained with."""
    sep = tokenizer("\n", add_special_tokens=False)["input_ids"]
    if not sep and getattr(tokenizer, "eos_token_id", None) is not None:
        sep = [tokenizer.eos_token_id]
    ids: list[int] = []
    for line in text.splitlines():
        if line.strip():
            ids += tokenizer(line, add_special_tokens=False)["input_ids"] + sep
    return ids


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@dataclass
class Metrics:
    perplexity: float
    kl: float | None = None                 # mean KL(reference || model) per token, nats
    top1_agreement: float | None = None     # fraction of positions with the reference's argmax
    task_accuracy: float | None = None
    kl_per_token: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "kl_per_token"}
        if self.kl_per_token:
            q = np.quantile(self.kl_per_token, [0.5, 0.9, 0.99])
            d["kl_quantiles"] = {"p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2])}
        return d


def task_accuracy(fn: LogitsFn, task: list[tuple[list[int], list[int]]]) -> float | None:
    """Exact match of the greedy answer, measured by teacher forcing (same as greedy decoding
    when every answer token is the argmax)."""
    if not task:
        return None
    hits = 0
    for prompt, answer in task:
        ids = np.asarray([prompt + answer[:-1]], dtype=np.int64)
        pred = fn(ids)[0, len(prompt) - 1:].argmax(-1)                   # (len(answer),)
        hits += int(list(pred) == list(answer))
    return hits / len(task)


def evaluate(models: dict[str, LogitsFn], data: EvalData, reference: str | None = None,
             batch: int = 8) -> dict[str, Metrics]:
    """Every model on the same windows, one batch at a time (reference logits never all held)."""
    nll = {k: 0.0 for k in models}
    kl = {k: [] for k in models}
    agree = {k: 0 for k in models}
    count = 0
    for start in range(0, len(data.windows), batch):
        ids = data.windows[start:start + batch]                           # (B, W)
        targets = ids[:, 1:]
        ref_lp = None
        for name, fn in ([(reference, models[reference])] if reference else []) + \
                [(k, f) for k, f in models.items() if k != reference]:
            lp = _log_softmax(fn(ids)[:, :-1].astype(np.float64))         # (B, W-1, V)
            nll[name] -= np.take_along_axis(lp, targets[..., None], -1).sum()
            if name == reference:
                ref_lp = lp
            elif ref_lp is not None:
                kl_tok = (np.exp(ref_lp) * (ref_lp - lp)).sum(-1)          # (B, W-1)
                kl[name].extend(kl_tok.ravel().tolist())
                agree[name] += int((lp.argmax(-1) == ref_lp.argmax(-1)).sum())
        count += targets.size
    out = {}
    for name, fn in models.items():
        m = Metrics(perplexity=float(np.exp(nll[name] / count)), task_accuracy=task_accuracy(fn, data.task))
        if reference and name != reference:
            m.kl, m.top1_agreement, m.kl_per_token = float(np.mean(kl[name])), agree[name] / count, kl[name]
        elif reference:
            m.kl, m.top1_agreement = 0.0, 1.0
        out[name] = m
    return out
