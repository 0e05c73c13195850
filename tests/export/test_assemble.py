"""Assembling an N-layer graph from the trace of its first layers (export/assemble.py): the depth
plan, the cut on a hand-built decoder, and a real reference exported both ways."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from dsedge.export.assemble import Uncuttable, assemble, depth_plan
from dsedge.export.contract import DecoderContract

D, V = 4, 10
NS = ": DecoderWithCache/m.model: Model/"


def test_depth_plan_traces_each_kind_once_after_layer_0():
    dense = [(False, None)] * 28
    assert depth_plan(dense) == (2, {i: 1 for i in range(2, 28)})
    v2_lite = [(False, None)] + [(True, None)] * 26          # first_k_dense_replace = 1
    assert depth_plan(v2_lite) == (2, {i: 1 for i in range(2, 27)})
    two_dense = [(False, None)] * 2 + [(True, None)] * 4     # the MoE kind first appears at 2
    assert depth_plan(two_dense) == (3, {i: 2 for i in range(3, 6)})
    alternate = [(i % 2 == 1, None) for i in range(8)]       # moe_layer_freq 2 from layer 1
    assert depth_plan(alternate) == (3, {i: 1 if i % 2 else 2 for i in range(3, 8)})
    assert depth_plan(dense[:2]) == (2, {})                  # nothing to copy


def _node(op, inputs, outputs, where):
    n = helper.make_node(op, inputs, outputs, name=f"{op}_{outputs[0]}")
    entry = n.metadata_props.add()
    entry.key, entry.value = "namespace", NS + where
    return n


def _toy(n_layers: int, leak: bool = False) -> onnx.ModelProto:
    """A decoder in miniature: h = embed[ids]; per layer a = h @ W_j, present_j = past_j ++ a,
    h += a; logits = h @ head. The past's length feeds the shared part, as the mask's does.
    leak: layer 1 also reads layer 0's internal `a` (a graph that does not cut)."""
    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "t"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"]),
              helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["b", "t"])]
    inputs += [helper.make_tensor_value_info(f"past_key_values.{i}.key", f, ["b", 1, "p", D]) for i in range(n_layers)]
    params = [helper.make_tensor_value_info("m.model.embed.weight", f, [V, D]),
              helper.make_tensor_value_info("m.lm_head.weight", f, [D, V])]
    params += [helper.make_tensor_value_info(f"m.model.layers.{i}.w", f, [D, D]) for i in range(n_layers)]
    nodes = [_node("Gather", ["m.model.embed.weight", "input_ids"], ["h0"], "m.model.embed: Embedding"),
             _node("Shape", ["past_key_values.0.key"], ["past_shape"], "mask"),
             _node("Unsqueeze", ["h0", "one"], ["h0u"], "m.model.embed: Embedding")]
    init = [helper.make_tensor("one", TensorProto.INT64, [1], [1])]
    h = "h0u"
    for i in range(n_layers):
        w = f"m.model.layers.{i}: Layer/"
        nodes += [_node("MatMul", [h, f"m.model.layers.{i}.w"], [f"a{i}"], w),
                  _node("Concat", [f"past_key_values.{i}.key", f"a{i}"], [f"present.{i}.key"], w),
                  _node("Add", [h, f"a{i}"], [f"h{i + 1}"], w)]
        nodes[-2].attribute.append(helper.make_attribute("axis", 2))
        if leak and i == 1:
            nodes.append(_node("Add", [f"h{i + 1}", "a0"], [f"h{i + 1}x"], w))
            h = f"h{i + 1}x"
        else:
            h = f"h{i + 1}"
    nodes += [_node("Squeeze", [h, "one"], ["hs"], "m.model.norm: Norm"),
              _node("MatMul", ["hs", "m.lm_head.weight"], ["logits"], "m.lm_head: Linear")]
    outputs = [helper.make_tensor_value_info("logits", f, ["b", "t", V])]
    outputs += [helper.make_tensor_value_info(f"present.{i}.key", f, ["b", 1, "s", D]) for i in range(n_layers)]
    g = helper.make_graph(nodes, "toy", inputs + params, outputs, initializer=init)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def _contract(n):
    return DecoderContract(n, (("key", 1, D),), V)


def _run(model, n, feeds_w):
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, V, (2, 3)), "attention_mask": np.ones((2, 5), np.int64),
             "position_ids": np.zeros((2, 3), np.int64)}
    feeds |= {f"past_key_values.{i}.key": rng.standard_normal((2, 1, 2, D)).astype(np.float32) for i in range(n)}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds | feeds_w)


def test_a_toy_decoder_assembled_from_two_layers_equals_the_one_built_with_five():
    rng = np.random.default_rng(1)
    weights = {"m.model.embed.weight": rng.standard_normal((V, D)), "m.lm_head.weight": rng.standard_normal((D, V))}
    weights |= {f"m.model.layers.{i}.w": rng.standard_normal((D, D)) * 0.3 for i in range(5)}
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    built = assemble(_toy(2), _contract(2), _contract(5), {i: 1 for i in range(2, 5)}, "m.model.layers")
    onnx.checker.check_model(built, full_check=True)
    assert [i.name for i in built.graph.input][:8] == _contract(5).input_names
    assert [o.name for o in built.graph.output] == _contract(5).output_names
    assert sum(n.op_type == "Shape" for n in built.graph.node) == 1     # the shared part is not copied
    got, want = _run(built, 5, weights), _run(_toy(5), 5, weights)
    assert len(got) == len(want) == 6
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_a_layer_reading_past_its_predecessor_does_not_cut():
    with pytest.raises(Uncuttable, match="values cross into layer|reads a0"):
        assemble(_toy(3, leak=True), _contract(3), _contract(6), {i: 2 for i in range(3, 6)}, "m.model.layers")


def test_a_reference_assembled_equals_it_traced_whole(tmp_path):
    """llama-tiny (4 layers) traced to 2 and copied, against all 4 traced: same interface, same
    logits and cache (FP32, bit for bit)."""
    from dsedge import reference
    from dsedge.check import OnnxDecoder
    from dsedge.export import export_onnx
    from dsedge.load import open_checkpoint

    ckpt = open_checkpoint(reference.checkpoint_path("llama-tiny"))
    res = {}
    for assembled in (True, False):
        res[assembled] = export_onnx(ckpt.config, lambda k: ckpt.tensor(k).float(), {}, lambda m: {},
                                     tmp_path / f"{assembled}.onnx", torch.float32, assembled=assembled)
    assert (res[True].traced_layers, res[True].traced_whole) == (2, None)
    assert res[False].traced_layers == ckpt.n_layers
    a, b = (onnx.load(str(r.path)) for r in res.values())
    assert [i.name for i in a.graph.input] == [i.name for i in b.graph.input]
    ids = torch.randint(4, ckpt.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0)).numpy()
    (la, ca), (lb, cb) = (OnnxDecoder(r.path).run(ids) for r in res.values())
    np.testing.assert_allclose(la, lb, rtol=0, atol=1e-5)
    for x, y in zip(ca, cb):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)
