"""Trace the decoder to ONNX without weights: the model is built on the meta device, so the
trace costs the same memory for a 14B checkpoint as for a tiny one. Initializers keep the
parameters' names and carry no data; `export.weights` fills them afterwards."""
from __future__ import annotations

import warnings

import torch

from .contract import DecoderContract


class DecoderWithCache(torch.nn.Module):
    """Flat cache tensors in, flat cache tensors out, around a transformers causal LM."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, input_ids, attention_mask, position_ids, past):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.m.config)
        for i in range(len(past) // 2):
            cache.update(past[2 * i], past[2 * i + 1], i)      # (B, n_kv, P, hd) each
        out = self.m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                     past_key_values=cache, use_cache=True)
        present = []
        for layer in out.past_key_values.layers:
            present += [layer.keys, layer.values]                # (B, n_kv, P + T, hd)
        return (out.logits, *present)                            # logits (B, T, V)


PARAM_PREFIX = "m."  # initializer names are f"{PARAM_PREFIX}{state_dict key}"


def trace_decoder(config, dtype: torch.dtype = torch.float16, opset: int = 21):
    """-> (onnx_ir.Model, DecoderContract). No weight is allocated."""
    from transformers import AutoModelForCausalLM

    contract = DecoderContract.from_config(config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    args = contract.dummy_inputs(dtype, device="meta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            DecoderWithCache(model), args, dynamo=True, dynamic_shapes=contract.dynamic_shapes(),
            opset_version=opset, input_names=contract.input_names, output_names=contract.output_names,
            optimize=False,  # the optimizer cannot run on data-less initializers; run after weights
            verbose=False)
    return program.model, contract
