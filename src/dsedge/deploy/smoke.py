"""The smoke test: the device generates N greedy tokens from a fixed prompt; the host's
reference (onnxruntime over the same ONNX, dsedge's checked path) must agree."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SMOKE_PROMPT = "The capital of France is"
# A divergence is tolerated only where the host's top-2 logits are this close (a near-tie that
# FP16 TensorRT kernels may break the other way); onnxruntime on both sides agrees exactly.
NEAR_TIE = 0.05


@dataclass
class Reference:
    prompt_ids: list[int]
    tokens: list[int]
    margins: list[float] = field(default_factory=list)    # top1 - top2 logit at each step


def reference(folder: Path, n: int, prompt: str = SMOKE_PROMPT) -> Reference:
    import numpy as np
    from tokenizers import Tokenizer

    # The device's own onnxruntime runner with the settings of dsedge's host check (accuracy
    # level 1); dsedge.check.session is not imported because dsedge.check pulls torch in.
    from .device.runtime import OrtDecoder

    tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    ids = tok.encode(prompt).ids or [0]
    dec = OrtDecoder(Path(folder))
    logits, cache = dec.run(np.asarray([ids], np.int64))
    toks, margins = [], []
    for _ in range(n):
        last = logits
        top2 = np.sort(last)[-2:]
        toks.append(int(last.argmax()))
        margins.append(float(top2[1] - top2[0]))
        logits, cache = dec.run(np.asarray([[toks[-1]]], np.int64), cache)
    return Reference(ids, toks, margins)


def compare(ref: Reference, got: list[int], near_tie: float = NEAR_TIE) -> tuple[bool, str]:
    """Agree up to the first divergence; a divergence counts as agreement only at a near-tie."""
    for i, (a, b) in enumerate(zip(ref.tokens, got)):
        if a != b:
            if ref.margins[i] <= near_tie:
                return True, f"{i} of {len(ref.tokens)} tokens identical, then a near-tie (margin {ref.margins[i]:.3g})"
            return False, (f"token {i} differs: device {b}, host {a} (host margin {ref.margins[i]:.3g}); "
                           f"device {got}, host {ref.tokens}")
    if len(got) != len(ref.tokens):
        return False, f"device returned {len(got)} tokens, expected {len(ref.tokens)}"
    return True, f"{len(got)} of {len(got)} tokens identical"
