"""Importing pre-quantized checkpoints (GPTQ v1/v2 with act-order, AWQ GEMM, compressed-tensors
pack-quantized and int-quantized).

The checkpoints are real: written by GPTQModel and llm-compressor from the reference models
(tests/fixtures/prequant/make_fixtures.py; the W4 ones are shipped, the W8A8 one, 4 MB, is made
in the session). Each imported weight must equal the dequantization of the library that wrote
it, the imported model's logits must match the library's model, and dsedge's ONNX export of the
imported weights must reproduce them within the FP32 export tolerance.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dsedge.errors import CheckpointError, UsageError
from dsedge.load import open_checkpoint
from dsedge.load.prequant import Prequant
from dsedge.load.prequant.unpack import AWQ_ORDER, AWQ_REVERSE_ORDER, unpack_int32

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prequant"
SHIPPED = {  # folder -> (format, bits, group, symmetric, library that reads it back)
    "ct-w4a16-asym": ("compressed-tensors/pack-quantized", 4, 128, False, "transformers"),
    "gptq-actorder": ("gptq", 4, 128, True, "gptqmodel"),
    "gptq-v1-asym": ("gptq", 4, 128, False, "gptqmodel"),
    "gptq-v2-asym": ("gptq", 4, 128, False, "gptqmodel"),
    "awq": ("awq-gemm", 4, 128, True, "gptqmodel"),
}
W8A8 = ("compressed-tensors/int-quantized", 8, -1, True, "transformers")
IDS = torch.randint(4, 256, (2, 24), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def w8a8_dir(tmp_path_factory) -> Path:
    pytest.importorskip("llmcompressor", reason="llm-compressor writes the int-quantized (W8A8) checkpoint")
    import sys

    sys.path.insert(0, str(FIXTURES))
    try:
        import make_fixtures
    finally:
        sys.path.remove(str(FIXTURES))
    return make_fixtures.make("ct-w8a8", "qwen2-tiny", tmp_path_factory.mktemp("prequant") / "ct-w8a8")


@pytest.fixture(params=[*SHIPPED, "ct-w8a8"])
def case(request):
    if request.param == "ct-w8a8":
        return request.getfixturevalue("w8a8_dir"), W8A8
    return FIXTURES / request.param, SHIPPED[request.param]


# ---- the libraries' own reading of their checkpoints -----------------------------------------
def _gptqmodel(path: Path):
    pytest.importorskip("gptqmodel", reason="GPTQModel reads back the GPTQ / AWQ checkpoints it wrote")
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    from gptqmodel import BACKEND, GPTQModel

    fmt = json.loads((path / "config.json").read_text())["quantization_config"]["quant_method"]
    backend = BACKEND.AWQ_TORCH if fmt == "awq" else BACKEND.TORCH  # the CPU kernels
    return GPTQModel.load(str(path), backend=backend, device="cpu", dtype=torch.float16).model


def _library_weight(module) -> torch.Tensor:
    """(N, K) weight as the library's CPU kernel dequantizes it for its matmul (fp16)."""
    if hasattr(module, "dequantize_weight"):                    # GPTQ TorchLinear
        return module.dequantize_weight().T
    from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm  # AwqTorchLinear.forward

    return dequantize_gemm(module.qweight, module.qzeros, module.scales, module.bits, module.group_size).T


def _transformers(path: Path):
    """compressed-tensors checkpoint decompressed by transformers + compressed-tensors, in FP32,
    with the library's activation fake-quantization (W8A8: dynamic per token) switched off so that
    the logits are those of the weights alone, as dsedge exports them."""
    pytest.importorskip("compressed_tensors", reason="compressed-tensors reads back llm-compressor's checkpoints")
    from compressed_tensors.quantization import disable_quantization
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                 quantization_config=CompressedTensorsConfig(dequantize=True))
    model.apply(disable_quantization)
    return model.eval()


@pytest.fixture(scope="session")
def library_model():
    cache = {}

    def get(path: Path, reader: str):
        if path not in cache:
            cache[path] = _gptqmodel(path) if reader == "gptqmodel" else _transformers(path)
        return cache[path]
    return get


@pytest.fixture(scope="session")
def exported_fp32(tmp_path_factory):
    """ONNX export (float32 activations) of an imported checkpoint, once per checkpoint."""
    from dsedge.export import export_onnx
    from dsedge.quantize import QuantResult

    cache = {}

    def get(path: Path):
        if path not in cache:
            ckpt = open_checkpoint(path)
            pq = ckpt.prequant
            qres = QuantResult(None, pq.weights)  # what api.build does for an imported checkpoint
            out = tmp_path_factory.mktemp("prequant-onnx") / "model.onnx"
            cache[path] = export_onnx(ckpt.config, lambda k: ckpt.tensor(k).float(), qres.weights, qres.spec,
                                      out, torch.float32)
        return cache[path]
    return get


# ---- detection and the canonical weights -----------------------------------------------------
def test_detects_format_and_scheme(case):
    path, (fmt, bits, group, sym, _) = case
    ckpt = open_checkpoint(path)
    ckpt.validate()
    pq = ckpt.prequant
    assert (pq.format, pq.bits, pq.group_size, pq.symmetric) == (fmt, bits, group, sym)
    assert pq.modules == ckpt.spec.block_linears(ckpt.n_layers)  # lm_head stays float in all of them
    d = pq.to_dict()
    assert d["format"] == fmt and d["quantization_config"] == ckpt.raw_config["quantization_config"]
    json.dumps(d)
    qw = pq.weights[pq.modules[0]]
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    assert qw.codes.dtype == torch.int8 and int(qw.codes.min()) >= lo and int(qw.codes.max()) <= hi
    assert qw.symmetric == sym and qw.bits == bits and qw.group_size == group
    assert torch.equal(qw.scale, qw.scale.half().float())  # every format here stores fp16/bf16 scales


def test_gptq_zero_point_conventions():
    """v1 stores zero - 1, v2 the zero point: both asymmetric checkpoints decode to zero points
    spread over the signed range, and the config names the convention."""
    for name, conv in (("gptq-v1-asym", "v1"), ("gptq-v2-asym", "v2")):
        pq = open_checkpoint(FIXTURES / name).prequant
        assert pq.to_dict()["zero_point_convention"] == conv
        zeros = torch.cat([pq.weights[m].zero_point.flatten() for m in pq.modules[:7]])
        assert zeros.unique().numel() > 4 and int(zeros.min()) >= -8 and int(zeros.max()) <= 7


def test_act_order_permutation():
    pq = open_checkpoint(FIXTURES / "gptq-actorder").prequant
    permuted = 0
    for m in pq.modules:
        qw, spec = pq.weights[m], pq.weights.spec(m)
        g_idx = pq._read(f"{m}.g_idx").long()
        if qw.perm is None:
            assert torch.equal(g_idx, torch.arange(g_idx.numel()) // 128)
            continue
        permuted += 1
        assert torch.equal(spec["perm"], qw.perm)
        assert torch.equal(torch.sort(qw.perm).values, torch.arange(qw.perm.numel()))
        assert torch.equal(g_idx[qw.perm], torch.arange(g_idx.numel()) // 128)  # groups contiguous in codes order
    assert permuted > 0


def test_unpack_matches_compressed_tensors_packing():
    pytest.importorskip("compressed_tensors", reason="its pack_to_int32 is the reference packer")
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

    g = torch.Generator().manual_seed(1)
    for bits in (4, 8):
        codes = torch.randint(-(1 << (bits - 1)), 1 << (bits - 1), (16, 64), generator=g, dtype=torch.int8)
        for dim in (0, 1):
            packed = pack_to_int32(codes, bits, packed_dim=dim)
            assert torch.equal(unpack_int32(packed, bits, dim) - (1 << (bits - 1)), codes.to(torch.int16))


def test_awq_order_is_autoawq_order():
    assert AWQ_ORDER == (0, 2, 4, 6, 1, 3, 5, 7)
    assert [AWQ_ORDER[AWQ_REVERSE_ORDER[j]] for j in range(8)] == list(range(8))


# ---- equality with the library that wrote the checkpoint -------------------------------------
def test_weights_equal_library_dequantization(case, library_model):
    path, (*_, reader) = case
    ckpt = open_checkpoint(path)
    lib = library_model(path, reader)
    for m in ckpt.prequant.modules:
        ours = ckpt.prequant.weights[m].dequantize()
        if reader == "gptqmodel":  # fp16 kernels: scale * (q - z) rounded once to fp16
            assert torch.equal(ours.half(), _library_weight(lib.get_submodule(m)).half()), m
        else:
            assert torch.equal(ours, lib.get_submodule(m).weight.detach().float()), m
    assert torch.equal(ckpt.tensor(f"{ckpt.prequant.modules[0]}.weight"), ckpt.prequant.weights[ckpt.prequant.modules[0]].dequantize())


def test_logits_and_onnx_equal_library(case, library_model, exported_fp32, record_property):
    from dsedge.check.session import OnnxDecoder
    from dsedge.export import TOLERANCE

    path, (fmt, *_, reader) = case
    ckpt = open_checkpoint(path)
    ours = ckpt.load_model(torch.float32)
    lib = library_model(path, reader)
    with torch.no_grad():
        ref = ours(IDS).logits
        theirs = lib(IDS).logits.float()
    lib_diff = float((ref - theirs).abs().max())
    if reader == "gptqmodel":  # the library runs its fp16 kernels: FP16 activation tolerance
        atol, rtol = TOLERANCE[torch.float16]
    else:                      # same fp32 weights, same fp32 model code
        atol, rtol = 1e-5, 0.0
    assert lib_diff <= atol + rtol * float(ref.abs().max()), lib_diff

    onnx = torch.from_numpy(OnnxDecoder(exported_fp32(path).path).logits(IDS.numpy()))
    atol, rtol = TOLERANCE[torch.float32]
    onnx_diff = float((onnx - ref).abs().max())
    assert onnx_diff <= atol + rtol * float(ref.abs().max()), onnx_diff
    if reader == "transformers":
        assert float((onnx - theirs).abs().max()) <= atol + rtol * float(theirs.abs().max())
    record_property("max_abs_logit_diff", {"format": fmt, "torch_vs_library": lib_diff, "onnx_vs_torch": onnx_diff})
    print(f"\n{path.name}: |dsedge torch - library| {lib_diff:.3g}, |onnx fp32 - dsedge torch| {onnx_diff:.3g}")


def test_float_tensors_are_served_as_stored():
    ckpt = open_checkpoint(FIXTURES / "gptq-v2-asym")
    from safetensors import safe_open

    with safe_open(ckpt.weight_files[0], "pt") as f:
        for key in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                    "model.layers.0.self_attn.q_proj.bias"):
            assert torch.equal(ckpt.tensor(key), f.get_tensor(key))


def test_w8a8_records_dynamic_activations(w8a8_dir):
    pq = open_checkpoint(w8a8_dir).prequant
    d = pq.to_dict()
    assert d["activations"]["dynamic"] is True and d["activations"]["strategy"] == "token"
    assert any("weight-only" in n for n in d["notes"])
    assert pq.act_scales == {}


# ---- what is refused, and how -----------------------------------------------------------------
def _edit(tmp_path, name, change) -> Path:
    dst = tmp_path / name
    shutil.copytree(FIXTURES / name, dst)
    cfg = json.loads((dst / "config.json").read_text())
    change(cfg["quantization_config"])
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("qcfg, match", [
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "(?s)quant_method 'bitsandbytes'.*gptq.*awq.*compressed-tensors"),
    ({"quant_method": "fp8"}, "quant_method 'fp8'"),
    ({"quant_method": "gptq", "bits": 3, "group_size": 128}, "3-bit"),
    ({"quant_method": "gptq", "bits": 4, "checkpoint_format": "marlin"}, "marlin"),
    ({"quant_method": "gptq", "bits": 4, "dynamic": {"-:.*down": {}}}, "dynamic"),
    ({"quant_method": "awq", "bits": 4, "version": "gemv"}, "gemv"),
    ({"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {}}, "float-quantized"),
    ({"quant_method": "compressed-tensors", "format": "pack-quantized", "sparsity_config": {"format": "sparse-24"},
      "config_groups": {"g": {"format": "pack-quantized", "weights": {"num_bits": 4, "strategy": "group", "group_size": 128}}}},
     "sparsity_config"),
])
def test_unsupported_configs_are_named(qcfg, match):
    with pytest.raises(CheckpointError, match=match) as e:
        Prequant.from_config(qcfg)
    assert e.value.fix


def test_unsupported_config_fails_at_open(ckpt_copy):
    d = ckpt_copy()
    cfg = json.loads((d / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "hqq"}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UsageError, match="'hqq' is not supported"):
        open_checkpoint(d)


def test_group_size_mismatch_is_a_shape_error(tmp_path):
    d = _edit(tmp_path, "gptq-v2-asym", lambda q: q.update(group_size=64))
    with pytest.raises(CheckpointError, match=r"qzeros has shape \[2, 32\].*group_size=64.*stores \[4, 32\]"):
        open_checkpoint(d).validate()


def test_sym_config_on_asymmetric_weights_is_refused(tmp_path):
    d = _edit(tmp_path, "gptq-v2-asym", lambda q: q.update(sym=True))
    ckpt = open_checkpoint(d)
    ckpt.validate()  # shapes are right
    with pytest.raises(CheckpointError, match="says symmetric"):
        ckpt.prequant.weights[ckpt.prequant.modules[0]]


def test_config_without_quantized_tensors(ckpt_copy):
    d = ckpt_copy()
    cfg = json.loads((d / "config.json").read_text())
    cfg["quantization_config"] = json.loads((FIXTURES / "gptq-v2-asym" / "config.json").read_text())["quantization_config"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="no tensor ends in .qweight"):
        open_checkpoint(d).validate()
