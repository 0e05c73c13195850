"""The TensorRT compatibility check on real exports, and on exports edited to hold what
TensorRT 10.3 (Jetson AGX Orin, JetPack 6.2) does not take: each failure names the node."""
from __future__ import annotations

import json

import onnx
import pytest
from onnx import helper

from dsedge.engine import check_onnx
from dsedge.targets import find_target


@pytest.fixture(scope="module")
def orin():
    return find_target("orin")


def _load(path) -> onnx.ModelProto:
    return onnx.load(str(path))      # the tiny model: with its data, so it can be edited


def _first(model, op):
    return next(n for n in model.graph.node if n.op_type == op)


def _problems(report, node):
    return [p for p in report.problems if p.node == node]


@pytest.mark.parametrize("kind", ["fp16", "int8", "int4"])
def test_real_exports_pass_on_orin(fp16_graph, orin, kind):
    report = check_onnx(fp16_graph(kind), orin)
    assert report.ok, report.summary()
    assert report.tensorrt == "10.3" and report.opset == 21
    assert ("DequantizeLinear" in report.ops) == (kind != "fp16")
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] and d["support_table"]["max_opset"] == 21 and d["support_table"]["sources"]


def test_artifact_folder_is_accepted(fp16_graph, orin):
    assert check_onnx(fp16_graph("int4").parent, orin).ok


def test_int4_dequantize_on_a_non_constant_input(fp16_graph, orin):
    m = _load(fp16_graph("int4"))
    dq = _first(m, "DequantizeLinear")
    init = next(i for i in m.graph.initializer if i.name == dq.input[0])
    m.graph.initializer.remove(init)
    m.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    report = check_onnx(m, orin)
    assert not report.ok
    reasons = " ".join(p.reason for p in _problems(report, dq.name))
    assert "not a constant" in reasons and "weights only" in reasons


def test_unsupported_operator_is_named(fp16_graph, orin):
    m = _load(fp16_graph("fp16"))
    m.graph.node.append(helper.make_node("Unique", ["input_ids"], ["unique_ids"], name="my_unique"))
    report = check_onnx(m, orin)
    (p,) = report.problems
    assert (p.node, p.op) == ("my_unique", "Unique") and "does not support" in p.reason
    assert "my_unique (Unique)" in report.summary()


def test_operator_newer_than_the_targets_tensorrt(fp16_graph, orin):
    """HannWindow came with TensorRT 10.4: refused for 10.3, taken by 10.16 (RTX 4090)."""
    m = _load(fp16_graph("fp16"))
    m.graph.node.append(helper.make_node("HannWindow", ["window_len"], ["window"], name="hann"))
    m.graph.initializer.append(helper.make_tensor("window_len", onnx.TensorProto.INT64, [], [16]))
    assert [p.node for p in check_onnx(m, orin).problems] == ["hann"]
    assert check_onnx(m, find_target("rtx-4090")).ok


def test_blocked_dequantize_under_opset_17(fp16_graph, orin):
    m = _load(fp16_graph("int4"))
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 17
    report = check_onnx(m, orin)
    dq = _first(m, "DequantizeLinear")
    reasons = [p.reason for p in _problems(report, dq.name)]
    assert any("block_size needs DequantizeLinear-21" in r for r in reasons)
    assert any("needs opset 21" in r for r in reasons)


def test_per_channel_int4_and_odd_block_sizes(fp16_graph, orin):
    m = _load(fp16_graph("int4"))
    dqs = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    del dqs[0].attribute[:]
    dqs[0].attribute.extend([helper.make_attribute("axis", 1)])                 # per-channel INT4
    for a in dqs[1].attribute:
        if a.name == "block_size":
            a.i = 32                                                              # scale shape now wrong too
    report = check_onnx(m, orin)
    assert any("per-block scales" in p.reason for p in _problems(report, dqs[0].name))
    r1 = " ".join(p.reason for p in _problems(report, dqs[1].name))
    assert "block_size 32" in r1 and "scale shape" in r1
    assert not any(p.node not in (dqs[0].name, dqs[1].name) for p in report.problems)


def test_nonzero_zero_point_is_refused(fp16_graph, orin):
    m = _load(fp16_graph("int4"))
    dq = _first(m, "DequantizeLinear")
    scale = next(i for i in m.graph.initializer if i.name == dq.input[1])
    n = 1
    for d in scale.dims:
        n *= d
    m.graph.initializer.append(helper.make_tensor("zp", onnx.TensorProto.INT4, list(scale.dims), [1] * n))
    dq.input.append("zp")
    (p,) = check_onnx(m, orin).problems
    assert p.node == dq.name and "not zero" in p.reason
    m.graph.initializer[-1].CopyFrom(helper.make_tensor("zp", onnx.TensorProto.INT4, list(scale.dims), [0] * n))
    assert check_onnx(m, orin).ok


def test_precision_the_target_does_not_list(fp16_graph, orin):
    no_int4 = orin.model_copy(update={"precisions": ["fp16", "int8"]})
    report = check_onnx(fp16_graph("int4"), no_int4)
    assert [p.node for p in report.problems] == ["graph"] and "int4_weight_only" in report.problems[0].reason
    assert check_onnx(fp16_graph("int8"), no_int4).ok


def test_slice_with_tensor_axes_needs_tensorrt_10_3(fp16_graph, orin):
    m = _load(fp16_graph("fp16"))
    sl = next(n for n in m.graph.node if n.op_type == "Slice" and len(n.input) > 3)
    axes = next(i for i in m.graph.initializer if i.name == sl.input[3])
    m.graph.node.insert(0, helper.make_node("Identity", [axes.name], ["computed_axes"], name="axes_id"))
    sl.input[3] = "computed_axes"
    assert check_onnx(m, orin).ok                                    # 10.3 takes tensor axes
    old = orin.model_copy(update={"tensorrt": orin.tensorrt.model_copy(update={"version": "10.2"})})
    (p,) = check_onnx(m, old).problems
    assert p.node == sl.name and "build-time constant" in p.reason


def test_unknown_tensorrt_version(fp16_graph, orin):
    trt8 = orin.model_copy(update={"tensorrt": orin.tensorrt.model_copy(update={"version": "8.5"})})
    report = check_onnx(fp16_graph("int4"), trt8)
    assert any("no support table for TensorRT 8.5" in p.reason for p in report.problems)


def test_profile_must_agree_with_the_graphs_dims(fp16_graph, orin):
    """A graph whose attention_mask shares input_ids' length cannot serve decode (1 new token,
    a longer mask): the decode profile contradicts it, and the check says where."""
    m = _load(fp16_graph("fp16"))
    mask = next(v for v in m.graph.input if v.name == "attention_mask")
    mask.type.tensor_type.shape.dim[1].dim_param = "sequence_length"
    report = check_onnx(m, orin)
    assert report.problems and all(p.node in ("attention_mask", "position_ids", "input_ids") for p in report.problems)
    assert any("decode profile" in p.reason and "sequence_length" in p.reason for p in report.problems)


def test_uint16_tensor_type(fp16_graph, orin):
    m = _load(fp16_graph("fp16"))
    cast = helper.make_node("Cast", ["input_ids"], ["ids_u16"], name="to_u16", to=onnx.TensorProto.UINT16)
    m.graph.node.append(cast)
    m.graph.value_info.append(helper.make_tensor_value_info("ids_u16", onnx.TensorProto.UINT16, None))
    nodes = {p.node for p in check_onnx(m, orin).problems}
    assert nodes == {"to_u16", "ids_u16"}


def test_jetpack_7_2_takes_opset_23_llm_operators(fp16_graph, orin):
    """RMSNormalization (ONNX opset 23) came with TensorRT 10.15: JetPack 6.2's 10.3 refuses the
    graph (opset range, operator), JetPack 7.2's 10.16 takes it."""
    m = _load(fp16_graph("fp16"))
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 23
    m.graph.node.append(helper.make_node("RMSNormalization", ["rms_x", "rms_scale"], ["rms_y"], name="rms"))
    m.graph.initializer.extend([helper.make_tensor("rms_x", onnx.TensorProto.FLOAT, [1, 4], [1.0] * 4),
                                helper.make_tensor("rms_scale", onnx.TensorProto.FLOAT, [4], [1.0] * 4)])
    old = check_onnx(m, orin)
    assert {p.node for p in old.problems} == {"graph", "rms"}
    assert any("opset 23 is outside TensorRT 10.3's range 9..21" in p.reason for p in old.problems)
    new = check_onnx(m, find_target("orin", jetpack="7.2"))
    assert new.ok, new.summary()
    assert new.tensorrt == "10.16" and new.table["max_opset"] == 24
