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
    separator: str = "newline"
    shortcut: str | None = None                      # why fewer windows than the default (--check quick)
    scored: np.ndarray | None = None                 # (n, W) bool: the tokens scored (None: all; --eval self:
                                                     # the model's continuations, not the prompts)

    def describe(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "windows": int(len(self.windows)),
                "window_tokens": self.window, "line_separator": self.separator, "task_examples": len(self.task),
                **({"scored_tokens": int(self.scored[:, 1:].sum())} if self.scored is not None else {}),
                **({"shortcut": self.shortcut} if self.shortcut else {})}


def load_eval(tokenizer, text_path: Path, task_path: Path | None = None, window: int = 128,
              max_windows: int = 32, max_task: int = 100, separator: str = "newline") -> EvalData:
    """Windows of `window` tokens: BOS (when the tokenizer adds one) + window-1 tokens of the
    text's stream (see tokenize_lines), non-overlapping, the shorter tail dropped."""
    text_path = Path(text_path)
    if not text_path.is_file():
        raise UsageError(f"eval file {text_path} does not exist", "pass --eval with an existing UTF-8 text file")
    size = text_path.stat().st_size
    if size > MAX_EVAL_BYTES:
        raise UsageError(f"eval file {text_path} is {size / 2**20:.0f} MiB, over the {MAX_EVAL_BYTES >> 20} MiB limit "
                         f"(only {max_windows} x {window} tokens of it are used)",
                         "pass --eval with a held-out sample of the text (a few MB is plenty)")
    raw = text_path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise UsageError(f"eval file {text_path} is empty", "pass --eval with held-out text to measure perplexity on")
    ids = tokenize_lines(tokenizer, text, separator, budget=max_windows * window)
    windows = _windows(tokenizer, ids, window, max_windows, f"eval file {text_path}")
    h = hashlib.sha256(raw)
    task, bos = [], bos_prefix(tokenizer)
    if task_path is not None and Path(task_path).is_file():
        task_raw = Path(task_path).read_bytes()
        h.update(task_raw)
        for line in task_raw.decode().splitlines()[:max_task]:
            if line.strip():
                ex = json.loads(line)
                p = bos + tokenizer(ex["prompt"], add_special_tokens=False)["input_ids"]
                a = tokenizer(" " + ex["answer"], add_special_tokens=False)["input_ids"]
                task.append((p, a))
    return EvalData(windows, task, str(text_path), h.hexdigest(), window, separator)


def _windows(tokenizer, ids: list, window: int, max_windows: int, what: str, dtype=np.int64, pad=None) -> np.ndarray:
    """(n, window): BOS (when the tokenizer adds one; `pad` in its place for a mask) + window-1
    tokens of the stream each."""
    bos = bos_prefix(tokenizer)
    body = window - len(bos)
    if len(ids) < body:
        raise UsageError(f"{what} has {len(ids)} tokens, fewer than one {window}-token window",
                         f"use a longer text (at least {window} tokens)")
    n = min(len(ids) // body, max_windows)
    windows = np.asarray(ids[: n * body], dtype=dtype).reshape(n, body)            # (n, W - len(bos))
    if bos:
        windows = np.concatenate([np.full((n, 1), bos[0] if pad is None else pad, dtype), windows], axis=1)  # (n, W)
    return windows


def eval_from_stream(tokenizer, stream, window: int = 128, max_windows: int = 32) -> EvalData:
    """EvalData over a token stream the model generated (calib.generate.Stream: `--eval self`),
    records separated by EOS, only the continuations' tokens scored; no task examples."""
    ids = _windows(tokenizer, stream.ids, window, max_windows, stream.label)
    scored = _windows(tokenizer, stream.scored, window, max_windows, stream.label, bool, False)
    return EvalData(ids, [], stream.label, stream.sha256, window, "eos", scored=scored)


SEPARATORS = ("newline", "eos", "chat")


MAX_EVAL_BYTES = 256 << 20        # an eval text; only max_windows x window tokens of it are used
_PIECE = 16384                     # characters tokenized at once: a 40 MB line is read piece by piece


def _lines(text: str):
    """The non-empty lines of text, an over-long one cut at whitespace into pieces of <= _PIECE
    characters (which tokenizes as the whole line would, up to the cut's token)."""
    for line in text.splitlines():
        while len(line) > _PIECE:
            cut = line.rfind(" ", _PIECE // 2, _PIECE) + 1 or _PIECE
            yield line[:cut], False
            line = line[cut:]
        if line.strip():
            yield line, True


def tokenize_lines(tokenizer, text: str, separator: str = "newline", budget: int | None = None) -> list[int]:
    """Token stream of a text, line by line (no special tokens), each line followed by a separator:
    "newline": the tokenizer's own ids for "\n" (continuous text such as wikitext); a tokenizer
    that encodes "\n" as nothing (word-level ones) gets EOS instead;
    "eos": the EOS token, for files holding one independent document per line (the reference
    corpus, whose models were trained with </s> between sentences);
    "chat" (--chat-template): each line is one user turn rendered by the tokenizer's chat template
    with its generation prompt (R1: "<｜begin▁of▁sentence｜><｜User｜>line<｜Assistant｜><think>\n"),
    the template's own BOS and markers kept, one conversation after another."""
    if separator not in SEPARATORS:
        raise UsageError(f"separator {separator!r} is not one of {', '.join(SEPARATORS)}",
                         "use --eval-separator newline (continuous text) or eos (one document per line)")
    if separator == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise UsageError("--chat-template is set, but this tokenizer has no chat template",
                             "drop --chat-template, or use a checkpoint whose tokenizer_config.json defines "
                             "chat_template")
        ids: list[int] = []
        for line in text.splitlines():
            if line.strip():
                turn = tokenizer.apply_chat_template([{"role": "user", "content": line}], tokenize=False,
                                                     add_generation_prompt=True)
                ids += tokenizer(turn, add_special_tokens=False)["input_ids"]
                if budget is not None and len(ids) >= budget:
                    break
        return ids
    eos = getattr(tokenizer, "eos_token_id", None)
    sep = tokenizer("\n", add_special_tokens=False)["input_ids"] if separator == "newline" else []
    if not sep and eos is not None:
        sep = [eos]
    ids: list[int] = []
    for piece, line_end in _lines(text):   # stop once `budget` tokens are there: the rest is never used
        ids += tokenizer(piece, add_special_tokens=False)["input_ids"] + (sep if line_end else [])
        if budget is not None and len(ids) >= budget:
            break
    return ids


def bos_prefix(tokenizer) -> list[int]:
    """[BOS] when the tokenizer puts one in front of a text (as the model saw in training)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return []
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return [bos] if ids and ids[0] == bos else []


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
            q = np.quantile(self.kl_per_token, KL_QUANTILES)
            d["kl_quantiles"] = {f"p{100 * p:g}": float(v) for p, v in zip(KL_QUANTILES, q)}
            d["kl_quantiles"]["max"] = float(np.max(self.kl_per_token))
            d["kl_histogram"] = kl_histogram(self.kl_per_token)
        return d


KL_QUANTILES = (0.5, 0.9, 0.99, 0.999)


def kl_histogram(values, lo: float = 1e-8, hi: float = 1e2, per_decade: int = 4) -> dict:
    """Per-token KL on log-spaced bins, compact enough for report.json (40 counts by default).

    KL spans decades (most tokens ~1e-5, a few ~1): linear bins would put everything in the
    first one. Values below `lo` (identical distributions, or float round-off that can make a
    KL slightly negative) are counted in `below`, values at or above `hi` in `above`.
    -> {"edges": [n+1 floats], "counts": [n ints], "below": int, "above": int, "n": int}"""
    v = np.asarray(values, dtype=np.float64)                               # (tokens,)
    decades = int(round(np.log10(hi / lo)))
    edges = np.logspace(np.log10(lo), np.log10(hi), decades * per_decade + 1)   # (n+1,)
    counts, _ = np.histogram(v[(v >= lo) & (v < hi)], bins=edges)
    return {"edges": [float(f"{e:.6g}") for e in edges], "counts": counts.astype(int).tolist(),
            "below": int((v < lo).sum()), "above": int((v >= hi).sum()), "n": int(v.size)}


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


# Bytes of float32 logits one evaluation batch may hold per model: the batch shrinks with the
# vocabulary (8 windows of 128 positions at a 32 k vocabulary, 1-2 at 152 k), so the check's memory
# does not grow with it. The per-token arithmetic runs on chunks of positions (CHUNK_BYTES of
# float64 per temporary), never on a whole batch's (B, W, V) in float64.
BATCH_LOGIT_BYTES = 160 * 2**20
CHUNK_BYTES = 16 * 2**20


def eval_batch(windows: int, width: int, vocab: int, limit: int = 8) -> int:
    """Windows per evaluation batch for this window width and vocabulary."""
    return max(1, min(limit, windows, BATCH_LOGIT_BYTES // max(1, width * vocab * 4)))


def evaluate(models: dict[str, LogitsFn], data: EvalData, reference: str | None = None,
             batch: int | None = None, vocab: int | None = None) -> dict[str, Metrics]:
    """Every model on the same windows, one batch at a time (reference logits never all held),
    the log-softmax / KL / top-1 on chunks of positions in float64. batch: windows per batch
    (default: eval_batch for `vocab`, or 8)."""
    nll = {k: 0.0 for k in models}
    kl = {k: [] for k in models}
    agree = {k: 0 for k in models}
    count = 0
    n, w = data.windows.shape
    batch = batch or (eval_batch(n, w, vocab) if vocab else 8)
    order = ([reference] if reference else []) + [k for k in models if k != reference]
    for start in range(0, n, batch):
        ids = data.windows[start:start + batch]                           # (B, W)
        targets = ids[:, 1:].reshape(-1)                                  # (B*(W-1),)
        keep = None if data.scored is None else data.scored[start:start + batch, 1:].reshape(-1)
        logits = {}
        for name in order:
            out = models[name](ids)[:, :-1]                               # (B, W-1, V) float32
            logits[name] = out.reshape(-1, out.shape[-1])                 # (B*(W-1), V)
            if keep is not None:
                logits[name] = logits[name][keep]                         # (scored, V)
        if keep is not None:
            targets = targets[keep]
        rows = max(1, CHUNK_BYTES // (8 * logits[order[0]].shape[-1]))
        for lo in range(0, len(targets), rows):
            tg, ref_lp = targets[lo:lo + rows], None
            for name in order:
                lp = _log_softmax(logits[name][lo:lo + rows].astype(np.float64))   # (rows, V)
                nll[name] -= float(np.take_along_axis(lp, tg[:, None], -1).sum())
                if name == reference:
                    ref_lp = lp
                elif ref_lp is not None:
                    kl[name].extend((np.exp(ref_lp) * (ref_lp - lp)).sum(-1).tolist())
                    agree[name] += int((lp.argmax(-1) == ref_lp.argmax(-1)).sum())
        count += targets.size
        del logits
    out = {}
    for name, fn in models.items():
        m = Metrics(perplexity=float(np.exp(nll[name] / count)), task_accuracy=task_accuracy(fn, data.task))
        if reference and name != reference:
            m.kl, m.top1_agreement, m.kl_per_token = float(np.mean(kl[name])), agree[name] / count, kl[name]
        elif reference:
            m.kl, m.top1_agreement = 0.0, 1.0
        out[name] = m
    return out
