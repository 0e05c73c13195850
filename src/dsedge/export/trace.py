"""Trace the decoder to ONNX without weights: the model is built on the meta device, so the
trace costs the same memory for a 14B checkpoint as for a tiny one. Initializers keep the
parameters' names and carry no data; `export.weights` fills them afterwards."""
from __future__ import annotations

import warnings

import torch

from ..archs import arch_for
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


def trace_decoder(config, dtype: torch.dtype = torch.float16, opset: int = 21, cache=None):
    """-> (onnx_ir.Model, DecoderContract). No weight is allocated.

    cache: a dsedge.cache.StageCache. torch.export's trace is most of an export's time (16 s of
    19 s for the tiny reference model) and depends only on the config, dtype, opset and library
    versions, not on the weights: it is stored once and reused by every build of the same
    architecture (`dsedge compare`'s methods, reruns)."""
    spec = arch_for(config)
    contract = DecoderContract.from_config(config)
    key = None
    if cache is not None and cache.enabled:
        from ..artifact import library_versions
        from ..cache import cache_key

        key = cache_key("trace", config.to_dict(), str(dtype), opset, library_versions(), spec.export_form)
        entry = cache.get("trace", key)
        if entry is not None:
            import onnx_ir as ir

            model = ir.load(entry / "trace.onnx")
            _inputs_to_params(model, contract)
            return model, contract
    # from_config writes into the config it is given (dtype, attention implementation): trace a
    # copy, so that the caller's config — and the cache key — stay as they were
    import copy

    model = _trace(copy.deepcopy(config), spec.load_export_patch(), contract, dtype, opset)
    if key is not None:
        _store(model, contract, cache, key)
    return model, contract


def _params_to_inputs(model) -> None:
    """Parameter / buffer initializers (data-less meta tensors) -> graph inputs, so the structure
    can be serialized without them."""
    g = model.graph
    for v in [v for name, v in g.initializers.items() if name.startswith(PARAM_PREFIX)]:
        g.initializers.pop(v.name)
        v.const_value = None
        g.inputs.append(v)


def _inputs_to_params(model, contract: DecoderContract) -> None:
    """Inverse of _params_to_inputs: the extra graph inputs become data-less initializers again."""
    g = model.graph
    keep = set(contract.input_names)
    for v in [v for v in g.inputs if v.name not in keep]:
        g.inputs.remove(v)
        g.initializers.add(v)   # data-less: export_onnx gives buffers theirs, fill_weights the weights


def _store(model, contract, cache, key) -> None:
    import tempfile
    from pathlib import Path

    import onnx_ir as ir

    _params_to_inputs(model)
    try:
        with tempfile.TemporaryDirectory(prefix="dsedge-trace-") as tmp:
            path = Path(tmp) / "trace.onnx"
            ir.save(model, path)
            cache.put("trace", key, [path], {"inputs": len(model.graph.inputs)})
    except Exception:  # noqa: BLE001 - the cache is an optimisation: a trace it cannot store is only slower
        pass
    finally:
        _inputs_to_params(model, contract)


def _trace(config, patch, contract: DecoderContract, dtype: torch.dtype, opset: int):
    """patch: the family's export forms (ArchSpec.export_patch), swapped in on the meta model."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    if patch is not None:
        patch(model)
    args = contract.dummy_inputs(dtype, device="meta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            DecoderWithCache(model), args, dynamo=True, dynamic_shapes=contract.dynamic_shapes(),
            opset_version=opset, input_names=contract.input_names, output_names=contract.output_names,
            optimize=False,  # the optimizer cannot run on data-less initializers; run after weights
            verbose=False)
    return program.model
