"""The INT8 KV cache in the graph (`--kv-cache int8`; scales and semantics: quantize/kv_cache.py).

Every cache input and output becomes INT8, with standard operators only:

    past_key_values.i.k (INT8) -> DequantizeLinear(scale 1, zero 0) -> Mul(scale (1, H, 1, D)) -> attention
    present (FP16)             -> Div(scale (1, H, 1, D)) -> QuantizeLinear(scale 1, zero 0) -> present.i.k (INT8)

The Q/DQ pair is per tensor, what TensorRT's explicit INT8 takes on activations (per-channel
Q/DQ is for weights there); the per-(head, channel) scale is the elementwise Mul / Div beside it.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .contract import DecoderContract


def quantize_cache(model, contract: DecoderContract, scales: Mapping[str, np.ndarray]) -> None:
    """Rewrite the cache inputs / outputs of `model` (onnx_ir.Model) to INT8, in place.
    scales: past_key_values.* name -> (H, D) float scales."""
    import onnx_ir as ir

    g = model.graph
    inputs = {v.name: v for v in g.inputs}
    outputs = {v.name: i for i, v in enumerate(g.outputs)}
    act = inputs[contract.cache_names[0][0]].dtype               # FP16 or FP32 activations
    np_act = np.float16 if act == ir.DataType.FLOAT16 else np.float32

    def const(name: str, array: np.ndarray):
        v = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.Tensor(array, name=name))
        g.register_initializer(v)
        return v

    one, zero = const("kv_cache_qdq_scale", np.ones((), np_act)), const("kv_cache_zero_point", np.zeros((), np.int8))
    head, tail = [], []
    for past, present in contract.cache_names:
        s = np.asarray(scales[past], np.float32)                                   # (H, D)
        scale = const(f"{past}.scale", s.astype(np_act)[None, :, None, :])         # (1, H, 1, D)
        x = inputs[past]
        # read: the codes, dequantized, replace the float input everywhere it was used
        read = ir.Value(name=f"{past}_dequantized", shape=x.shape, type=ir.TensorType(act))
        x.replace_all_uses_with(read)
        dq = ir.node("DequantizeLinear", inputs=[x, one, zero],
                     outputs=[ir.Value(name=f"{past}_codes_float", shape=x.shape, type=ir.TensorType(act))])
        head += [dq, ir.node("Mul", inputs=[dq.outputs[0], scale], outputs=[read])]
        x.type = ir.TensorType(ir.DataType.INT8)
        # write: the float present, quantized, under the output's name
        j = outputs[present]
        y = g.outputs[j]
        y.name = f"{present}_float"
        div = ir.node("Div", inputs=[y, scale], outputs=[ir.Value(name=f"{present}_scaled", shape=y.shape,
                                                                  type=ir.TensorType(act))])
        q = ir.node("QuantizeLinear", inputs=[div.outputs[0], one, zero],
                    outputs=[ir.Value(name=present, shape=y.shape, type=ir.TensorType(ir.DataType.INT8))])
        tail += [div, q]
        g.outputs[j] = q.outputs[0]
    g.insert_before(g[0], head)
    g.extend(tail)

