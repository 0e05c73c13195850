"""Backends for calibrated methods: the library calls and the conversion of their results into
QuantizedWeight. Each backend module imports its library lazily (they are optional extras) and
exposes gptq / awq (/ smoothquant) with the signature (config, model, names, calib) -> QuantResult."""
from __future__ import annotations

import torch


def snapshot(model, quantized: list[str]) -> dict[str, torch.Tensor]:
    """Copy of the parameters a method may change besides the quantized weights (norm weights,
    biases): everything but those weights and the embedding / head matrices (large, never touched)."""
    skip = {f"{n}.weight" for n in quantized}
    big = {id(m.weight) for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}
    return {k: p.detach().clone() for k, p in model.named_parameters() if k not in skip and id(p) not in big}


def changed_tensors(before: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """Parameters of `before` whose value the method changed, state-dict name -> float32 tensor."""
    params = dict(model.named_parameters())
    return {k: params[k].detach().float().clone() for k, v in before.items()
            if not torch.equal(v, params[k].detach())}
