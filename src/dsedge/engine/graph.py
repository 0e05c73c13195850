"""Read what the engine stage needs from an exported ONNX file without its weights: the graph
is loaded with load_external_data=False, so a 14B model costs a few MB here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from ..errors import UsageError

_BITS = {"INT4": 4, "UINT4": 4, "INT8": 8, "UINT8": 8, "BOOL": 8, "FLOAT8E4M3FN": 8, "FLOAT8E5M2": 8,
         "FLOAT16": 16, "BFLOAT16": 16, "INT16": 16, "UINT16": 16, "FLOAT": 32, "INT32": 32, "UINT32": 32,
         "INT64": 64, "UINT64": 64, "DOUBLE": 64}

Dim = int | str | None   # a static size, a symbolic name, or unknown


def type_name(elem_type: int) -> str:
    return TensorProto.DataType.Name(elem_type) if elem_type else "UNDEFINED"


def nbytes(dtype: str, dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return (n * _BITS.get(dtype, 32) + 7) // 8


@dataclass(frozen=True)
class Tensor:
    dtype: str
    dims: tuple[Dim, ...]


@dataclass(frozen=True)
class GraphSignature:
    """The graph's inputs and outputs (dtype and dims) and the bytes of its weights."""
    inputs: dict[str, Tensor]
    outputs: dict[str, Tensor]
    weight_bytes: int


def load(path_or_model) -> tuple[onnx.ModelProto, Path | None]:
    """(model without external data, the folder its external data lives in)."""
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model, None
    path = Path(path_or_model)
    if path.is_dir():
        path = path / "model.onnx"
    if not path.is_file():
        raise UsageError(f"{path} does not exist", "pass an artifact folder from `dsedge build` or its model.onnx")
    try:
        return onnx.load(str(path), load_external_data=False), path.parent
    except Exception as e:  # protobuf's DecodeError and friends
        raise UsageError(f"{path} is not a readable ONNX file ({type(e).__name__})", "re-run `dsedge build`") from None


def _value_tensor(v: onnx.ValueInfoProto) -> Tensor:
    t = v.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
    return Tensor(type_name(t.elem_type), dims)


def graphs(graph: onnx.GraphProto):
    """The graph and, recursively, every subgraph of its nodes (If / Loop / Scan bodies)."""
    yield graph
    for n in graph.node:
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                yield from graphs(sub)


def all_nodes(graph: onnx.GraphProto):
    """Every node, subgraph nodes included (after their own graph's nodes)."""
    for g in graphs(graph):
        yield from g.node


def value_types(model: onnx.ModelProto) -> dict[str, str]:
    """Element type of every named tensor: inputs, outputs, value_info, initializers, Constant
    outputs; DequantizeLinear outputs take their scale's type (the exporter writes no value_info
    for them)."""
    types = {}
    for g in graphs(model.graph):
        types.update({v.name: type_name(v.type.tensor_type.elem_type) for v in [*g.input, *g.output, *g.value_info]})
        types.update({i.name: type_name(i.data_type) for i in g.initializer})
    for n in all_nodes(model.graph):
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = type_name(a.t.data_type)
        elif n.op_type == "DequantizeLinear" and n.output[0] not in types and len(n.input) > 1:
            types[n.output[0]] = types.get(n.input[1], "UNDEFINED")
    return types


def constants(model: onnx.ModelProto) -> set[str]:
    """Names TensorRT sees as build-time constants: initializers and Constant outputs."""
    return ({i.name for g in graphs(model.graph) for i in g.initializer}
            | {o for n in all_nodes(model.graph) if n.op_type == "Constant" for o in n.output})


def signature(model: onnx.ModelProto) -> GraphSignature:
    g = model.graph
    init_names = {i.name for i in g.initializer}
    weights = sum(nbytes(type_name(i.data_type), i.dims) for i in g.initializer)
    return GraphSignature({v.name: _value_tensor(v) for v in g.input if v.name not in init_names},
                          {v.name: _value_tensor(v) for v in g.output}, weights)


def opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def tensor_values(model: onnx.ModelProto, name: str, base: Path | None):
    """The numpy value of one initializer, reading only its own bytes of external data.
    None when its data lives in an external file that is not at hand."""
    from onnx import external_data_helper, numpy_helper

    for init in model.graph.initializer:
        if init.name != name:
            continue
        t = TensorProto()
        t.CopyFrom(init)
        if external_data_helper.uses_external_data(t):
            if base is None:
                return None
            external_data_helper.load_external_data_for_tensor(t, str(base))
            t.data_location = TensorProto.DEFAULT
            del t.external_data[:]
        return numpy_helper.to_array(t)
    return None
