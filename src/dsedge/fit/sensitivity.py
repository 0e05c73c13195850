"""Each unit's measured cost: the mean token KL(FP16 || model) of the logits with that one unit
fake-quantized (round to nearest, symmetric) and every other weight FP16, on calibration windows.
The fit predicts a mix's KL as the sum of its units' costs; `mix_kl` measures the mix itself on
the same windows, which says how far that additive prediction holds.

Cost: one forward of the model over the windows per unit and lossy choice (2 per linear, 1 for
the embedding). The FP16 log-probabilities of the windows are held for all of them:
tokens x vocabulary x 4 bytes (windows() keeps that under REF_BYTES)."""
from __future__ import annotations

from typing import Callable

import torch

from ..quantize.apply import _weight_slot
from ..quantize.configs import LayerScheme
from ..quantize.rtn import quantize_weight

REF_BYTES = 512 << 20
MAX_WINDOWS, MAX_LEN = 8, 256


def windows(input_ids: torch.Tensor, vocab: int) -> torch.Tensor:
    """The calibration windows the costs are measured on: at most MAX_WINDOWS x MAX_LEN tokens,
    fewer windows where the reference log-probabilities would pass REF_BYTES."""
    ids = input_ids[:, :MAX_LEN]                                           # (N, T)
    fit = max(1, REF_BYTES // (4 * vocab * ids.shape[1]))
    return ids[:min(MAX_WINDOWS, fit, ids.shape[0])]


def _logprobs(model, ids: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(model(input_ids=ids, use_cache=False).logits.float(), dim=-1)   # (N, T, V)


def _kl(ref: torch.Tensor, model, ids: torch.Tensor) -> float:
    """mean over tokens of sum_v p (log p - log q), one window at a time (one window's logits in memory)."""
    total = 0.0
    for i in range(ids.shape[0]):
        lq = _logprobs(model, ids[i:i + 1])[0]                              # (T, V)
        total += float((ref[i].exp() * (ref[i] - lq)).sum(-1).mean())
    return total / ids.shape[0]


@torch.no_grad()
def measure(model, units: list, options: dict[str, list[tuple[str, LayerScheme]]], ids: torch.Tensor,
            progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, float]]:
    """-> {unit name: {choice label: KL}} for every lossy choice (FP16 costs 0 by definition).
    The model's weights are restored after each unit."""
    ref = torch.cat([_logprobs(model, ids[i:i + 1]) for i in range(ids.shape[0])])     # (N, T, V)
    out: dict[str, dict[str, float]] = {}
    for k, u in enumerate(units):
        w = _weight_slot(model, u.name)[1]                                  # (N, K) in the model
        orig = w.detach().clone()
        out[u.name] = {}
        for label, s in options[u.name]:
            if s.bits >= 16:
                continue
            w.copy_(quantize_weight(orig, s.bits, s.group_size, True).dequantize(w.dtype))
            out[u.name][label] = max(0.0, _kl(ref, model, ids))
        w.copy_(orig)
        if progress:
            progress(k + 1, len(units))
    return out


@torch.no_grad()
def mix_kl(model, schemes: dict[str, LayerScheme], ids: torch.Tensor) -> float:
    """KL of the whole mix (every unit at its chosen scheme) on the same windows. Changes the
    model's weights in place (the caller drops it)."""
    ref = torch.cat([_logprobs(model, ids[i:i + 1]) for i in range(ids.shape[0])])
    for name, s in schemes.items():
        if s.bits < 16:
            w = _weight_slot(model, name)[1]
            w.copy_(quantize_weight(w.detach().clone(), s.bits, s.group_size, True).dequantize(w.dtype))
    return max(0.0, _kl(ref, model, ids))
