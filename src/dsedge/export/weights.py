"""Fill a traced (data-less) decoder graph with weights, lazily.

Float parameters become initializers in the graph's activation dtype. Each quantized linear's
`Transpose(weight) -> MatMul` becomes the weight-only form TensorRT 10 consumes:

    codes (K, N) INT4|INT8 ──┐
    scale (K/g, N) fp16 ─────┼─ DequantizeLinear(axis=0, block_size=g) ─> MatMul(x, ·)
    [zero (K/g, N) INT4|INT8]┘
Per-channel weights use axis=1 with scale (N,). An act-order permutation becomes a Gather of
the activation's last axis in front of the MatMul.

Every initializer is an `ir.LazyTensor`: its data is read (memory-mapped), cast or quantized
only when the file is written, one tensor at a time. That is what keeps a 14B export within
a few GB of memory.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

import ml_dtypes  # noqa: F401  (registers int4 with numpy for onnx_ir)
import onnx_ir as ir
import torch

from ..errors import ExportError
from ..quantize.primitives import pack_int4
from ..quantize.qweight import QuantizedWeight
from .trace import PARAM_PREFIX

_TORCH_DTYPE = {ir.DataType.FLOAT16: torch.float16, ir.DataType.FLOAT: torch.float32}


def _float_tensor(t: torch.Tensor, dtype: torch.dtype, name: str) -> ir.Tensor:
    return ir.Tensor(t.detach().to(dtype).contiguous().numpy(), name=name)


def _code_tensor(codes: torch.Tensor, bits: int, name: str) -> ir.TensorProtocol:
    """(K, N) int8 codes -> INT4 (packed two per byte, ONNX nibble order) or INT8 tensor."""
    if bits == 4:
        return ir.PackedTensor(pack_int4(codes.contiguous()).numpy(), ir.DataType.INT4,
                               shape=ir.Shape(codes.shape), name=name)
    return ir.Tensor(codes.contiguous().numpy(), name=name)


def _lazy_initializer(graph: ir.Graph, name: str, dtype: ir.DataType, shape, make: Callable[[], ir.TensorProtocol]):
    tensor = ir.LazyTensor(make, dtype=dtype, shape=ir.Shape(shape), name=name)
    v = ir.Value(name=name, shape=ir.Shape(shape), type=ir.TensorType(dtype), const_value=tensor)
    graph.register_initializer(v)
    return v


class _OneWeight:
    """Computes a QuantizedWeight on first use and keeps only the latest one: the codes, scale
    and zero point of a linear are written one after another."""

    def __init__(self, qweights: Mapping[str, QuantizedWeight]):
        self.qweights, self.key, self.value = qweights, None, None

    def __call__(self, module: str) -> QuantizedWeight:
        if self.key != module:
            self.key, self.value = module, self.qweights[module]
        return self.value


def _quantize_input(graph: ir.Graph, matmul: ir.Node, name: str, scale: float, act: ir.DataType) -> None:
    """x -> QuantizeLinear(x, s, 0:int8) -> DequantizeLinear -> MatMul: a static per-tensor INT8
    activation (SmoothQuant W8A8), the explicit quantization TensorRT consumes."""
    s = ir.Value(name=f"{name}_input_scale", shape=ir.Shape(()), type=ir.TensorType(act),
                 const_value=_float_tensor(torch.tensor(scale), _TORCH_DTYPE[act], f"{name}_input_scale"))
    z = ir.Value(name=f"{name}_input_zero_point", shape=ir.Shape(()), type=ir.TensorType(ir.DataType.INT8),
                 const_value=ir.Tensor(torch.zeros((), dtype=torch.int8).numpy(), name=f"{name}_input_zero_point"))
    graph.register_initializer(s)
    graph.register_initializer(z)
    x = matmul.inputs[0]
    q = ir.node("QuantizeLinear", inputs=[x, s, z], outputs=[
        ir.Value(name=f"{name}_input_q", shape=x.shape, type=ir.TensorType(ir.DataType.INT8))])
    dq = ir.node("DequantizeLinear", inputs=[q.outputs[0], s, z], outputs=[
        ir.Value(name=f"{name}_input_dq", shape=x.shape, type=ir.TensorType(act))])
    matmul.graph.insert_before(matmul, [q, dq])
    matmul.replace_input_with(0, dq.outputs[0])


def _gemm_to_matmul(gemm: ir.Node, weight: ir.Value) -> ir.Node:
    """A linear on a 2-D input traces to Gemm(x, W, transB=1) (no bias, alpha = beta = 1):
    rewrite it as Transpose(W) -> MatMul, the form the quantized weights replace."""
    attrs = {k: a.value for k, a in gemm.attributes.items()}
    if (len(gemm.inputs) > 2 and gemm.inputs[2] is not None) or attrs.get("transA", 0) or \
            not attrs.get("transB", 0) or attrs.get("alpha", 1.0) != 1.0 or gemm.inputs[1] is not weight:
        raise ExportError(f"{weight.name} feeds a Gemm that is not a plain linear layer",
                          "this architecture's linear layers export differently: report it with the model name")
    graph = gemm.graph
    t = ir.node("Transpose", inputs=[weight], attributes={"perm": [1, 0]})
    mm = ir.node("MatMul", inputs=[gemm.inputs[0], t.outputs[0]])
    graph.insert_before(gemm, [t, mm])
    mm.outputs[0].name = gemm.outputs[0].name + "_mm"
    gemm.outputs[0].replace_all_uses_with(mm.outputs[0], replace_graph_outputs=True)
    graph.remove(gemm, safe=True)
    return t


def _replace_with_dq(graph: ir.Graph, weight: ir.Value, module: str, spec: dict, get: _OneWeight,
                     act: ir.DataType, act_scale: float | None = None) -> None:
    name = weight.name
    users = [u.node for u in weight.uses()]
    if len(users) == 1 and users[0].op_type == "Gemm":
        users = [_gemm_to_matmul(users[0], weight)]
    if len(users) != 1 or users[0].op_type != "Transpose":
        raise ExportError(f"{name} is not used as Transpose -> MatMul in the traced graph",
                          "this architecture's linear layers export differently: report it with the model name")
    transpose = users[0]
    body = transpose.graph   # the main graph, or an If branch (MoE expert) that reads the weights from outside
    n, k = weight.shape
    bits, group = spec["bits"], spec["group_size"]
    code_dtype = {4: ir.DataType.INT4, 8: ir.DataType.INT8}.get(bits)
    if code_dtype is None:
        raise ExportError(f"{bits}-bit weights have no ONNX form here", "use --bits 4 or 8")
    per_channel = group == -1
    qshape = (n,) if per_channel else (k // group, n)

    def weight():   # the QuantizedWeight, checked against the layout the graph was given from its spec
        qw = get(module)
        got = (qw.bits, qw.group_size, qw.symmetric, tuple(qw.shape))
        if got != (bits, group, spec["symmetric"], (n, k)):
            raise ExportError(f"{module}: the quantized weight is (bits, group, symmetric, shape) {got}, "
                              f"the graph was laid out for {(bits, group, spec['symmetric'], (n, k))}",
                              "report it with the method: its handler and its spec disagree")
        return qw

    def scale():   # (K/g, N) or (N,)
        s = weight().scale
        return _float_tensor(s.reshape(n) if per_channel else s.T, _TORCH_DTYPE[act], f"{name}_scale")

    def zero():
        z = weight().zero_point
        return _code_tensor(z.reshape(n) if per_channel else z.T, bits, f"{name}_zero_point")

    # A weight used inside an If branch (an MoE expert) gets its initializers in that branch:
    # onnxruntime's DequantizeLinear -> MatMulNBits fusion looks for them in the node's own graph
    # ("Missing required weight" otherwise), and the branch owns the expert's weights anyway.
    inputs = [_lazy_initializer(body, f"{name}_quantized", code_dtype, (k, n),
                                lambda: _code_tensor(weight().codes.T, bits, f"{name}_quantized")),
              _lazy_initializer(body, f"{name}_scale", act, qshape, scale)]
    if not spec["symmetric"]:
        inputs.append(_lazy_initializer(body, f"{name}_zero_point", code_dtype, qshape, zero))
    attrs = {"axis": 1} if per_channel else {"axis": 0, "block_size": group}
    dq = ir.node("DequantizeLinear", inputs=inputs, attributes=attrs, outputs=[ir.Value(name=f"{name}_dequantized")])
    body.insert_before(transpose, dq)
    if spec.get("perm") is not None:  # x[..., perm] @ W[perm]: gather the activation's input channels
        perm = _lazy_initializer(body, f"{name}_perm", ir.DataType.INT64, (k,),
                                 lambda: ir.Tensor(weight().perm.to(torch.int64).numpy(), name=f"{name}_perm"))
        for use in list(transpose.outputs[0].uses()):
            matmul = use.node
            gather = ir.node("Gather", inputs=[matmul.inputs[0], perm], attributes={"axis": -1})
            body.insert_before(matmul, gather)
            matmul.replace_input_with(0, gather.outputs[0])
    if act_scale is not None:
        for use in list(transpose.outputs[0].uses()):
            _quantize_input(graph, use.node, name, act_scale, act)
    transpose.outputs[0].replace_all_uses_with(dq.outputs[0])
    body.remove(transpose, safe=True)


def _is_lookup(weight: ir.Value) -> bool:
    """The weight is an embedding table: read by Gather(weight, ids) only."""
    users = [u.node for u in weight.uses()]
    return bool(users) and all(n.op_type == "Gather" and n.inputs[0] is weight for n in users)


def _replace_lookup(graph: ir.Graph, weight: ir.Value, module: str, spec: dict, get: _OneWeight,
                    act: ir.DataType) -> None:
    """An INT8 embedding table (one scale per row, --fit): the rows are gathered as INT8 and
    dequantized after the lookup, so the table stays INT8 in memory (a DequantizeLinear in front of
    the Gather would be constant-folded by TensorRT into an FP16 table):

        codes (V, H) INT8 -> Gather(ids) -> DequantizeLinear(scale 1) -> Mul(Gather(scale (V, 1), ids))

    the read form of the INT8 KV cache (export/kv_cache.py)."""
    name = weight.name
    v, h = weight.shape
    if spec["bits"] != 8 or spec["group_size"] != -1 or not spec["symmetric"]:
        raise ExportError(f"{module}: an embedding table is stored INT8 per row or FP16, not "
                          f"{spec['bits']}-bit group {spec['group_size']}", "report it: the fit chose a scheme "
                          "the lookup has no form for")

    def qw():
        w = get(module)
        if (w.bits, w.group_size, tuple(w.shape)) != (8, -1, (v, h)):
            raise ExportError(f"{module}: the quantized table is {(w.bits, w.group_size, tuple(w.shape))}, the graph "
                              f"was laid out for {(8, -1, (v, h))}", "report it with the method")
        return w

    codes = _lazy_initializer(graph, f"{name}_quantized", ir.DataType.INT8, (v, h),
                              lambda: _code_tensor(qw().codes, 8, f"{name}_quantized"))
    scale = _lazy_initializer(graph, f"{name}_scale", act, (v, 1),
                              lambda: _float_tensor(qw().scale.reshape(v, 1), _TORCH_DTYPE[act], f"{name}_scale"))
    one = ir.Value(name=f"{name}_unit_scale", shape=ir.Shape(()), type=ir.TensorType(act),
                   const_value=_float_tensor(torch.tensor(1.0), _TORCH_DTYPE[act], f"{name}_unit_scale"))
    graph.register_initializer(one)
    for i, user in enumerate([u.node for u in weight.uses()]):
        body, ids = user.graph, user.inputs[1]
        rows = ir.node("Gather", inputs=[codes, ids], attributes={"axis": 0},
                       outputs=[ir.Value(name=f"{name}_rows_{i}", type=ir.TensorType(ir.DataType.INT8))])
        dq = ir.node("DequantizeLinear", inputs=[rows.outputs[0], one],
                     outputs=[ir.Value(name=f"{name}_rows_dq_{i}", type=ir.TensorType(act))])
        rs = ir.node("Gather", inputs=[scale, ids], attributes={"axis": 0},
                     outputs=[ir.Value(name=f"{name}_row_scales_{i}", type=ir.TensorType(act))])
        mul = ir.node("Mul", inputs=[dq.outputs[0], rs.outputs[0]],
                      outputs=[ir.Value(name=f"{name}_rows_{i}_dequantized", type=ir.TensorType(act))])
        body.insert_before(user, [rows, dq, rs, mul])
        user.outputs[0].replace_all_uses_with(mul.outputs[0], replace_graph_outputs=True)
        body.remove(user, safe=True)


def fill_weights(model: ir.Model, params: list[ir.Value], tensor: Callable[[str], torch.Tensor],
                 qweights: Mapping[str, QuantizedWeight], qspec: Callable[[str], dict],
                 act_scales: Mapping[str, float] | None = None) -> dict[str, int]:
    """Give every parameter of a traced graph its (lazy) data and make it an initializer.

    params: the graph's parameter values, detached (no data, not registered).
    tensor(key): the float tensor of a state-dict key (read from the checkpoint on demand).
    qweights: module name ("model.layers.0.mlp.up_proj") -> QuantizedWeight, computed on access.
    qspec(module): {"bits", "group_size", "symmetric", "perm"} known without quantizing (the
    graph's shapes and types are decided before any data is produced).
    Returns counts: {"quantized": n, "float": m}.
    """
    graph = model.graph
    get = _OneWeight(qweights)
    counts = {"quantized": 0, "float": 0}
    act = _act_dtype(graph)
    for value in params:
        name = value.name
        key = name.removeprefix(PARAM_PREFIX)
        module = key.rsplit(".", 1)[0]
        if key.endswith(".weight") and module in qweights and _is_lookup(value):
            _replace_lookup(graph, value, module, qspec(module), get, act)
            counts["quantized"] += 1
            continue
        if key.endswith(".weight") and module in qweights:
            _replace_with_dq(graph, value, module, qspec(module), get, act, (act_scales or {}).get(module))
            counts["quantized"] += 1
            continue
        dtype = _TORCH_DTYPE.get(value.dtype, torch.float32)

        def make(key=key, name=name, dtype=dtype, want=tuple(value.shape)):
            t = tensor(key)
            if tuple(t.shape) != want:
                raise ExportError(f"{key} has shape {list(t.shape)}, the traced graph expects {list(want)}")
            return _float_tensor(t, dtype, name)
        value.const_value = ir.LazyTensor(make, dtype=value.dtype, shape=value.shape, name=name)
        graph.register_initializer(value)
        counts["float"] += 1
    return counts


def _act_dtype(graph: ir.Graph) -> ir.DataType:
    """The graph's activation dtype: that of its first cache input (fp16 or fp32)."""
    for v in graph.inputs:
        if v.name.startswith("past_key_values."):
            return v.dtype
    return ir.DataType.FLOAT
