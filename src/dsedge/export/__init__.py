"""Export: trace without weights, optimize the structure, fill weights lazily (float or
INT4/INT8 + DequantizeLinear), stream them into the file, check it."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..archs import arch_for, truncated_config
from ..errors import DsedgeError
from ..load.lean import buffers_of
from .contract import TOLERANCE, DecoderContract
from .assemble import Uncuttable, assemble, depth_plan
from .kv_cache import quantize_cache
from .trace import PARAM_PREFIX, trace_decoder
from .weights import fill_weights

OPSET = 21                      # DequantizeLinear block_size and INT4 need opset 21
# Weights go to `<name>.data` over 256 MiB, well under protobuf's 2 GB limit: saved as one protobuf,
# a graph is held ~3 times over while serializing (measured: 1 GiB of INT8 initializers saved whole
# took +3.0 GiB of peak RSS, written as external data +0), and the check graph is written beside
# the FP32 PyTorch model (the R1-Distill-Llama-70B cut at INT8: 1.98 GB single file, 13.36 GiB peak).
EXTERNAL_DATA_OVER = 256 << 20


@dataclass
class ExportResult:
    path: Path
    dtype: str
    opset: int
    external_data: bool
    ops: dict[str, int] = field(default_factory=dict)
    initializers: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    traced_layers: int = 0          # layers traced; the others are copies of them (export/assemble.py)
    traced_whole: str | None = None  # why the graph could not be assembled, when it was traced whole


def _optimize(model) -> None:
    """Run onnxscript's optimizer with the parameters detached as graph inputs, and leave them so.

    The constant folder reads every constant input of every node (onnxscript 0.7,
    _constant_folding.process_node) before it looks at sizes, which would read and quantize
    every weight once more; as inputs the weights are opaque to it and never touched. Only the
    small computed buffers (rotary inv_freq) are real constants here.
    """
    import onnxscript

    graph = model.graph
    for v in [v for v in graph.initializers.values() if v.const_value is None]:
        graph.initializers.pop(v.name)
        graph.inputs.append(v)
    onnxscript.optimizer.optimize(model)


# The last optimized traces of this process, serialized (data-less: a few MB): a build's check
# graph of its first 2 layers is the same structure as the main export's 2 traced layers, and
# `dsedge compare` builds one shape several times; --no-cache (the disk cache off) still pays once.
_TRACED: dict[str, bytes] = {}


def _traced(config, dtype, opset, cache):
    """The optimized trace of `config`, its parameters as graph inputs (data-less)."""
    import json

    import onnx
    import onnx_ir as ir

    memo = json.dumps([config.to_dict(), str(dtype), opset, arch_for(config).export_form], sort_keys=True,
                      default=str)
    if memo in _TRACED:
        model = ir.serde.deserialize_model(onnx.ModelProto.FromString(_TRACED[memo]))
        return model, DecoderContract.from_config(config)
    model, contract = trace_decoder(config, dtype, opset, cache)
    buffers = buffers_of(config)
    for name, v in model.graph.initializers.items():  # the trace's meta tensors carry no data
        key = name.removeprefix(PARAM_PREFIX)
        v.const_value = None if key not in buffers else ir.Tensor(
            buffers[key].to(torch.float16 if v.dtype == ir.DataType.FLOAT16 else torch.float32).numpy(), name=name)
    _optimize(model)
    _TRACED.clear()                                   # keep one: a shape's builds run one after another
    _TRACED[memo] = ir.serde.serialize_model(model).SerializeToString()
    return model, contract


def _structure(config, dtype, opset, cache, assembled: bool = True) -> tuple:
    """-> (graph without weights, its parameters detached, layers traced, why traced whole).
    The first few layers are traced and the rest assembled from them (export/assemble.py)."""
    import onnx_ir as ir

    spec = arch_for(config)
    n = config.num_hidden_layers
    cfg = config.to_dict()
    k, template = depth_plan([spec.layer_kind(cfg, i) for i in range(n)])
    full = DecoderContract.from_config(config)
    model, whole = None, None
    if template and assembled:
        small, traced = _traced(truncated_config(config, k), dtype, opset, cache)
        try:
            model = ir.serde.deserialize_model(assemble(ir.serde.serialize_model(small), traced, full, template,
                                                        PARAM_PREFIX + spec.layers_prefix))
        except Uncuttable as e:
            whole = str(e)
    if model is None:
        model, _ = _traced(config, dtype, opset, cache)
        k = n
    graph = model.graph
    keep = set(full.input_names)
    params = [v for v in graph.inputs if v.name not in keep]
    for v in params:
        graph.inputs.remove(v)
    return model, params, k, whole


def export_onnx(config, tensor: Callable[[str], torch.Tensor], qweights: Mapping, qspec: Callable[[str], dict],
                path: Path, dtype: torch.dtype = torch.float16, opset: int = OPSET,
                act_scales: Mapping[str, float] | None = None, cache=None, assembled: bool = True,
                metadata: Mapping[str, str] | None = None, kv_scales: Mapping | None = None) -> ExportResult:
    """Write `path` (+ `path.data` over EXTERNAL_DATA_OVER), one tensor in memory at a time; check it.
    cache: a dsedge.cache.StageCache for the weight-independent trace (see trace_decoder).
    assembled: trace the first layers and copy them (export/assemble.py); False traces every layer.
    metadata: the model's metadata_props (what built it: dsedge.stages.export.onnx_metadata).
    kv_scales: an INT8 KV cache's scales (quantize/kv_cache.py); None: the cache at the activations' dtype."""
    import onnx
    import onnx_ir as ir

    t0 = time.perf_counter()
    model, params, traced, whole = _structure(config, dtype, opset, cache, assembled)
    counts = fill_weights(model, params, tensor, qweights, qspec, act_scales)
    if kv_scales:
        quantize_cache(model, DecoderContract.from_config(config), kv_scales)
    model.producer_name = "dsedge"
    model.metadata_props.update(metadata or {})
    # every graph's: MoE experts keep their weights in their If branches
    size = sum(v.const_value.nbytes for g in model.graphs() for v in g.initializers.values())
    external = size >= EXTERNAL_DATA_OVER
    path = Path(path)
    try:
        ir.save(model, path, external_data=path.name + ".data" if external else None)
    except Exception as e:  # weights are read while saving: surface our own errors (NaN weight, ...)
        cause = e
        while cause is not None and not isinstance(cause, DsedgeError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise
    onnx.checker.check_model(str(path), full_check=False)
    ops = Counter(node.op_type for node in model.graph)
    return ExportResult(path, str(dtype).removeprefix("torch."), opset, external, dict(sorted(ops.items())),
                        counts, time.perf_counter() - t0, traced, whole)


__all__ = ["export_onnx", "ExportResult", "DecoderContract", "TOLERANCE", "OPSET"]
