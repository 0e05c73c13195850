"""Validation by greedy decoding: through the ONNX KV cache against PyTorch's (transformers'
DynamicCache), on the same weights."""
from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def torch_greedy(model, ids: torch.Tensor, n: int, new_cache=None) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch greedy decoding through transformers' own KV cache (DynamicCache, or what
    new_cache() makes), n tokens, never stopping at EOS. -> tokens (B, n), logits at each step (B, n, V)."""
    out = model(input_ids=ids, past_key_values=new_cache() if new_cache else None, use_cache=True)
    tokens, logits = [], []
    for _ in range(n):
        logits.append(out.logits[:, -1].float())
        nxt = out.logits[:, -1:].argmax(-1)                                # (B, 1)
        tokens.append(nxt)
        out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
    return torch.cat(tokens, 1).numpy(), torch.stack(logits, 1).numpy()


def greedy_agreement(decoder, prompts: np.ndarray, torch_tokens: np.ndarray, torch_logits: np.ndarray,
                     tolerance: float) -> dict:
    """Greedy tokens through the ONNX KV cache (decoder: check.session.OnnxDecoder) against
    PyTorch's on the same weights.

    Where the two first part, PyTorch's logit margin between its token and ONNX's is recorded:
    a margin within the export tolerance is a near-tie that FP16 activations may flip (names in
    the reference corpus are near-equiprobable), anything larger is a real disagreement."""
    n = torch_tokens.shape[1]
    onnx_tokens = decoder.generate(prompts, n)
    same = onnx_tokens == torch_tokens
    worst_margin = 0.0
    for b in range(len(prompts)):
        if not same[b].all():
            j = int(np.argmin(same[b]))                                    # first divergence
            margin = float(torch_logits[b, j, torch_tokens[b, j]] - torch_logits[b, j, onnx_tokens[b, j]])
            worst_margin = max(worst_margin, margin)
    return {"tokens": int(n), "prompts": int(len(prompts)), "identical": bool(same.all()),
            "matching_fraction": float(same.mean()), "worst_margin_at_divergence": worst_margin,
            "tolerance": tolerance, "agrees": bool(same.all() or worst_margin <= tolerance)}
