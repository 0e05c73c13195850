"""The INT8 KV cache graph (--kv-cache int8) on every family's reference checkpoint, MLA's
compressed cache included: INT8 cache inputs and outputs through standard Q/DQ, the graph equal
to PyTorch decoding through the same fake-quantized cache, different from an FP16 cache, and
accepted by the TensorRT static check; a graph that reads an INT8 input otherwise is refused."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from dsedge import reference
from dsedge.check import OnnxDecoder
from dsedge.check.fidelity import compare_with, torch_reference
from dsedge.engine import check_onnx
from dsedge.export import TOLERANCE, export_onnx
from dsedge.load import open_checkpoint
from dsedge.quantize import Int4WeightOnlyConfig, WeightSource, apply_fake_quant, quantize_model
from dsedge.quantize.kv_cache import calibrate, int8_cache_factory
from dsedge.targets import find_target

ALL = sorted(reference.REFERENCE_MODELS)            # every family, the MoE + MLA one included


@pytest.fixture(scope="module", params=ALL)
def int8_cache(request, tmp_path_factory):
    """-> (graph path, fake-quantized model, scales) of an INT4 build with an INT8 cache."""
    ckpt = open_checkpoint(reference.checkpoint_path(request.param))
    model = ckpt.load_model(torch.float32).eval()
    source = WeightSource(lambda k: ckpt.tensor(k).float())
    qres = quantize_model(Int4WeightOnlyConfig(), source, ckpt.spec, ckpt.n_layers,
                          lambda n: ckpt.index[f"{n}.weight"].shape[1], arch_config=ckpt.raw_config)
    apply_fake_quant(model, qres.weights)
    calib = torch.randint(4, model.config.vocab_size, (8, 32), generator=torch.Generator().manual_seed(1))
    scales = calibrate(model, calib)
    path = tmp_path_factory.mktemp(request.param) / "model.onnx"
    export_onnx(ckpt.config, source.tensor, qres.weights, qres.spec, path, torch.float16, kv_scales=scales)
    return path, model, scales


def test_cache_is_int8_through_standard_qdq(int8_cache):
    path, model, scales = int8_cache
    m = onnx.load(str(path))
    cache_in = [i for i in m.graph.input if i.name.startswith("past_key_values.")]
    cache_out = [o for o in m.graph.output if o.name.startswith("present.")]
    assert len(cache_in) == len(cache_out) == len(scales) == 2 * model.config.num_hidden_layers
    assert {i.type.tensor_type.elem_type for i in cache_in + cache_out} == {onnx.TensorProto.INT8}
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16     # logits
    producer = {o: n.op_type for n in m.graph.node for o in n.output}
    assert {producer[o.name] for o in cache_out} == {"QuantizeLinear"}
    report = check_onnx(path, find_target("orin"))
    assert report.ok, report.summary()


def test_graph_decodes_as_pytorch_through_the_same_int8_cache(int8_cache):
    path, model, scales = int8_cache
    new_cache = int8_cache_factory(model.config, scales)
    dec = OnnxDecoder(path)
    atol, rtol = TOLERANCE[torch.float16]
    fid = compare_with(dec, *torch_reference(model, seq=8, steps=6, new_cache=new_cache), atol, rtol, scales)
    assert fid.steps == 6
    # and the INT8 cache is real: against an FP16 cache, the decode steps' logits move further
    ids, fake, fed = torch_reference(model, seq=8, steps=6, new_cache=new_cache)
    _, fp16, _ = torch_reference(model, seq=8, steps=6)
    moved = max(float(np.abs(f["logits"] - r["logits"]).max()) for f, r in zip(fake[1:], fp16[1:]))
    assert moved > fid.max_abs_diff


def test_an_int8_input_read_by_anything_but_dequantize_is_refused(int8_cache):
    path, _, _ = int8_cache
    m = onnx.load(str(path))
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "past_key_values.0."
              + m.graph.input[3].name.split(".")[-1])
    cast = onnx.helper.make_node("Cast", [dq.input[0]], [dq.output[0]], to=onnx.TensorProto.FLOAT16, name="raw_read")
    m.graph.node.remove(dq)
    m.graph.node.insert(0, cast)
    report = check_onnx(m, find_target("orin"))
    assert not report.ok
    assert any("feeds Cast" in p.reason and p.node == dq.input[0] for p in report.problems)
