"""Export validation: the ONNX graph against the PyTorch (fake-quantized) model it came from,
on a prefill followed by cached decode steps. The first output outside tolerance is named."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import AtolError, ShapeError
from .session import OnnxDecoder


@dataclass
class Fidelity:
    max_abs_diff: float      # worst |onnx - torch| over logits of every step
    atol: float
    rtol: float
    worst_output: str
    steps: int
    max_abs_logit: float = 0.0  # of PyTorch's logits, scales rtol

    def to_dict(self) -> dict:
        return self.__dict__.copy()


@torch.no_grad()
def _torch_steps(model, ids: torch.Tensor, steps: int, new_cache=None):
    """-> outputs per step, and the token fed at each decode step (PyTorch's greedy choice).
    new_cache: makes the transformers cache to decode with (None: DynamicCache; an INT8 cache's
    fake quantization: quantize/kv_cache.py)."""
    from ..archs import arch_for

    kinds = [kind for kind, _, _ in arch_for(model.config).cache_layout(model.config)]
    out = model(input_ids=ids, past_key_values=new_cache() if new_cache else None, use_cache=True)
    results, fed = [], []
    for s in range(steps + 1):
        named = {"logits": out.logits.float().numpy()}
        for i, layer in enumerate(out.past_key_values.layers):
            named[f"present.{i}.{kinds[0]}"] = layer.keys.float().numpy()    # (B, heads, P, dim)
            named[f"present.{i}.{kinds[1]}"] = layer.values.float().numpy()
        results.append(named)
        if s < steps:
            nxt = out.logits[:, -1:].argmax(-1)                        # (B, 1)
            fed.append(nxt.numpy())
            out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
    return results, fed


def torch_reference(model, seq: int = 8, steps: int = 3, batch: int = 2, seed: int = 0, new_cache=None):
    """PyTorch's side of the validation, computed first so that a big model can be freed before
    onnxruntime loads the graph: (ids, outputs per step, tokens fed at each decode step)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=gen)
    ref, fed = _torch_steps(model, ids, steps, new_cache)
    return ids.numpy(), ref, fed


def validate_export(decoder: OnnxDecoder, model, atol: float, rtol: float, seq: int = 8, steps: int = 3,
                    batch: int = 2, seed: int = 0) -> Fidelity:
    """Prefill `seq` tokens then decode `steps` tokens, in both; compare every output."""
    return compare_with(decoder, *torch_reference(model, seq, steps, batch, seed), atol, rtol)


def compare_with(decoder: OnnxDecoder, ids: np.ndarray, ref: list, fed: list, atol: float, rtol: float,
                 cache_scales=None) -> Fidelity:
    """The ONNX graph on the same inputs as `torch_reference`; the first output outside
    atol + rtol * max|PyTorch| raises AtolError naming it. cache_scales: an INT8 cache's
    (past_key_values.* -> (H, D)): its codes are compared dequantized, within one step more
    (FP16 rounding may move a value across a rounding boundary)."""
    steps = len(fed)
    logits, cache = decoder.run(ids)
    worst, worst_name, peak = 0.0, "logits", 0.0
    for s, expected in enumerate(ref):
        got = dict(zip(decoder.output_names, [logits, *cache]))
        for name, exp in expected.items():
            val, step = got[name].astype(np.float32), 0.0
            if got[name].dtype == np.int8:
                sc = np.asarray(cache_scales[name.replace("present.", "past_key_values.")], np.float32)  # (H, D)
                val, step = val * sc[None, :, None, :], float(sc.max())
            if val.shape != exp.shape:
                raise ShapeError(f"ONNX output {name} has shape {list(val.shape)} at step {s}, "
                                 f"PyTorch {list(exp.shape)}", "the export contract does not match the model")
            diff = float(np.abs(val - exp).max())
            bound = atol + rtol * float(np.abs(exp).max()) + step
            if not np.isfinite(diff) or diff > bound:
                raise AtolError(f"ONNX output {name} differs from PyTorch by {diff:.3g} at step {s} "
                                f"(tolerance {bound:.3g})", "run with --debug and report the model and method")
            if name == "logits":
                peak = max(peak, float(np.abs(exp).max()))
                if diff >= worst:
                    worst, worst_name = diff, name
        if s < steps:  # feed the same tokens as PyTorch, so a near-tie cannot fork the two
            logits, cache = decoder.run(fed[s], cache)
    return Fidelity(worst, atol, rtol, worst_name, steps, peak)
