"""Weight bytes a decoded token reads in an exported mixture-of-experts graph, per MoE form.
The export forms themselves belong to the family (ArchSpec.export_patch)."""
from __future__ import annotations


def weight_bytes_per_token(path, top_k: int) -> dict:
    """Weight bytes a decoded token reads, from the exported graph, for each MoE form considered.

    Each `If` of the main graph is one routed expert: the initializers its branch reads are that
    expert's weights (codes + scales + zero points). Everything else in the main graph is read by
    every token (attention, shared experts, routers, dense layers, embedding row excluded: a
    lookup reads one row, counted as such).

    * "if_per_expert" (exported): a token reads its top_k experts per MoE layer.
    * "dense_all_experts": every expert on every token, weighted by the router (0 for the
      unselected): the same constants behind DequantizeLinear -> MatMul, so TensorRT-compatible,
      but every expert is read.
    * "gather_dequantized": DequantizeLinear of the stacked (E, ...) constant, then Gather of the
      selected experts: TensorRT-compatible too, but it dequantizes (reads) all E experts.
    * "gather_quantized": Gather the selected experts' INT4 codes and scales, then dequantize:
      reads only top_k experts, but the DequantizeLinear input is then not a constant (TensorRT's
      INT4 path takes weights only) and ONNX Gather does not take INT4 at all (opset 21).
    """
    import onnx

    from ..engine.graph import all_nodes, graphs, nbytes, type_name

    g = onnx.load(str(path), load_external_data=False).graph
    size = {i.name: nbytes(type_name(i.data_type), i.dims) for sub in graphs(g) for i in sub.initializer}
    experts = []                                                     # bytes of each If (expert)
    in_branch: set[str] = set()
    for n in g.node:
        if n.op_type == "If":   # its branches' initializers, and the outer ones they read
            names = {x for a in n.attribute if a.type == onnx.AttributeProto.GRAPH
                     for node in all_nodes(a.g) for x in node.input if x in size}
            experts.append(sum(size[x] for x in names))
            in_branch |= names
    always = sum(v for k, v in size.items() if k not in in_branch)
    embed = next((i for i in g.initializer if i.name.endswith("embed_tokens.weight")), None)
    if embed is not None:  # a lookup reads one row of the embedding
        always -= size[embed.name] - size[embed.name] // embed.dims[0]
    n_layers = sum(n.op_type == "TopK" for n in g.node)             # one router per MoE layer
    per_expert = sum(experts) / max(1, len(experts))
    selected = always + n_layers * top_k * per_expert
    every = always + sum(experts)
    return {"experts": len(experts), "moe_layers": n_layers, "top_k": top_k,
            "bytes_per_expert": round(per_expert), "always_read": always,
            "forms": {"if_per_expert": round(selected), "dense_all_experts": every,
                      "gather_dequantized": every, "gather_quantized": round(selected)},
            "tensorrt_compatible": {"if_per_expert": True, "dense_all_experts": True,
                                    "gather_dequantized": True, "gather_quantized": False}}
