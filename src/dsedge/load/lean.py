"""The truncated check's PyTorch model, loaded lean.

`Checkpoint.load_model(layers=k)` + `round_to_fp16` holds the first k layers *and* the embedding
and head in FP32, beside the checkpoint pages transformers read while loading: on
R1-Distill-Qwen-7B the embedding and the untied head are 2 x 2.2 GB in FP32 and set the build's
peak. Here the model is built on the meta device and filled one tensor at a time: decoder layers
in FP32 (FP16-rounded values, what round_to_fp16 gives), the embedding and the head kept in FP16
storage. Both give the FP32 model's numbers: a lookup of FP16 weights cast to FP32 is the lookup
of the rounded FP32 weights, and the head is computed in FP32 over chunks of its vocabulary rows.

Where the layout is not one tensor per parameter (transformers' fused 3-D MoE experts, a head
with a bias), `lean_model` returns None and the caller loads the usual way.
"""
from __future__ import annotations

from typing import Callable

import torch

HEAD_CHUNK_ROWS = 8192      # a (8192, H) FP32 slice of the head at a time: 50 MB at H = 1536


class ChunkedHead(torch.nn.Module):
    """x @ W.T with W (V, H) stored in FP16, computed in FP32 one chunk of vocabulary rows at a time."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)          # (V, H) fp16

    def forward(self, x: torch.Tensor) -> torch.Tensor:                        # (..., H) -> (..., V)
        w = self.weight
        out = x.new_empty(*x.shape[:-1], w.shape[0], dtype=torch.float32)
        x = x.float()
        for a in range(0, w.shape[0], HEAD_CHUNK_ROWS):
            out[..., a:a + HEAD_CHUNK_ROWS] = x @ w[a:a + HEAD_CHUNK_ROWS].float().T
        return out


def _to_fp32(module, args, out):
    return out.float()


def buffers_of(config) -> dict[str, torch.Tensor]:
    """Non-persistent buffers the checkpoint does not store (rotary inv_freq), computed on CPU
    by the module that owns them, without building the whole model."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config)
    out = {}
    for name, _ in meta.named_buffers():
        owner, attr = name.rsplit(".", 1)
        cpu = type(meta.get_submodule(owner))(config=config)
        out[name] = dict(cpu.named_buffers())[attr]
    return out


def lean_model(ckpt, layers: int, fp16_tensor: Callable[[str], torch.Tensor]):
    """The first `layers` decoder layers + embedding, norm and head of `ckpt` (eval mode), or None
    where its parameters are not stored one tensor each. fp16_tensor(key): the checkpoint's
    tensor rounded to FP16 (dsedge.stages.load.fp16_weights: NaN / Inf checked)."""
    from transformers import AutoModelForCausalLM

    config = ckpt.truncated_config(layers)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    spec, pq = ckpt.spec, ckpt.prequant
    embed, head = model.get_submodule(spec.embed), model.get_submodule(spec.head)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if not isinstance(embed, torch.nn.Embedding) or not isinstance(head, torch.nn.Linear) or head.bias is not None:
        return None
    stored = lambda n: n in ckpt.index or (pq is not None and n.removesuffix(".weight") in pq.weights)
    params = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    head_key = f"{spec.head}.weight"
    if not all(stored(n) or (n == head_key and tied) for n in params):
        return None
    computed = buffers_of(config)
    for name, buf in list(model.named_buffers()):
        if name not in computed:
            return None
        owner, attr = name.rsplit(".", 1)
        model.get_submodule(owner)._buffers[attr] = computed[name]
    keep_fp16 = {f"{spec.embed}.weight", head_key}
    with torch.no_grad():
        for name in params:
            if name == head_key and not stored(name):
                continue                                      # tied, no head stored: the embedding's
            t = fp16_tensor(name)
            owner, attr = name.rsplit(".", 1)
            model.get_submodule(owner)._parameters[attr] = torch.nn.Parameter(
                t if name in keep_fp16 else t.float(), requires_grad=False)
    head_weight = head.weight if stored(head_key) else embed.weight
    model.set_submodule(spec.head, ChunkedHead(head_weight.data))
    embed.register_forward_hook(_to_fp32)
    return model.eval()
