"""Assemble an N-layer decoder graph from the trace of its first few layers.

The trace (torch.onnx) and the graph optimizer (onnxscript) cost time in proportion to the nodes
they see, and DeepSeek-V2-Lite has 26 MoE layers of 64 expert `If`s each: traced whole it did not
finish in 1 h 33 min. Decoder layers of one kind are one graph with other weights, so the model is
traced with the fewest layers that hold every kind of layer its config has (2 for the dense
families; for V2-Lite its dense layer 0 and one MoE layer), optimized, and the last traced layer of
each kind is copied for the layers after it, with its parameters, cache inputs and cache outputs
renamed to those of the layer it becomes.

A node's layer is read from the module namespace the exporter stamps on it ("m.model.layers.3:
...", kept by the optimizer). Nodes that read no layer's parameter or cache (the rotary and mask
computations, which the optimizer merges across layers) are shared by all layers. The cut is
checked: exactly one value (the hidden state) crosses from a layer to the next and to the head,
and nothing else does; a graph that does not cut so raises `Uncuttable` and is traced whole.

Works on the ModelProto, by names: subgraphs (the experts' If branches) read outer values by name,
so a copy is a renaming, subgraphs included.
"""
from __future__ import annotations

import re

import onnx

from .contract import DecoderContract

PRO, EPI = -1, 1 << 30          # the layer index of shared nodes and of the head
SHAPE_READS = ("Shape", "Size")
_SLICE = r"(?:\.slice\([^)]*\))?"


class Uncuttable(Exception):
    """The traced graph does not split into layers as assemble() needs (a new layer form)."""


def depth_plan(kinds: list) -> tuple[int, dict[int, int]]:
    """kinds: each layer's ArchSpec.layer_kind. -> (k, template): trace the first k layers; layer
    i >= k becomes a copy of traced layer template[i], the last traced layer of its kind. Templates
    are never layer 0, whose input is the embedding rather than a layer's output."""
    n = len(kinds)
    for k in range(min(2, n), n + 1):
        last = {kinds[i]: i for i in range(1, k)}
        if all(kinds[i] in last for i in range(k, n)):
            return k, {i: last[kinds[i]] for i in range(k, n)}
    return n, {}


def _sub_refs(g: onnx.GraphProto, out: set[str]) -> None:
    """Names a subgraph reads from outer scopes."""
    local = {i.name for i in g.input} | {i.name for i in g.initializer}
    for n in g.node:
        for x in n.input:
            if x and x not in local:
                out.add(x)
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                inner: set[str] = set()
                _sub_refs(sub, inner)
                out |= {x for x in inner if x not in local}
        local |= set(n.output)


def _refs(n: onnx.NodeProto) -> list[str]:
    """Every value a node reads: its inputs and what its subgraphs read from outside."""
    names = [x for x in n.input if x]
    for a in n.attribute:
        for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            inner: set[str] = set()
            _sub_refs(sub, inner)
            names += sorted(inner)
    return names


def _sub_locals(g: onnx.GraphProto, out: set[str]) -> None:
    out |= {i.name for i in g.input} | {i.name for i in g.initializer}
    for n in g.node:
        out |= {x for x in n.output if x}
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                _sub_locals(sub, out)


def assemble(model: onnx.ModelProto, traced: DecoderContract, full: DecoderContract,
             template: dict[int, int], layer_param: str) -> onnx.ModelProto:
    """model: the optimized trace of `traced.n_layers` layers, parameters as graph inputs.
    layer_param: the parameter name prefix of decoder layer i without the index ("m.model.layers").
    -> the graph of `full.n_layers` layers, parameters as graph inputs (still data-less)."""
    g = model.graph
    k, n = traced.n_layers, full.n_layers
    data_inputs = set(traced.input_names)
    params = [i for i in g.input if i.name not in data_inputs]
    layer_re = re.compile(rf"^{re.escape(layer_param)}\.(\d+)\.")
    # "m.model.layers.3: ...", or "m.model.layers.slice(None, 4, None).3: ..." where the model
    # iterates self.layers[:n]
    ns_re = re.compile(rf"(?:^|/){re.escape(layer_param)}{_SLICE}\.(\d+): ")
    owner_of_input: dict[str, int] = {}                   # layer params and cache inputs -> layer
    for p in params:
        m = layer_re.match(p.name)
        if m:
            owner_of_input[p.name] = int(m.group(1))
    for i in range(k):
        for kind, _, _ in traced.layout:
            owner_of_input[f"past_key_values.{i}.{kind}"] = i

    # -- cut: each node's layer (PRO shared, EPI the head) --------------------------------------
    producer: dict[str, int] = {}                         # value -> layer of the node writing it
    layered: set[str] = set(owner_of_input)               # values that depend on some layer
    parts: dict[int, list[onnx.NodeProto]] = {}
    crossing: dict[int, set[str]] = {j: set() for j in range(1, k + 1)}   # j: into layer j (k: head)
    for node in g.node:
        refs = _refs(node)
        # a shape read is not a data read: the mask and rotary read the past length off layer
        # 0's cache, the same for every layer, and stay shared
        if not any(x in layered for x in refs) or (
                node.op_type in SHAPE_READS and all(x not in producer for x in refs)):
            where = PRO
        else:
            ns = next((p.value for p in node.metadata_props if p.key == "namespace"), None)
            if ns is None:   # a node the optimizer made (a Split of fused Slices): its inputs' layer
                where = max(producer.get(x, owner_of_input.get(x, PRO)) for x in refs)
            else:
                found = ns_re.findall(ns)
                where = int(found[0]) if found else EPI
        for x in refs if where != PRO else ():
            src = producer.get(x, owner_of_input.get(x, PRO))
            if src == where or src == PRO:
                continue
            step = (k if where == EPI else where)
            if src != step - 1:
                raise Uncuttable(f"{node.op_type} {node.name} of layer {where} reads {x} of layer {src}")
            crossing[step].add(x)
        parts.setdefault(where, []).append(node)
        for y in node.output:
            if y:
                producer[y] = where
                if where != PRO:
                    layered.add(y)
    for j, xs in crossing.items():
        if len(xs) != 1:
            raise Uncuttable(f"{len(xs)} values cross into layer {j} ({sorted(xs)[:4]}), not one hidden state")
    hidden_out = {j - 1: next(iter(xs)) for j, xs in crossing.items()}   # layer j-1's output
    for o in g.output:
        want = EPI if o.name == "logits" else int(o.name.split(".")[1])
        if producer.get(o.name) != want:
            raise Uncuttable(f"output {o.name} is not written by layer {want}")

    # -- copy: layer i >= k from its template t -------------------------------------------------
    infos = {v.name: v for v in list(g.input) + list(g.output) + list(g.value_info)}
    new_nodes = list(parts.get(PRO, [])) + [x for j in range(k) for x in parts.get(j, [])]
    new_infos: list[onnx.ValueInfoProto] = []
    new_params: list[onnx.ValueInfoProto] = []
    prev_out = hidden_out[k - 1]
    locals_of: dict[int, set[str]] = {}             # template -> the values its nodes write
    for t in set(template.values()):
        local = locals_of[t] = set()
        for node in parts[t]:
            local |= {x for x in node.output if x}
            for a in node.attribute:
                for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                    _sub_locals(sub, local)
    for i in range(k, n):
        t = template[i]
        local = locals_of[t]
        cache_map = {}
        for kind, _, _ in traced.layout:
            cache_map[f"past_key_values.{t}.{kind}"] = f"past_key_values.{i}.{kind}"
            cache_map[f"present.{t}.{kind}"] = f"present.{i}.{kind}"
        param_t, param_i = f"{layer_param}.{t}.", f"{layer_param}.{i}."
        hidden_in = hidden_out[t - 1]

        def ren(x: str, t=t, i=i, local=local, cache_map=cache_map, hidden_in=hidden_in, prev=prev_out,
                param_t=param_t, param_i=param_i) -> str:
            if not x:
                return x
            if x == hidden_in:
                return prev
            if x in cache_map:
                return cache_map[x]
            if x.startswith(param_t) and owner_of_input.get(x) == t:
                return param_i + x[len(param_t):]
            if x in local:
                return f"{x}__L{i}"
            return x

        ns_t = re.compile(rf"{re.escape(layer_param)}{_SLICE}\.{t}(?=[.:])")
        for node in parts[t]:
            c = onnx.NodeProto()
            c.CopyFrom(node)
            _rename_node(c, ren, ns_t, f"{layer_param}.{i}", i)
            new_nodes.append(c)
        for x in sorted(local):
            if x in infos and x not in cache_map:
                v = onnx.ValueInfoProto()
                v.CopyFrom(infos[x])
                v.name = ren(x)
                new_infos.append(v)
        for p in params:
            if owner_of_input.get(p.name) == t:
                v = onnx.ValueInfoProto()
                v.CopyFrom(p)
                v.name = ren(p.name)
                new_params.append(v)
        prev_out = ren(hidden_out[t])
    last = hidden_out[k - 1]
    for node in parts.get(EPI, []):
        c = onnx.NodeProto()
        c.CopyFrom(node)
        _rename_node(c, lambda x: prev_out if x == last else x, None, "", None)
        new_nodes.append(c)

    # -- the graph of n layers --------------------------------------------------------------------
    def io(name: str, proto_name: str) -> onnx.ValueInfoProto:
        v = onnx.ValueInfoProto()
        v.CopyFrom(infos[proto_name])
        v.name = name
        return v

    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    del og.node[:], og.input[:], og.output[:]
    og.node.extend(new_nodes)
    def src(name: str) -> str:   # the traced cache tensor a full-depth one is copied from
        _, layer, kind = name.split(".")
        i = int(layer)
        return name.replace(f".{i}.", f".{i if i < k else template[i]}.")

    og.input.extend([io(x, x) for x in traced.input_names[:3]] + [io(p, src(p)) for p, _ in full.cache_names]
                    + params + new_params)
    outs = [io("logits", "logits")] + [io(o, src(o)) for _, o in full.cache_names]
    og.output.extend(outs)
    og.value_info.extend(new_infos)
    return out


def _rename_node(node: onnx.NodeProto, ren, ns_t, ns_i: str, i: int | None) -> None:
    for j, x in enumerate(node.input):
        node.input[j] = ren(x)
    for j, x in enumerate(node.output):
        node.output[j] = ren(x)
    if i is not None and node.name:
        node.name = f"{node.name}__L{i}"
    if ns_t is not None:
        for p in node.metadata_props:
            if p.key in ("namespace", "pkg.torch.onnx.name_scopes"):
                p.value = ns_t.sub(ns_i, p.value)
    for a in node.attribute:
        for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            _rename_graph(sub, ren, ns_t, ns_i, i)


def _rename_graph(g: onnx.GraphProto, ren, ns_t, ns_i: str, i: int | None) -> None:
    for v in list(g.input) + list(g.output) + list(g.value_info):
        v.name = ren(v.name)
    for t in g.initializer:
        t.name = ren(t.name)
    for node in g.node:
        _rename_node(node, ren, ns_t, ns_i, i)
